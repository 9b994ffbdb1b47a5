/*
 * backend_internal.h -- what the backend folder shares with the policy
 * loader above it (private to the core):
 *
 *   backend.c     assembles the stores, the circuit, the metrics and the
 *                 violation log a front end's settings ask for
 *   store_opts.c  the one parser of the store options (store_opts.h),
 *                 from text into an rl2_backend_conf_t
 *   backend_overrides.c  the runtime override table as the front ends
 *                 attach it beside their zone
 */
#ifndef RL2_BACKEND_INTERNAL_H
#define RL2_BACKEND_INTERNAL_H

#include "ratelimit2/backend.h"
#include "ratelimit2/store_opts.h"

/* One option of a group by name and value, as the policy file's groups
 * give them ("db", "2"; "share", "0.5"; "facility", "local0"): the same
 * checks and error texts as the "name=value" forms of store_opts.h. */
rl2_status_t rl2_store_opt_redis_set(rl2_backend_conf_t *bc, const char *name,
                                     const char *value, rl2_err_t *err);
rl2_status_t rl2_store_opt_failover_set(rl2_backend_conf_t *bc,
                                        const char *name, const char *value,
                                        rl2_err_t *err);
rl2_status_t rl2_store_opt_alerts_set(rl2_backend_conf_t *bc, const char *name,
                                      const char *value, rl2_err_t *err);

#endif /* RL2_BACKEND_INTERNAL_H */
