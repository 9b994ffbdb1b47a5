/*
 * store_opts.h -- the one parser of the store options, from text into an
 * rl2_backend_conf_t: where to count (Redis), the local zone, what to do
 * while Redis is down (failover) and the syslog alerts.
 *
 * Every front end calls these: the Apache directives (RateLimit2Redis,
 * RateLimit2Zone, RateLimit2Failover, RateLimit2Alerts), ratelimit2-fcgi's
 * options (-R, -O, -z, -n, -F, -A), ratelimit2-cgi's environment, the
 * policy file's redis, failover and alerts groups, and ratelimit2ctl
 * (-R, -O, -z).  So the same text gives the same conf, or the same error
 * text, whichever reads it; the caller only puts its own location in
 * front (file:line, the directive, the option).
 *
 *   redis     HOST:PORT | [IPv6]:PORT | /path/to/socket
 *             | sentinel:NAME@HOST:PORT,... (1 to 8 sentinels)
 *             | cluster:HOST:PORT,... (1 to 8 seed nodes)
 *   options   db=0..15, user=U, password=P, connect_timeout=1..60000 (ms),
 *             timeout=1..60000 (ms), overrides_key=NAME (the runtime
 *             override table's keys, overrides.h), pipeline=on|off
 *             (one connection per process, redis_pipe.c), overlimit=on|off,
 *             overlimit_entries=64..67108864 (the over-limit cache)
 *   zone      /NAME (one leading slash, no other), entries 64..67108864
 *   failover  local|open|closed, share=0.001..1, probe=1..3600000 (ms),
 *             failures=1..1000
 *   alerts    on|off, socket=/PATH, ident=NAME, facility=F,
 *             interval=1..86400 (s)
 *
 * Lists (ratelimit2-fcgi, the CGI environment, ratelimit2ctl) separate
 * items with commas; a value may not hold a comma.  Every function
 * returns RL2_OK, or RL2_ERR_CONFIG with err set.
 */
#ifndef RL2_STORE_OPTS_H
#define RL2_STORE_OPTS_H

#include <stddef.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/status.h"

/* The server: sets redis_enabled and marks the redis group given.  A
 * bracketed IPv6 address is stored without its brackets. */
rl2_status_t rl2_store_opt_redis(rl2_backend_conf_t *bc, const char *addr,
                                 rl2_err_t *err);
/* One "name=value" Redis option, or a comma-separated list of them. */
rl2_status_t rl2_store_opt_redis_item(rl2_backend_conf_t *bc, const char *item,
                                      rl2_err_t *err);
rl2_status_t rl2_store_opt_redis_options(rl2_backend_conf_t *bc,
                                         const char *list, rl2_err_t *err);

/* The zone's name ("/ratelimit2") and its entries ("100000"). */
rl2_status_t rl2_store_opt_zone_name(rl2_backend_conf_t *bc, const char *name,
                                     rl2_err_t *err);
rl2_status_t rl2_store_opt_zone_entries(rl2_backend_conf_t *bc,
                                        const char *text, rl2_err_t *err);

/* Failover: the mode, one option (share, probe, failures) by name and
 * value or as "name=value", or "MODE[,name=value...]".  Each marks the
 * failover group given. */
rl2_status_t rl2_store_opt_failover_mode(rl2_backend_conf_t *bc,
                                         const char *mode, rl2_err_t *err);
rl2_status_t rl2_store_opt_failover_item(rl2_backend_conf_t *bc,
                                         const char *item, rl2_err_t *err);
rl2_status_t rl2_store_opt_failover(rl2_backend_conf_t *bc, const char *text,
                                    rl2_err_t *err);

/* Alerts: on or off (any case), one option (socket, ident, facility,
 * interval) by name and value or as "name=value", or
 * "off" | "[on,]name=value,...".  Each marks the alerts group given. */
rl2_status_t rl2_store_opt_alerts_switch(rl2_backend_conf_t *bc,
                                         const char *onoff, rl2_err_t *err);
rl2_status_t rl2_store_opt_alerts_item(rl2_backend_conf_t *bc, const char *item,
                                       rl2_err_t *err);
rl2_status_t rl2_store_opt_alerts(rl2_backend_conf_t *bc, const char *text,
                                  rl2_err_t *err);

/* Were Redis options or a failover given without a server of their own
 * (they mean nothing without Redis; alerts do, for a local store)? */
int rl2_store_opt_needs_redis(const rl2_backend_conf_t *bc);

/* After every option: the Redis conf is complete and consistent (no
 * db=N with a Cluster, a user has a password...), and, when
 * redis_options, Redis options came with a Redis server. */
rl2_status_t rl2_store_opt_check(const rl2_backend_conf_t *bc,
                                 int redis_options, rl2_err_t *err);

/* One line saying what the conf holds ("zone=/ratelimit2 entries=100000
 * redis=127.0.0.1 port=6379 db=0 ..."), no password, for check modes. */
void rl2_store_opt_describe(const rl2_backend_conf_t *bc, char *buf,
                            size_t size);

#endif /* RL2_STORE_OPTS_H */
