/*
 * usage.c -- reading the usage series (usage.h): a view of a metrics
 * object, a copy read by name (ratelimit2ctl usage) or borrowed from an
 * open handle (the status page); the cells in use, a cell's per-minute
 * or per-hour points, the top clients.
 *
 * Nothing here writes the object: the points are read as the upkeep
 * left them, the open interval's from the live sketch and peak.  An
 * interval's counts are the next known point's totals minus its own
 * (the current one's: the live totals minus its own), as the per-minute
 * ring of metrics_read.c does.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics_internal.h"
#include "usage_redis.h"

/* A view's object. */
static const mx_shm_t *
rl2_usage_shm(const rl2_usage_t *u)
{
    return u->shm;
}

/* ---- opening ------------------------------------------------------- */

/* Who may have made the object: its owner and root (rl2_shm_open_vetted
 * refuses the rest); any mode up to 0666 may be read. */
#define USAGE_MODE_MAX 0666u

/* The object's bytes into map (size bytes).  A copy, not a mapping of
 * the object: any process of the server's user may cut the object short
 * (ftruncate) at any time, and a mapping's pages past the new end fault
 * (SIGBUS) in the reader, often root.  A copy shorter than the object
 * was checked to be: the object changed under the read. */
static rl2_status_t
rl2_usage_copy(int fd, const char *name, void *map, size_t size, rl2_err_t *err)
{
    size_t got = 0;

    while (got < size) {
        ssize_t n = pread(fd, (char *)map + got, size - got, (off_t)got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return rl2_shm_sys_err(err, "metrics", name, "read", errno);
        }
        if (n == 0) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "metrics %s: cut short while read (%zu of "
                               "%zu bytes)",
                               name, got, size);
        }
        got += (size_t)n;
    }
    return RL2_OK;
}

rl2_status_t
rl2_usage_open(const char *name, rl2_usage_t **out, rl2_err_t *err)
{
    rl2_usage_t    *u;
    const mx_shm_t *s;
    struct stat     st;
    void           *map;
    int             fd;
    rl2_status_t    rc;

    *out = NULL;
    rc = rl2_shm_name_check("metrics", name, RL2_SHM_NAME_MAX, err);
    if (rc != RL2_OK) {
        return rc;
    }
    rc = rl2_shm_open_vetted("metrics", name, USAGE_MODE_MAX, &fd, err);
    if (rc != RL2_OK) {
        return rc;
    }
    if (fd < 0) {
        return rl2_err_set(err, RL2_ERR_NOT_FOUND,
                           "metrics %s: no such object in " RL2_SHM_DIR
                           " (no front end with metrics on has used this "
                           "zone since the host started)",
                           name);
    }
    if (fstat(fd, &st) != 0) {
        rc = rl2_shm_sys_err(err, "metrics", name, "fstat", errno);
        close(fd);
        return rc;
    }
    if ((uint64_t)st.st_size != sizeof(mx_shm_t)) {
        close(fd);
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "metrics %s: %lld bytes, not the %zu of this "
                           "build's layout (another version made it: "
                           "restart the front end, or use its own "
                           "ratelimit2ctl)",
                           name, (long long)st.st_size, sizeof(mx_shm_t));
    }
    /* Anonymous memory of the object's size: the copy is the view's. */
    map = mmap(NULL, sizeof(mx_shm_t), PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        rc = rl2_shm_sys_err(err, "metrics", name, "mmap", errno);
        close(fd);
        return rc;
    }
    rc = rl2_usage_copy(fd, name, map, sizeof(mx_shm_t), err);
    close(fd);
    if (rc != RL2_OK) {
        munmap(map, sizeof(mx_shm_t));
        return rc;
    }
    s = map;
    if (atomic_load_explicit((_Atomic uint32_t *)&s->hdr.magic,
                             memory_order_acquire)
            != MX_MAGIC
        || s->hdr.version != MX_VERSION || s->hdr.size != sizeof(mx_shm_t)) {
        munmap(map, sizeof(mx_shm_t));
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "metrics %s: not a metrics object of this "
                           "build's layout (version %u expected)",
                           name, MX_VERSION);
    }
    if ((u = calloc(1, sizeof(*u))) == NULL) {
        munmap(map, sizeof(mx_shm_t));
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage: out of memory");
    }
    u->shm = map;
    u->map_bytes = sizeof(mx_shm_t);
    *out = u;
    return RL2_OK;
}

void
rl2_usage_close(rl2_usage_t *u)
{
    if (u == NULL) {
        return;
    }
    rl2_usage_fleet_free(u->fleet);
    if (u->map_bytes != 0) {
        munmap((void *)u->shm, u->map_bytes);
    }
    free(u);
}

void
rl2_usage_view(const rl2_metrics_t *m, rl2_usage_t *u)
{
    u->shm = m->shm;
    u->map_bytes = 0;
    u->fleet = NULL;
}

/* ---- cells --------------------------------------------------------- */

static size_t
rl2_usage_n(const mx_shm_t *s)
{
    unsigned n = atomic_load_explicit((_Atomic uint32_t *)&s->use_n,
                                      memory_order_acquire);

    return n < RL2_USAGE_CELLS ? n : RL2_USAGE_CELLS;
}

size_t
rl2_usage_cells(const rl2_usage_t *u, rl2_usage_cell_t *out, size_t max)
{
    const mx_shm_t *s = rl2_usage_shm(u);
    size_t          n;
    uint64_t        t[3];

    if (u->fleet != NULL) {
        return rl2_usage_fleet_cells(u, out, max);
    }
    n = rl2_usage_n(s);
    n = n < max ? n : max;
    for (size_t i = 0; i < n; i++) {
        const mx_use_cell_t *c = &s->use_cells[i];

        memset(&out[i], 0, sizeof(out[i]));
        snprintf(out[i].rule, sizeof(out[i].rule), "%s",
                 rl2_mx_slot_label(s->rules, RL2_METRICS_RULES, c->rule));
        snprintf(out[i].tier, sizeof(out[i].tier), "%s",
                 rl2_mx_slot_label(s->tiers, RL2_METRICS_TIERS, c->tier));
        rl2_mx_use_totals(s, (unsigned)i, t);
        out[i].requests = t[0];
        out[i].admitted = t[1];
        out[i].refused = t[2];
    }
    return n;
}

/* ---- series -------------------------------------------------------- */

typedef struct {
    const mx_point_t *ring;
    size_t            len;       /* points in the ring */
    uint64_t          open;      /* stamp of the interval still open */
    const rl2_hll_t  *live;      /* its sketch */
    uint32_t          live_peak; /* the open minute's peak so far */
} usage_ring_t;

static void
rl2_usage_ring(const mx_shm_t *s, size_t i, rl2_usage_step_t step,
               usage_ring_t *r)
{
    unsigned phase = atomic_load_explicit((_Atomic uint32_t *)&s->use_phase,
                                          memory_order_acquire);
    unsigned cur = phase & 1, hcur = (phase >> 1) & 1;
    const mx_use_live_t *lv = &s->use_live[i];

    r->live_peak = atomic_load_explicit((_Atomic uint32_t *)&lv->peak_ppm[cur],
                                        memory_order_relaxed);
    if (step == RL2_USAGE_STEP_HOUR) {
        r->ring = s->use_hours[i];
        r->len = RL2_USAGE_HOURS;
        r->open = atomic_load_explicit(
            (_Atomic uint64_t *)&s->use_hour_open[hcur], memory_order_relaxed);
        r->live = &lv->hour[hcur];
    }
    else {
        r->ring = s->use_minutes[i];
        r->len = RL2_USAGE_MINUTES;
        r->open = atomic_load_explicit(
            (_Atomic uint64_t *)&s->use_min_open[cur], memory_order_relaxed);
        r->live = &lv->minute[cur];
    }
}

static uint64_t
rl2_usage_load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

size_t
rl2_usage_series(const rl2_usage_t *u, size_t i, rl2_usage_step_t step,
                 int64_t now_wall_s, rl2_usage_point_t *out, size_t max,
                 int64_t *first_start_s)
{
    const mx_shm_t *s = rl2_usage_shm(u);
    usage_ring_t    r;
    uint64_t        next[3], now_iv, first;
    size_t          n;

    if (u->fleet != NULL) {
        return rl2_usage_fleet_series(u, i, step, now_wall_s, out, max,
                                      first_start_s);
    }
    if (i >= rl2_usage_n(s) || now_wall_s < 0
        || (step != RL2_USAGE_STEP_MINUTE && step != RL2_USAGE_STEP_HOUR)) {
        return 0;
    }
    rl2_usage_ring(s, i, step, &r);
    n = max < r.len ? max : r.len;
    now_iv = (uint64_t)now_wall_s / (uint64_t)step;
    if (n == 0 || now_iv + 1 < n) {
        return 0;
    }
    first = now_iv + 1 - n;
    *first_start_s = (int64_t)(first * (uint64_t)step);
    rl2_mx_use_totals(s, (unsigned)i, next);
    for (size_t k = n; k-- > 0;) {
        uint64_t          stamp = first + k + 1;
        const mx_point_t *p = &r.ring[(stamp - 1) % r.len];
        uint64_t          t[3];
        uint32_t          peak;

        memset(&out[k], 0, sizeof(out[k]));
        if (atomic_load_explicit((_Atomic uint64_t *)&p->stamp,
                                 memory_order_acquire)
            != stamp) {
            continue;
        }
        for (unsigned x = 0; x < 3; x++) {
            t[x] = rl2_usage_load(&p->total[x]);
        }
        /* A total older than the next can only be smaller; a point
         * rewritten under us (the ring wrapped) gives zero, not junk. */
        out[k].requests = next[0] >= t[0] ? next[0] - t[0] : 0;
        out[k].admitted = next[1] >= t[1] ? next[1] - t[1] : 0;
        out[k].refused = next[2] >= t[2] ? next[2] - t[2] : 0;
        memcpy(next, t, sizeof(next));
        peak = atomic_load_explicit((_Atomic uint32_t *)&p->peak_ppm,
                                    memory_order_relaxed);
        if (stamp == r.open) {
            /* The open interval: its live sketch; its peak so far (an
             * hour's point holds its ended minutes' already). */
            out[k].clients = rl2_hll_estimate(r.live);
            out[k].peak_ppm = r.live_peak > peak ? r.live_peak : peak;
        }
        else {
            out[k].clients = atomic_load_explicit(
                (_Atomic uint32_t *)&p->clients, memory_order_relaxed);
            out[k].peak_ppm = peak;
        }
    }
    return n;
}

/* ---- top clients --------------------------------------------------- */

/* The table copied under its writers' lock (a torn name would be
 * possible otherwise); a lock not had in a few milliseconds gives an
 * empty answer rather than a wait.  A view opened by name holds its own
 * copy of the object, taken without the lock: it drops entries whose
 * name is not terminated. */
static int
rl2_usage_top_copy(const rl2_usage_t *u, mx_use_top_t *copy)
{
    mx_shm_t *s = (mx_shm_t *)rl2_usage_shm(u);
    int       locked = 0;

    if (u->map_bytes == 0) {
        for (unsigned spins = 0; spins < 100000 && !locked; spins++) {
            uint32_t free_word = 0;

            locked = atomic_compare_exchange_weak(&s->lock, &free_word,
                                                  (uint32_t)getpid());
            if (!locked && (spins & 255) == 255) {
                sched_yield();
            }
        }
        if (!locked) {
            return 0;
        }
    }
    memcpy(copy, s->use_top, sizeof(s->use_top));
    if (locked) {
        atomic_store_explicit(&s->lock, 0, memory_order_release);
    }
    return 1;
}

size_t
rl2_usage_top(const rl2_usage_t *u, rl2_usage_client_t *out, size_t max)
{
    const mx_shm_t    *s = rl2_usage_shm(u);
    mx_use_top_t       copy[RL2_USAGE_TOP];
    rl2_usage_client_t all[RL2_USAGE_TOP];
    size_t             n = 0;

    /* A fleet's view has no top clients: they are each host's own. */
    if (max == 0 || u->fleet != NULL || !rl2_usage_top_copy(u, copy)) {
        return 0;
    }
    for (size_t i = 0; i < RL2_USAGE_TOP; i++) {
        const mx_use_top_t *e = &copy[i];
        rl2_usage_client_t *x = &all[n];

        if (e->client[0] == '\0'
            || memchr(e->client, '\0', sizeof(e->client)) == NULL) {
            continue;
        }
        memset(x, 0, sizeof(*x));
        memcpy(x->client, e->client, sizeof(x->client));
        snprintf(x->rule, sizeof(x->rule), "%s",
                 rl2_mx_slot_label(s->rules, RL2_METRICS_RULES, e->rule));
        x->requests = e->count;
        x->error = e->error;
        x->peak_ppm = e->peak_ppm;
        x->last_wall_s = e->last_wall_s;
        n++;
    }
    /* Largest first: insertion sort of at most RL2_USAGE_TOP. */
    for (size_t i = 1; i < n; i++) {
        rl2_usage_client_t x = all[i];
        size_t             j = i;

        for (; j > 0 && all[j - 1].requests < x.requests; j--) {
            all[j] = all[j - 1];
        }
        all[j] = x;
    }
    n = n < max ? n : max;
    memcpy(out, all, n * sizeof(*out));
    return n;
}
