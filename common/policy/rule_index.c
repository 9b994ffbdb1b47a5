/*
 * rule_index.c -- the rules a path may match, found without trying every
 * rule.
 *
 * A policy with many rules (one per API endpoint, say) would otherwise
 * try each rule's globs on every request.  Most globs start with a
 * literal segment ("/api/..." or "/projects/" and a wildcard): such a
 * glob can only match a path whose first segment is that literal.  At
 * load the rules are filed by those first segments; a rule with no
 * literal first segment (no paths at all, a wildcard in the first
 * segment) goes to a list tried for every path.  A request tries only its first
 * segment's rules and that list, merged in policy order, so first-match and
 * all-match mean what they mean without the index.  Everything lives in the
 * policy's arena and is read-only after load, so every thread shares it without
 * locks.  The first segment is looked up in an open-addressed table built from
 * the configuration alone: a client choosing paths can make a lookup miss,
 * never make it long.
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/policy.h"
#include "policy/policy_internal.h"

#include "policy_internal.h"

/* Below this many rules the plain scan is as cheap. */
#define RL2_RULE_INDEX_MIN 16

typedef struct {
    const char *segment; /* in the policy's arena; NULL: empty slot */
    size_t      len;
    uint32_t    first; /* into idx */
    uint32_t    count;
} rl2_rix_slot_t;

struct rl2_rule_index {
    rl2_rix_slot_t *slots;
    uint32_t        mask; /* slots - 1 (a power of two) */
    uint32_t       *idx;  /* rule numbers, ascending per segment */
    uint32_t       *any;  /* rules tried for every path, ascending */
    size_t          n_any;
};

/* One (segment, rule) pair while building. */
typedef struct {
    const char *segment;
    size_t      len;
    uint32_t    rule;
} rl2_rix_pair_t;

static int
rl2_rix_cmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int d = rl2_ascii_fold((unsigned char)a[i])
                - rl2_ascii_fold((unsigned char)b[i]);

        if (d != 0) {
            return d;
        }
    }
    return 0;
}

static uint32_t
rl2_rix_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint32_t)rl2_ascii_fold((unsigned char)s[i])) * 16777619u;
    }
    return h;
}

int
rl2_glob_first(const char *glob, const char **seg, size_t *len)
{
    size_t n = strcspn(glob + 1, "/");

    if (glob[0] != '/' || strcspn(glob + 1, "*?") < n) {
        return 0;
    }
    *seg = glob + 1;
    *len = n;
    return 1;
}

static int
rl2_rix_pair_cmp(const void *a, const void *b)
{
    const rl2_rix_pair_t *x = a, *y = b;
    size_t                n = x->len < y->len ? x->len : y->len;
    int                   c = rl2_rix_cmp(x->segment, y->segment, n);

    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* Every rule's literal first segments (a rule is filed once per distinct
 * segment), and the rules that need trying whatever the path. */
static size_t
rl2_rix_pairs(const rl2_policy_t *p, rl2_rix_pair_t *pairs, uint32_t *any,
              size_t *n_any)
{
    size_t n = 0;

    *n_any = 0;
    for (size_t r = 0; r < p->n_rules; r++) {
        const rl2_rule_t *rule = &p->rules[r];
        size_t            start = n;
        int               literal = rule->n_paths > 0;

        for (size_t i = 0; literal && i < rule->n_paths; i++) {
            literal = rl2_glob_first(rule->paths[i], &pairs[n].segment,
                                     &pairs[n].len);
            pairs[n++].rule = (uint32_t)r;
        }
        if (!literal) {
            n = start;
            any[(*n_any)++] = (uint32_t)r;
        }
    }
    qsort(pairs, n, sizeof(*pairs), rl2_rix_pair_cmp);
    return n;
}

static void
rl2_rix_insert(rl2_rule_index_t *ix, const rl2_rix_pair_t *pair, uint32_t first,
               uint32_t count)
{
    uint32_t i = rl2_rix_hash(pair->segment, pair->len) & ix->mask;

    while (ix->slots[i].segment != NULL) {
        i = (i + 1) & ix->mask;
    }
    ix->slots[i] = (rl2_rix_slot_t){ pair->segment, pair->len, first, count };
}

/* Fill the table from the sorted pairs, dropping repeats. */
static void
rl2_rix_fill(rl2_rule_index_t *ix, const rl2_rix_pair_t *pairs, size_t n)
{
    uint32_t out = 0;

    for (size_t i = 0; i < n;) {
        size_t   j = i;
        uint32_t first = out;

        for (; j < n && pairs[j].len == pairs[i].len
               && rl2_rix_cmp(pairs[j].segment, pairs[i].segment, pairs[i].len)
                      == 0;
             j++) {
            if (j == i || pairs[j].rule != pairs[j - 1].rule) {
                ix->idx[out++] = pairs[j].rule;
            }
        }
        rl2_rix_insert(ix, &pairs[i], first, out - first);
        i = j;
    }
}

rl2_status_t
rl2_rule_index_build(rl2_policy_t *p, rl2_err_t *err)
{
    size_t            n_paths = 0, n_pairs, n_any, slots = 2;
    rl2_rix_pair_t   *pairs;
    rl2_rule_index_t *ix;

    p->rule_index = NULL;
    if (p->n_rules < RL2_RULE_INDEX_MIN || p->n_rules > UINT32_MAX) {
        return RL2_OK;
    }
    for (size_t r = 0; r < p->n_rules; r++) {
        n_paths += p->rules[r].n_paths;
    }
    ix = rl2_policy_alloc(p, sizeof(*ix));
    pairs = malloc((n_paths + 1) * sizeof(*pairs));
    if (ix == NULL || pairs == NULL
        || (ix->any = rl2_policy_alloc(p, p->n_rules * sizeof(uint32_t)))
               == NULL
        || (ix->idx = rl2_policy_alloc(p, (n_paths + 1) * sizeof(uint32_t)))
               == NULL) {
        free(pairs);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    n_pairs = rl2_rix_pairs(p, pairs, ix->any, &n_any);
    ix->n_any = n_any;
    while (slots < 2 * n_pairs) {
        slots *= 2;
    }
    ix->mask = (uint32_t)slots - 1;
    ix->slots = rl2_policy_alloc(p, slots * sizeof(*ix->slots));
    if (ix->slots == NULL) {
        free(pairs);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    memset(ix->slots, 0, slots * sizeof(*ix->slots));
    rl2_rix_fill(ix, pairs, n_pairs);
    free(pairs);
    p->rule_index = ix;
    return RL2_OK;
}

void
rl2_rule_index_lookup(const rl2_rule_index_t *ix, const char *path,
                      rl2_rule_candidates_t *out)
{
    size_t   len = strcspn(path + 1, "/");
    uint32_t i = rl2_rix_hash(path + 1, len) & ix->mask;

    out->any = ix->any;
    out->n_any = ix->n_any;
    out->seg = NULL;
    out->n_seg = 0;
    for (; ix->slots[i].segment != NULL; i = (i + 1) & ix->mask) {
        const rl2_rix_slot_t *s = &ix->slots[i];

        if (s->len == len && rl2_rix_cmp(s->segment, path + 1, len) == 0) {
            out->seg = ix->idx + s->first;
            out->n_seg = s->count;
            return;
        }
    }
}
