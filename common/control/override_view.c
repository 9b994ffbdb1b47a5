/*
 * override_view.c -- what the status page, the metrics and the health
 * output read of the override table: the bans in force counted by who
 * made them, and the newest entries of one origin.
 *
 * Read as rl2_overrides_list() reads: without a lock, again when a
 * writer came in between.  A scrape or a page copies only what it
 * shows (at most `max` entries), never the whole table: 12,288 entries
 * are about 5 MB.  A table that holds nothing is not scanned: its slots'
 * pages, never written, take no memory until something reads them.
 */
#include <string.h>

#include "control_internal.h"

int
rl2_override_is_auto(const rl2_override_t *o)
{
    /* Bounded: a slot read while a writer changes it may hold no NUL
     * (the read is then done again). */
    return o->kind == RL2_OVR_BAN
           && strncmp(o->author, RL2_OVR_AUTO_AUTHOR, sizeof(o->author)) == 0;
}

void
rl2_ovr_auto_rule(const rl2_override_t *o, char *buf, size_t size)
{
    static const char mark[] = "(rule ";
    const char       *at;
    size_t            n;

    buf[0] = '\0';
    if (size == 0 || !rl2_override_is_auto(o)
        || memchr(o->reason, '\0', sizeof(o->reason)) == NULL
        || (at = strstr(o->reason, mark)) == NULL) {
        return;
    }
    at += sizeof(mark) - 1;
    n = strcspn(at, ",)");
    n = n < size - 1 ? n : size - 1;
    memcpy(buf, at, n);
    buf[n] = '\0';
}

static int
rl2_ovr_view_changed(const rl2_overrides_t *t, uint64_t seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&t->shm->seq, memory_order_relaxed) != seq;
}

/* A live entry of slot i, or NULL. */
static const rl2_override_t *
rl2_ovr_view_slot(const rl2_overrides_t *t, uint32_t i, int64_t now_us)
{
    const ovr_slot_t *slot = &t->shm->slots[i];

    if (atomic_load_explicit(&slot->state, memory_order_relaxed) != OVR_USED
        || (slot->o.expires_us != 0 && slot->o.expires_us <= now_us)) {
        return NULL;
    }
    return &slot->o;
}

void
rl2_overrides_count_bans(rl2_overrides_t *t, const rl2_clock_t *now,
                         size_t *operator_n, size_t *auto_n)
{
    uint64_t seq;

    *operator_n = 0;
    *auto_n = 0;
    if (rl2_overrides_idle(t)) {
        return;
    }
    do {
        *operator_n = 0;
        *auto_n = 0;
        seq = rl2_ovr_wait_even(t);
        for (uint32_t i = 0; i < OVR_SLOTS; i++) {
            const rl2_override_t *o = rl2_ovr_view_slot(t, i, now->wall_us);

            if (o == NULL || o->kind != RL2_OVR_BAN) {
                continue;
            }
            if (rl2_override_is_auto(o)) {
                (*auto_n)++;
            }
            else {
                (*operator_n)++;
            }
        }
    } while (rl2_ovr_view_changed(t, seq));
}

/* The newest `max` so far: slot numbers by creation, newest first. */
typedef struct {
    int64_t  created_us;
    uint32_t slot;
} rl2_ovr_rank_t;

static size_t
rl2_ovr_rank_add(rl2_ovr_rank_t *rank, size_t kept, size_t max,
                 int64_t created_us, uint32_t slot)
{
    size_t at = kept;

    while (at > 0 && rank[at - 1].created_us < created_us) {
        at--;
    }
    if (at == max) {
        return kept; /* older than every one kept, and no room */
    }
    kept = kept < max ? kept + 1 : max;
    memmove(&rank[at + 1], &rank[at], (kept - 1 - at) * sizeof(*rank));
    rank[at].created_us = created_us;
    rank[at].slot = slot;
    return kept;
}

size_t
rl2_overrides_newest(rl2_overrides_t *t, int automatic, const rl2_clock_t *now,
                     rl2_override_t *out, size_t max, size_t *shown)
{
    rl2_ovr_rank_t rank[RL2_OVR_NEWEST_MAX];
    size_t         n, kept;
    uint64_t       seq;

    max = max < RL2_OVR_NEWEST_MAX ? max : RL2_OVR_NEWEST_MAX;
    *shown = 0;
    if (rl2_overrides_idle(t)) {
        return 0;
    }
    do {
        n = 0;
        kept = 0;
        seq = rl2_ovr_wait_even(t);
        for (uint32_t i = 0; i < OVR_SLOTS; i++) {
            const rl2_override_t *o = rl2_ovr_view_slot(t, i, now->wall_us);

            if (o == NULL || rl2_override_is_auto(o) != (automatic != 0)) {
                continue;
            }
            n++;
            kept = rl2_ovr_rank_add(rank, kept, max, o->created_us, i);
        }
        for (size_t k = 0; k < kept; k++) {
            out[k] = t->shm->slots[rank[k].slot].o;
        }
    } while (rl2_ovr_view_changed(t, seq));
    *shown = kept;
    return n;
}
