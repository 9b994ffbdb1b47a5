/*
 * redis_internal.h -- what the Redis files share that has no header of
 * its own (private to the core: redis_conn.c, redis_topology.c).
 *
 * The folder's files:
 *
 *   redis_conn.c       connections to one server, the per-thread cache
 *   redis_topology.c   where the master is: Sentinel, address lists
 *   redis_cluster.c    Cluster routing: key slots, the slot map
 *   redis_resp.c       a command in RESP (redis_resp.h)
 *   redis_lua.c        the Lua of the Redis store (redis_scripts.h)
 *   redis_scripts.c    calling that Lua (redis_scripts.h)
 *   redis_store.c      the store interface (store.h) over Redis
 *   tier_source.c      tiers from a billing system's hash (tier_source.h)
 */
#ifndef RL2_REDIS_INTERNAL_H
#define RL2_REDIS_INTERNAL_H

#include <sys/time.h>

/* A timeout of ms milliseconds, as hiredis takes it (redis_conn.c). */
struct timeval rl2_ms_timeval(int ms);

#endif /* RL2_REDIS_INTERNAL_H */
