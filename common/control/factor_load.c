/*
 * factor_load.c -- the load factor (policy factors.load): the host's load
 * moves a factor on every limit through the policy's steps.
 *
 * The state is in the override table's shared memory, so that every
 * process of the host applies one factor.  There is no thread to read
 * the load: the request that finds a reading due (at most once a second
 * per host) takes it by a compare-and-swap on load_next_us and reads
 * the file, a few µs from /proc; the others use the stored factor.  The
 * file is opened non-blocking and read for at most 64 bytes.
 *
 * The rule (rl2_load_step_pick): a step `above = a` is entered once the
 * load is over a and left once it is under a - margin (`below = b`: under
 * b, left over b + margin); a further step, or one the other way, is
 * taken at once.  A change is made at most once per hold: a load that
 * swings across a threshold moves the factor no more often than that.
 * Each change is one syslog line, event=factor.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control_internal.h"

/* The load file is read again after this. */
#define RL2_LOAD_READ_US 1000000

static int
rl2_load_in(const rl2_load_step_t *s, int64_t milli, int64_t margin)
{
    return s->above ? milli > s->threshold_milli - margin
                    : milli < s->threshold_milli + margin;
}

/* Is step b further than step a: past it the same way, or the other
 * way? */
static int
rl2_load_further(const rl2_load_step_t *b, const rl2_load_step_t *a)
{
    if (b->above != a->above) {
        return 1;
    }
    return a->above ? b->threshold_milli > a->threshold_milli
                    : b->threshold_milli < a->threshold_milli;
}

int
rl2_load_step_pick(const rl2_load_conf_t *c, int cur, int64_t milli)
{
    int best = -1;

    for (size_t i = 0; i < c->n_steps; i++) {
        if (rl2_load_in(&c->steps[i], milli, 0)
            && (best < 0 || rl2_load_further(&c->steps[i], &c->steps[best]))) {
            best = (int)i;
        }
    }
    if (cur >= 0 && (size_t)cur < c->n_steps && best != cur
        && rl2_load_in(&c->steps[cur], milli, c->margin_milli)
        && (best < 0 || !rl2_load_further(&c->steps[best], &c->steps[cur]))) {
        return cur;
    }
    return best;
}

int64_t
rl2_load_read(const char *path, int per_cpu)
{
    char    buf[64], *end;
    ssize_t n;
    long    cpus = per_cpu ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    double  load;
    int     fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    errno = 0;
    load = strtod(buf, &end);
    if (end == buf || errno != 0 || !(load >= 0) || load > 1e6
        || (*end != '\0' && *end != ' ' && *end != '\n' && *end != '\t')) {
        return -1;
    }
    return (int64_t)(load * 1000 / (cpus > 0 ? cpus : 1) + 0.5);
}

void
rl2_factor_alert(rl2_overrides_t *t, const char *name, uint32_t from,
                 uint32_t to, const char *key, const char *value)
{
    char f[24], g[24];

    rl2_ovr_factor_format(from, f, sizeof(f));
    rl2_ovr_factor_format(to, g, sizeof(g));
    const rl2_alert_field_t fields[] = {
        { "factor", name }, { "from", f }, { "to", g }, { key, value }
    };

    rl2_ovr_audit_line(t, RL2_ALERT_FACTOR, fields, key != NULL ? 4 : 3);
}

static void
rl2_load_alert(rl2_overrides_t *t, uint32_t from, uint32_t to, int64_t milli)
{
    char l[24];

    snprintf(l, sizeof(l), "%g", (double)milli / 1000);
    rl2_factor_alert(t, "load", from, to, "load", l);
}

/* The reading this process took: the step, and a change if due. */
static void
rl2_load_update(rl2_overrides_t *t, const rl2_load_conf_t *c, int64_t now_us)
{
    ovr_shm_t *s = t->shm;
    int64_t    milli = !c->scoreboard ? rl2_load_read(c->source, c->per_cpu)
                       : c->measure != NULL ? c->measure(c->measure_ctx)
                                            : -1;
    int64_t    changed;
    int        cur, next;
    uint32_t   from, to;

    if (milli < 0) {
        return; /* the factor stays as it was */
    }
    atomic_store_explicit(&s->load_milli, milli, memory_order_relaxed);
    cur = atomic_load_explicit(&s->load_step, memory_order_relaxed) - 1;
    next = rl2_load_step_pick(c, cur, milli);
    changed = atomic_load_explicit(&s->load_changed_us, memory_order_relaxed);
    if (next == cur || (changed != 0 && now_us - changed < c->hold_us)) {
        return;
    }
    from = atomic_load_explicit(&s->load_ppm, memory_order_relaxed);
    from = from == 0 ? RL2_OVR_FACTOR_ONE : from;
    to = next < 0 ? RL2_OVR_FACTOR_ONE : c->steps[next].factor_ppm;
    atomic_store_explicit(&s->load_step, next + 1, memory_order_relaxed);
    atomic_store_explicit(&s->load_changed_us, now_us, memory_order_relaxed);
    atomic_store_explicit(&s->load_ppm, to, memory_order_release);
    if (to != from) {
        rl2_load_alert(t, from, to, milli);
    }
}

uint32_t
rl2_overrides_load(rl2_overrides_t *t, const rl2_load_conf_t *c,
                   const rl2_clock_t *now)
{
    ovr_shm_t *s = t->shm;
    int64_t  due = atomic_load_explicit(&s->load_next_us, memory_order_relaxed);
    uint32_t ppm;

    if (due <= now->mono_us
        && atomic_compare_exchange_strong_explicit(
            &s->load_next_us, &due, now->mono_us + RL2_LOAD_READ_US,
            memory_order_acq_rel, memory_order_relaxed)) {
        rl2_load_update(t, c, now->mono_us);
    }
    ppm = atomic_load_explicit(&s->load_ppm, memory_order_acquire);
    /* A reload may have narrowed min..max under the stored factor:
     * decide/runtime.c bounds what it applies. */
    return ppm == 0 ? RL2_OVR_FACTOR_ONE : ppm;
}

int
rl2_overrides_load_factor(const rl2_overrides_t *t, uint32_t *ppm)
{
    uint32_t f = atomic_load_explicit(&t->shm->load_ppm, memory_order_acquire);

    *ppm = f == 0 ? RL2_OVR_FACTOR_ONE : f;
    return atomic_load_explicit(&t->shm->load_next_us, memory_order_relaxed)
           != 0;
}

int
rl2_overrides_load_state(const rl2_overrides_t *t, int64_t *milli, int *step)
{
    const ovr_shm_t *s = t->shm;

    *milli = atomic_load_explicit(&s->load_milli, memory_order_relaxed);
    *step = atomic_load_explicit(&s->load_step, memory_order_relaxed) - 1;
    return atomic_load_explicit(&s->load_next_us, memory_order_relaxed) != 0;
}
