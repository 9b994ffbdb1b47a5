/*
 * override_read.c -- what one request sees of the override table.
 *
 * Runs on the request path, without a lock: each answer is read between
 * two loads of the table's sequence counter and read again if a writer
 * came in between (overrides.c).  Only kinds the table holds are probed,
 * and an address is probed once per prefix length in use, so 10,000 bans
 * of single addresses cost one probe, as one ban does.  Expired entries
 * count as absent from the moment they expire.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "control_internal.h"

static int
rl2_ovr_read_again(const ovr_shm_t *s, uint64_t seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&s->seq, memory_order_relaxed) != seq;
}

/* The live entry under key, or NULL. */
static const rl2_override_t *
rl2_ovr_get(const ovr_shm_t *s, rl2_digest_t key, int64_t now_us)
{
    long at = rl2_ovr_find(s, key);

    if (at < 0) {
        return NULL;
    }
    const rl2_override_t *o = &s->slots[at].o;

    return o->expires_us != 0 && o->expires_us <= now_us ? NULL : o;
}

/* The longest prefix length in use for family's entries that is shorter
 * than `below`, or -1: a few instructions per length in use, where a
 * test of each of the 33 (or 129) lengths cost hundreds per request.
 * Strictly less than `below`, so a walk ends whatever it reads. */
static int
rl2_ovr_prefix_below(const ovr_shm_t *s, int family, int below)
{
    const uint64_t *words =
        family == AF_INET ? &s->v4_prefixes : s->v6_prefixes;

    while (below > 0) {
        int      i = (below - 1) / 64, top = below - 1 - i * 64;
        uint64_t m = words[i];

        if (top < 63) {
            m &= (2ULL << top) - 1;
        }
        if (m != 0) {
            return i * 64 + 63 - __builtin_clzll(m);
        }
        below = i * 64;
    }
    return -1;
}

/* The entry of `kind` for the client's address (the longest prefix
 * wins), user or API key, in that order. */
static const rl2_override_t *
rl2_ovr_client_entry(const ovr_shm_t *s, rl2_ovr_kind_t kind,
                     const rl2_ovr_who_t *who, int64_t now_us)
{
    const rl2_override_t *o;
    char                  t[RL2_OVR_TARGET_MAX];

    if (who->family == AF_INET || who->family == AF_INET6) {
        int bits = who->family == AF_INET ? 32 : 128;

        for (int p = rl2_ovr_prefix_below(s, who->family, bits + 1); p >= 0;
             p = rl2_ovr_prefix_below(s, who->family, p)) {
            o = rl2_ovr_get(
                s, rl2_ovr_addr_key(kind, who->family, who->addr, (unsigned)p),
                now_us);
            if (o != NULL) {
                return o;
            }
        }
    }
    if (who->user != NULL && who->user[0] != '\0'
        && (size_t)snprintf(t, sizeof(t), "user:%s", who->user) < sizeof(t)
        && (o = rl2_ovr_get(s, rl2_ovr_key(kind, RL2_OVT_USER, t), now_us))
               != NULL) {
        return o;
    }
    if (who->key_hash != NULL && who->key_hash[0] != '\0') {
        snprintf(t, sizeof(t), "key#%s", who->key_hash);
        return rl2_ovr_get(s, rl2_ovr_key(kind, RL2_OVT_KEY, t), now_us);
    }
    return NULL;
}

static int
rl2_ovr_tier_index(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_tiers; i++) {
        if (strcmp(p->tiers[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void
rl2_ovr_client_once(const ovr_shm_t *s, const rl2_policy_t *p,
                    const rl2_ovr_who_t *who, int64_t now_us,
                    rl2_ovr_client_t *out)
{
    const rl2_override_t *o;

    memset(out, 0, sizeof(*out));
    out->tier = -1;
    if (s->n_kind[RL2_OVR_ALLOW] > 0
        && rl2_ovr_client_entry(s, RL2_OVR_ALLOW, who, now_us) != NULL) {
        out->allowed = 1;
    }
    if (s->n_kind[RL2_OVR_BAN] > 0
        && (o = rl2_ovr_client_entry(s, RL2_OVR_BAN, who, now_us)) != NULL) {
        out->banned = 1;
        out->ban_until_us = o->expires_us;
    }
    if (s->n_kind[RL2_OVR_TIER] > 0
        && (o = rl2_ovr_client_entry(s, RL2_OVR_TIER, who, now_us)) != NULL) {
        out->tier = rl2_ovr_tier_index(p, o->tier);
    }
    if (s->n_kind[RL2_OVR_EMERGENCY] > 0
        && (o = rl2_ovr_get(s, rl2_ovr_key(RL2_OVR_EMERGENCY, RL2_OVT_ALL, "*"),
                            now_us))
               != NULL) {
        out->emergency = 1;
        out->emergency_ppm = o->factor_ppm;
        out->emergency_until_us = o->expires_us;
    }
}

void
rl2_overrides_client(const rl2_overrides_t *t, const rl2_policy_t *p,
                     const rl2_ovr_who_t *who, int64_t now_us,
                     rl2_ovr_client_t *out)
{
    uint64_t seq;

    do {
        seq = rl2_ovr_wait_even(t);
        rl2_ovr_client_once(t->shm, p, who, now_us, out);
    } while (rl2_ovr_read_again(t->shm, seq));
}

uint32_t
rl2_ovr_factor_mul(uint32_t f, uint32_t g)
{
    uint64_t v = (uint64_t)f * g / RL2_OVR_FACTOR_ONE;

    if (v < RL2_OVR_FACTOR_MIN) {
        return RL2_OVR_FACTOR_MIN;
    }
    return v > RL2_OVR_FACTOR_MAX ? RL2_OVR_FACTOR_MAX : (uint32_t)v;
}

static uint32_t
rl2_ovr_boost_of(const ovr_shm_t *s, rl2_ovr_target_t kind, const char *prefix,
                 const char *name, int64_t now_us)
{
    char                  t[RL2_OVR_TARGET_MAX];
    const rl2_override_t *o;

    if (name == NULL
        || (size_t)snprintf(t, sizeof(t), "%s%s", prefix, name) >= sizeof(t)) {
        return RL2_OVR_FACTOR_ONE;
    }
    o = rl2_ovr_get(s, rl2_ovr_key(RL2_OVR_BOOST, kind, t), now_us);
    return o != NULL ? o->factor_ppm : RL2_OVR_FACTOR_ONE;
}

static uint32_t
rl2_ovr_factor_once(const ovr_shm_t *s, const char *rule, const char *tier,
                    int64_t now_us)
{
    uint32_t              f = RL2_OVR_FACTOR_ONE;
    const rl2_override_t *o;

    if (s->n_kind[RL2_OVR_BOOST] > 0) {
        f = rl2_ovr_factor_mul(
            f, rl2_ovr_boost_of(s, RL2_OVT_RULE, "rule:", rule, now_us));
        f = rl2_ovr_factor_mul(
            f, rl2_ovr_boost_of(s, RL2_OVT_TIER, "tier:", tier, now_us));
        f = rl2_ovr_factor_mul(
            f, rl2_ovr_boost_of(s, RL2_OVT_ALL, "", "*", now_us));
    }
    if (s->n_kind[RL2_OVR_EMERGENCY] > 0
        && (o = rl2_ovr_get(s, rl2_ovr_key(RL2_OVR_EMERGENCY, RL2_OVT_ALL, "*"),
                            now_us))
               != NULL
        && o->factor_ppm != 0) {
        f = rl2_ovr_factor_mul(f, o->factor_ppm);
    }
    return f;
}

uint32_t
rl2_overrides_factor(const rl2_overrides_t *t, const char *rule,
                     const char *tier, int64_t now_us)
{
    uint64_t seq;
    uint32_t f;

    if (t->shm->n_kind[RL2_OVR_BOOST] == 0
        && t->shm->n_kind[RL2_OVR_EMERGENCY] == 0) {
        return RL2_OVR_FACTOR_ONE;
    }
    do {
        seq = rl2_ovr_wait_even(t);
        f = rl2_ovr_factor_once(t->shm, rule, tier, now_us);
    } while (rl2_ovr_read_again(t->shm, seq));
    return f;
}

rl2_mode_t
rl2_overrides_mode(const rl2_overrides_t *t, const char *rule, rl2_mode_t mode,
                   int64_t now_us)
{
    char                  target[RL2_OVR_TARGET_MAX];
    const rl2_override_t *o;
    uint64_t              seq;
    rl2_mode_t            m;

    if (t->shm->n_kind[RL2_OVR_MODE] == 0 || rule == NULL
        || (size_t)snprintf(target, sizeof(target), "rule:%s", rule)
               >= sizeof(target)) {
        return mode;
    }
    do {
        seq = rl2_ovr_wait_even(t);
        o = rl2_ovr_get(t->shm, rl2_ovr_key(RL2_OVR_MODE, RL2_OVT_RULE, target),
                        now_us);
        m = o != NULL ? o->mode : mode;
    } while (rl2_ovr_read_again(t->shm, seq));
    return m;
}
