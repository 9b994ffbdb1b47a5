/*
 * usage.h -- usage series: what every rule x tier cell of a metrics
 * object did per minute over the last 24 hours and per hour over the
 * last 31 days (requests, admitted, refused, distinct clients, the
 * largest share of a limit one client used), and the clients that use
 * the most (private to the core: the status page and ratelimit2ctl
 * usage read it).
 *
 * The series live in the metrics object ("<zone>.metrics", metrics.h)
 * beside the counters they are derived from, so they are shared by every
 * process of the host and survive a reload or graceful restart as the
 * counters do.  Requests, admitted and refused of an interval are the
 * difference of two snapshots of the cell's running totals that the
 * once-a-second upkeep takes (no request writes them); distinct clients
 * are a HyperLogLog sketch per cell and interval (obs/hll.h: about 0.8%
 * standard error); the top clients are a space-saving table fed by one
 * request in RL2_USAGE_TOP_SAMPLE, counts scaled by it.
 *
 * A reader never writes: an rl2_usage_t is a read-only view, its numbers
 * a consistent-enough picture taken while requests go on (each counter
 * read once, atomically; a point may lag by the upkeep's second).
 */
#ifndef RL2_USAGE_H
#define RL2_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/metrics.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"

#define RL2_USAGE_MINUTES 1440 /* per-minute points: the last 24 h */
#define RL2_USAGE_HOURS   744  /* per-hour points: the last 31 days */
#define RL2_USAGE_CELLS   256  /* rule x tier cells with series */
#define RL2_USAGE_TOP     32   /* top clients by use */
/* The rule name of requests no rule applies to. */
#define RL2_USAGE_UNMATCHED "(unmatched)"

/* One request in this many (per thread) feeds the top-client table; its
 * counts are multiplied by it, so a client's count is an estimate with
 * a sampling error beside the table's own `error`. */
#define RL2_USAGE_TOP_SAMPLE 64

/* A read-only view of a metrics object.  Its fields are the core's: a
 * caller allocates one for rl2_usage_view() and reads it only through
 * the functions below. */
typedef struct rl2_usage rl2_usage_t;

struct rl2_usage_fleet;

struct rl2_usage {
    /* the metrics object (mx_shm_t); NULL for a fleet's view */
    const void *shm;
    /* the size of the view's own copy of the object (rl2_usage_open); 0:
     * borrowed */
    size_t map_bytes;
    /* the fleet's series read from Redis (usage_redis.c), owned; NULL: a
     * metrics object's */
    struct rl2_usage_fleet *fleet;
};

typedef enum {
    RL2_USAGE_STEP_MINUTE = 60,
    RL2_USAGE_STEP_HOUR = 3600
} rl2_usage_step_t;

typedef struct {
    uint64_t requests; /* requests of the cell in the interval */
    uint64_t admitted; /* allowed, dry-run and overflow-admitted */
    uint64_t refused;
    uint32_t clients;  /* distinct clients in the interval, estimated */
    uint32_t peak_ppm; /* the largest share of its limit (of 10^6) any one
                          client had used in one window of the limit, in
                          the interval; 0: none admitted, or no limit
                          (RL2_USAGE_UNMATCHED, "(bypass)") */
} rl2_usage_point_t;

typedef struct {
    char rule[RL2_NAME_MAX + 1];          /* RL2_USAGE_UNMATCHED, "(bypass)",
                                             "(other)" are possible */
    char     tier[RL2_NAME_MAX + 1];      /* "(none)": no tier */
    uint64_t requests, admitted, refused; /* since the object was created */
} rl2_usage_cell_t;

typedef struct {
    char     client[RL2_METRICS_CLIENT_MAX];
    char     rule[RL2_NAME_MAX + 1];
    uint64_t requests; /* estimated (space-saving, sampled): at most
                          `error` too high, before sampling's error */
    uint64_t error;
    uint32_t peak_ppm; /* its largest share of its limit in one window */
    int64_t  last_wall_s;
} rl2_usage_client_t;

/* Open the existing metrics object `name` ("<zone>.metrics") read-only,
 * as a copy taken now (its numbers do not move; the object changing
 * size under the copy is RL2_ERR_INVALID);
 * RL2_ERR_NOT_FOUND if it does not exist, RL2_ERR_INVALID if it is of
 * another layout (another build: restart the front end).  *out is freed by
 * rl2_usage_close(). */
rl2_status_t rl2_usage_open(const char *name, rl2_usage_t **out,
                            rl2_err_t *err);
void         rl2_usage_close(rl2_usage_t *u);

/* The fleet's series, from the Redis server conf names (one server,
 * Sentinel or Cluster: what -R or the policy's redis group gives), read
 * at once for the 24 hours and 31 days up to now_wall_s (usage_redis.c):
 * the same functions serve it, its points the sums of every host's and
 * its distinct clients the union of their sketches (PFCOUNT).  It has no
 * top clients (they are each host's: rl2_usage_top() gives none), and
 * the current minute is zero until a host has ended it.  RL2_ERR_STORE
 * when Redis cannot be read.  *out is freed by rl2_usage_close(). */
rl2_status_t rl2_usage_open_redis(const rl2_redis_conf_t *conf,
                                  int64_t now_wall_s, rl2_usage_t **out,
                                  rl2_err_t *err);

/* A view on an already-open metrics handle (for the status page), into
 * caller's storage *u; borrows m, which must outlive the view.  Never
 * closed. */
void rl2_usage_view(const rl2_metrics_t *m, rl2_usage_t *u);

/* The cells in use, up to max; returns how many were written.  Index i
 * of out is the i of rl2_usage_series(). */
size_t rl2_usage_cells(const rl2_usage_t *u, rl2_usage_cell_t *out, size_t max);

/* Cell i's series at step, oldest first, ending with the interval that
 * holds now_wall_s (the current, incomplete one); up to max points
 * (RL2_USAGE_MINUTES or RL2_USAGE_HOURS at most); *first_start_s gets
 * the wall-clock start of out[0].  Intervals with no data are zero
 * points.  Returns 0 for an i not in use. */
size_t rl2_usage_series(const rl2_usage_t *u, size_t i, rl2_usage_step_t step,
                        int64_t now_wall_s, rl2_usage_point_t *out, size_t max,
                        int64_t *first_start_s);

/* The top clients by use, largest first; returns how many were
 * written. */
size_t rl2_usage_top(const rl2_usage_t *u, rl2_usage_client_t *out, size_t max);

#endif /* RL2_USAGE_H */
