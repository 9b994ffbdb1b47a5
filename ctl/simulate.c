/*
 * simulate.c -- ratelimit2ctl simulate ACCESS_LOG...: yesterday's
 * traffic replayed through a policy before it is deployed, and with
 * --against through a second one, request by request (an offline A/B).
 *
 * Each request of the logs is decided by rl2_decide, every phase at
 * once as ratelimit2-fcgi decides it, with the request the log describes
 * (method, target, Host when logged, client address, authenticated
 * user, Referer, User-Agent), on a private zone: created for the run
 * under a name of this process's with a random part, unlinked as soon
 * as it is mapped (so that nothing is left behind, even when the tool is
 * killed), never the servers' zone.  The clock is the log's: both the monotonic and the
 * wall time of a request are its logged time, so buckets refill, windows
 * turn and calendar quotas roll over at the log's UTC midnight as fast
 * as the CPU replays them.
 *
 * Timing within a second: common and combined logs write whole seconds.
 * Every request of one second is decided at the start of that second, in
 * the order of the files (merged by time; a tie goes to the file named
 * first).  The requests that trip limits come in bursts, milliseconds
 * apart: spreading them over the second would invent refills between
 * them the server never granted.  The cost: a limit that refills within
 * the second (a bucket of several tokens a second) may see a steady
 * client refused a few times a server admitted.  A log line earlier than
 * the one before it (Apache writes a line when the request ends, with
 * the time it began) is decided at the later time: the core's clock,
 * like the server's, never goes back.
 *
 * Not replayed: the runtime override table (no bans, boosts or
 * emergency: the policy as written), Redis (a fleet's shared counters
 * are one zone here), the load and schedule factors (x1: they keep their
 * state in the override table), and a request's duration (a concurrency
 * slot is released before the next request).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ratelimit2/config.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"

#include "accesslog.h"
#include "ctl.h"

/* The most clients listed: a log of a botnet's million addresses must
 * not take all memory; the requests of clients past it are decided and
 * counted, not listed. */
#define RL2_SIM_CLIENTS_MAX 2000000
/* The most lines of a --tiers file, and the longest. */
#define RL2_SIM_TIERS_MAX     1000000
#define RL2_SIM_TIER_LINE_MAX 1024

/* ---- a table of names: open addressing, at most half full ---- */

typedef struct {
    const char *key; /* NULL: empty; owned by the caller's row */
    uint64_t    hash;
    size_t      row;
} rl2_sim_slot_t;

typedef struct {
    rl2_sim_slot_t *slots;
    size_t          mask; /* slots - 1: a power of two */
    size_t          n;
} rl2_sim_tab_t;

/* The names come from the log: a hash no log can aim
 * (rl2_alog_hash_begin). */
static uint64_t
rl2_sim_hash(const char *s)
{
    return rl2_alog_hash_end(rl2_alog_hash_add(rl2_alog_hash_begin(), s));
}

/* The row of key, or (size_t)-1. */
static size_t
rl2_sim_tab_find(const rl2_sim_tab_t *t, const char *key, uint64_t hash)
{
    if (t->slots == NULL) {
        return (size_t)-1;
    }
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const rl2_sim_slot_t *s = &t->slots[i];

        if (s->key == NULL) {
            return (size_t)-1;
        }
        if (s->hash == hash && strcmp(s->key, key) == 0) {
            return s->row;
        }
    }
}

/* Add key (not in t; it must outlive t) for row; -1 when out of
 * memory. */
static int
rl2_sim_tab_add(rl2_sim_tab_t *t, const char *key, uint64_t hash, size_t row)
{
    size_t i;

    if (t->slots == NULL || (t->n + 1) * 2 > t->mask + 1) {
        size_t          cap = t->slots == NULL ? 1024 : (t->mask + 1) * 2;
        rl2_sim_slot_t *slots = calloc(cap, sizeof(*slots));

        if (slots == NULL) {
            return -1;
        }
        for (size_t j = 0; t->slots != NULL && j <= t->mask; j++) {
            if (t->slots[j].key != NULL) {
                for (i = t->slots[j].hash & (cap - 1); slots[i].key != NULL;
                     i = (i + 1) & (cap - 1)) {
                }
                slots[i] = t->slots[j];
            }
        }
        free(t->slots);
        t->slots = slots;
        t->mask = cap - 1;
    }
    for (i = hash & t->mask; t->slots[i].key != NULL; i = (i + 1) & t->mask) {
    }
    t->slots[i] = (rl2_sim_slot_t){ .key = key, .hash = hash, .row = row };
    t->n++;
    return 0;
}

/* ---- --tiers FILE: the tier each user, API key or address has ---- */

typedef struct {
    char *key;  /* "user:NAME", "key:APIKEY" or an address; owned */
    char *tier; /* within key's allocation */
} rl2_sim_tier_t;

typedef struct {
    rl2_sim_tier_t *rows;
    size_t          n, cap;
    rl2_sim_tab_t   tab;
    int             has_keys; /* some key: line: look the query up */
} rl2_sim_tiers_t;

static void
rl2_sim_tiers_free(rl2_sim_tiers_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->rows[i].key);
    }
    free(t->rows);
    free(t->tab.slots);
}

/* Does every replayed policy name the tier, and take tiers from the
 * variable the mapping stands for? */
static int
rl2_sim_tier_known(const rl2_sim_t *s, const char *tier)
{
    for (size_t r = 0; r < s->n_runs; r++) {
        const rl2_policy_t *p = s->run[r].policy;
        size_t              i;

        for (i = 0; i < p->n_tiers && strcmp(p->tiers[i].name, tier) != 0;
             i++) {
        }
        if (i == p->n_tiers) {
            return 0;
        }
    }
    return 1;
}

/* One line "KEY TIER": its fields, checked; RL2_CTL_OK or USAGE. */
static int
rl2_sim_tier_line(rl2_sim_t *s, rl2_sim_tiers_t *t, const char *file,
                  long lineno, char *line)
{
    char         *key, *tier, *end, *copy;
    char          canon[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    size_t        klen;

    key = line + strspn(line, " \t");
    if (*key == '\0' || *key == '#') {
        return RL2_CTL_OK;
    }
    tier = key + strcspn(key, " \t");
    if (*tier == '\0') {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: expected KEY TIER", file,
                            lineno);
    }
    *tier++ = '\0';
    tier += strspn(tier, " \t");
    end = tier + strcspn(tier, " \t");
    if (*tier == '\0' || end[strspn(end, " \t")] != '\0') {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: expected KEY TIER", file,
                            lineno);
    }
    *end = '\0';
    if (strncmp(key, "user:", 5) == 0  ? key[5] == '\0'
        : strncmp(key, "key:", 4) == 0 ? key[4] == '\0'
                                       : !rl2_ctl_is_address(key)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "%s:%ld: \"%s\": expected user:NAME, "
                            "key:APIKEY or an address",
                            file, lineno, key);
    }
    /* An IPv6 address as the servers log it (inet_ntop's form):
     * "2001:DB8::1" names the client logged as "2001:db8::1". */
    if (key[0] != 'u' && key[0] != 'k' && inet_pton(AF_INET6, key, addr) == 1
        && inet_ntop(AF_INET6, addr, canon, sizeof(canon)) != NULL) {
        key = canon;
    }
    if (!rl2_sim_tier_known(s, tier)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "%s:%ld: tier \"%s\" is not one of the "
                            "policy's tiers",
                            file, lineno, tier);
    }
    if (rl2_sim_tab_find(&t->tab, key, rl2_sim_hash(key)) != (size_t)-1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: \"%s\" is named twice",
                            file, lineno, key);
    }
    if (t->n == RL2_SIM_TIERS_MAX) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: more than %d lines", file,
                            lineno, RL2_SIM_TIERS_MAX);
    }
    if (t->n == t->cap) {
        size_t          cap = t->cap ? t->cap * 2 : 64;
        rl2_sim_tier_t *rows = realloc(t->rows, cap * sizeof(*rows));

        if (rows == NULL) {
            return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory");
        }
        t->rows = rows;
        t->cap = cap;
    }
    klen = strlen(key);
    if ((copy = malloc(klen + strlen(tier) + 2)) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory");
    }
    memcpy(copy, key, klen + 1);
    strcpy(copy + klen + 1, tier);
    t->rows[t->n] = (rl2_sim_tier_t){ .key = copy, .tier = copy + klen + 1 };
    if (rl2_sim_tab_add(&t->tab, copy, rl2_sim_hash(copy), t->n) != 0) {
        free(copy);
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory");
    }
    t->n++;
    t->has_keys |= key[0] == 'k' && key[3] == ':';
    return RL2_CTL_OK;
}

/* Read --tiers: each policy must take its tier from a variable (the
 * mapping is what the server would have set it to). */
static int
rl2_sim_tiers_read(rl2_sim_t *s, const char *file, rl2_sim_tiers_t *t)
{
    char   *line = NULL; /* getline's, freed below */
    size_t  cap = 0;
    ssize_t n;
    FILE   *f;
    long    lineno = 0;
    int     rc = RL2_CTL_OK;

    for (size_t r = 0; r < s->n_runs; r++) {
        if (s->run[r].policy->tier_variable == NULL) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "--tiers: %s takes no tier from a variable "
                                "(tier_from.variable)",
                                s->run[r].path);
        }
    }
    if ((f = fopen(file, "r")) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "--tiers %s: %s", file,
                            strerror(errno));
    }
    /* getline says how many bytes it read, so a NUL anywhere in a line,
     * the last byte of a file without a final newline included, is seen;
     * a line is bounded after the read (getline's buffer is the only
     * one that grows with it). */
    while (rc == RL2_CTL_OK && (n = getline(&line, &cap, f)) != -1) {
        size_t len = (size_t)n;

        lineno++;
        if (memchr(line, '\0', len) != NULL) {
            rc =
                rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: a NUL byte", file, lineno);
            break;
        }
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        }
        if (len > RL2_SIM_TIER_LINE_MAX) {
            rc = rl2_ctl_fail(RL2_CTL_USAGE, "%s:%ld: longer than %d bytes",
                              file, lineno, RL2_SIM_TIER_LINE_MAX);
            break;
        }
        if (len > 0 && line[len - 1] == '\r') {
            line[--len] = '\0';
        }
        rc = rl2_sim_tier_line(s, t, file, lineno, line);
    }
    if (rc == RL2_CTL_OK && ferror(f)) {
        rc = rl2_ctl_fail(RL2_CTL_FAIL, "--tiers %s: read error", file);
    }
    free(line);
    fclose(f);
    return rc;
}

/* The raw value of the query parameter `name` (as logged, escapes not
 * decoded) into buf; NULL when absent or too long. */
static const char *
rl2_sim_query_param(const char *query, const char *name, char *buf, size_t size)
{
    size_t n = strlen(name);

    while (query != NULL && *query != '\0') {
        size_t len = strcspn(query, "&");

        if (len > n && strncmp(query, name, n) == 0 && query[n] == '=') {
            if (len - n - 1 >= size) {
                return NULL;
            }
            memcpy(buf, query + n + 1, len - n - 1);
            buf[len - n - 1] = '\0';
            return buf;
        }
        query = query[len] == '&' ? query + len + 1 : NULL;
    }
    return NULL;
}

/* The tier of a request: its user's line, else its API key's, else its
 * address's; NULL when none names one. */
static const char *
rl2_sim_tier_of(const rl2_sim_tiers_t *t, const rl2_policy_t *p,
                const rl2_alog_entry_t *e, const char *query)
{
    char   key[RL2_SIM_TIER_LINE_MAX + 8];
    size_t row;

    if (t->n == 0) {
        return NULL;
    }
    if (e->user != NULL
        && (size_t)snprintf(key, sizeof(key), "user:%s", e->user) < sizeof(key)
        && (row = rl2_sim_tab_find(&t->tab, key, rl2_sim_hash(key)))
               != (size_t)-1) {
        return t->rows[row].tier;
    }
    if (t->has_keys && p->apikey_query != NULL
        && rl2_sim_query_param(query, p->apikey_query, key + 4, sizeof(key) - 4)
               != NULL) {
        memcpy(key, "key:", 4);
        if ((row = rl2_sim_tab_find(&t->tab, key, rl2_sim_hash(key)))
            != (size_t)-1) {
            return t->rows[row].tier;
        }
    }
    row = rl2_sim_tab_find(&t->tab, e->client, rl2_sim_hash(e->client));
    return row != (size_t)-1 ? t->rows[row].tier : NULL;
}

/* ---- the replay ---- */

/* The request headers a log keeps. */
static const char *
rl2_sim_header(void *ctx, const char *name)
{
    const rl2_alog_entry_t *e = ctx;

    if (strcasecmp(name, "User-Agent") == 0) {
        return e->agent;
    }
    if (strcasecmp(name, "Referer") == 0) {
        return e->referer;
    }
    if (strcasecmp(name, "Host") == 0) {
        return e->host;
    }
    return NULL;
}

/* A zone of the run's own, and its store.  Unlinked at once: the
 * mapping is all the run needs, and nothing is left when it ends. */
static int
rl2_sim_run_open(rl2_sim_run_t *run, const rl2_ctl_opts_t *o, int which)
{
    rl2_err_t err;

    /* A name nobody can guess (the random basis the run's hash tables
     * drew): another user who created it first would stop the run, as
     * the open refuses a zone that is not ours. */
    snprintf(run->zone_name, sizeof(run->zone_name),
             "/rl2-simulate-%ld-%016" PRIx64 "-%c", (long)getpid(),
             rl2_alog_hash_begin() ^ (uint64_t)(uintptr_t)run,
             which ? 'b' : 'a');
    if ((run->v = malloc(sizeof(*run->v))) == NULL
        || (run->by_tier =
                calloc(run->policy->n_tiers + 1, sizeof(*run->by_tier)))
               == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory");
    }
    /* A zone left by a killed run of the same pid: not ours to read. */
    (void)rl2_zone_unlink(run->zone_name, NULL);
    if (rl2_zone_open(run->zone_name, o->backend.zone_entries,
                      run->policy->max_state_size, 0600, &run->zone, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s", err.msg);
    }
    (void)rl2_zone_unlink(run->zone_name, NULL);
    if (rl2_store_local_create(run->zone, &run->store, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s", err.msg);
    }
    return RL2_CTL_OK;
}

/* The zone and the store; the counts stay for the answer. */
static void
rl2_sim_run_close(rl2_sim_run_t *run)
{
    if (run->store != NULL) {
        rl2_store_destroy(run->store);
    }
    rl2_zone_close(run->zone);
    free(run->v);
    run->store = NULL;
    run->zone = NULL;
    run->v = NULL;
}

/* Count a refusal against the limit that made it. */
static int
rl2_sim_rule_count(rl2_sim_run_t *run, const rl2_rule_t *rule,
                   const rl2_limit_t *limit)
{
    size_t i;

    for (i = 0; i < run->n_rules; i++) {
        if (run->rules[i].rule == rule && run->rules[i].limit == limit) {
            run->rules[i].refused++;
            return 0;
        }
    }
    if (run->n_rules == run->cap_rules) {
        size_t          cap = run->cap_rules ? run->cap_rules * 2 : 16;
        rl2_sim_rule_t *rows = realloc(run->rules, cap * sizeof(*rows));

        if (rows == NULL) {
            return -1;
        }
        run->rules = rows;
        run->cap_rules = cap;
    }
    run->rules[run->n_rules++] =
        (rl2_sim_rule_t){ .rule = rule, .limit = limit, .refused = 1 };
    return 0;
}

/* Decide one request: 1 refused, 0 admitted, -1 the core refused the
 * request as ambiguous (counted); -2 a store error (said), -3 out of
 * memory (not said yet). */
static int
rl2_sim_decide(rl2_sim_run_t *run, const rl2_request_t *req,
               const rl2_clock_t *now)
{
    rl2_verdict_t *v = run->v;
    rl2_err_t      err;
    rl2_status_t   st;

    rl2_verdict_init(v);
    st = rl2_decide(run->policy, NULL, 0, run->store, req, RL2_PHASE_ALL, now,
                    v, &err);
    if (st == RL2_ERR_REQUEST || st == RL2_ERR_BOUND) {
        run->malformed++;
        return -1;
    }
    if (st != RL2_OK) {
        rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s", err.msg);
        return -2;
    }
    if (rl2_decide_holds(v)
        && rl2_decide_end(run->store, v, now, &err) != RL2_OK) {
        rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s", err.msg);
        return -2;
    }
    if (v->outcome != RL2_OUTCOME_DENY) {
        run->admitted++;
        return 0;
    }
    run->refused++;
    if (v->tier >= 0 && (size_t)v->tier < run->policy->n_tiers) {
        run->by_tier[v->tier]++;
    }
    else {
        run->tierless++;
    }
    if (v->refusal != RL2_REFUSAL_LIMIT) {
        return rl2_sim_rule_count(run, NULL, NULL) == 0 ? 1 : -3;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        if (l->refused && !l->dry_run
            && rl2_sim_rule_count(run, l->rule, l->limit) != 0) {
            return -3;
        }
    }
    return 1;
}

/* The client row of a request ("user:NAME", else the address); NULL
 * past RL2_SIM_CLIENTS_MAX (counted) or when out of memory (*oom). */
static rl2_sim_client_t *
rl2_sim_client(rl2_sim_t *s, rl2_sim_tab_t *tab, const rl2_alog_entry_t *e,
               int *oom)
{
    char     name[RL2_ALOG_LINE_MAX + 8];
    uint64_t h;
    size_t   row;
    char    *copy;

    if (e->user != NULL) {
        snprintf(name, sizeof(name), "user:%s", e->user);
    }
    else {
        snprintf(name, sizeof(name), "%s", e->client);
    }
    h = rl2_sim_hash(name);
    if ((row = rl2_sim_tab_find(tab, name, h)) != (size_t)-1) {
        return &s->clients[row];
    }
    if (s->n_clients == RL2_SIM_CLIENTS_MAX) {
        s->over_clients++;
        return NULL;
    }
    if (s->n_clients == s->cap_clients) {
        size_t            cap = s->cap_clients ? s->cap_clients * 2 : 256;
        rl2_sim_client_t *rows = realloc(s->clients, cap * sizeof(*rows));

        if (rows == NULL) {
            *oom = 1;
            return NULL;
        }
        s->clients = rows;
        s->cap_clients = cap;
    }
    if ((copy = strdup(name)) == NULL
        || rl2_sim_tab_add(tab, copy, h, s->n_clients) != 0) {
        free(copy);
        *oom = 1;
        return NULL;
    }
    memset(&s->clients[s->n_clients], 0, sizeof(s->clients[0]));
    s->clients[s->n_clients].name = copy;
    s->clients[s->n_clients].hash = h;
    return &s->clients[s->n_clients++];
}

static void
rl2_sim_refusal(rl2_sim_count_t *c, int64_t t_us, int only)
{
    if (c->refused++ == 0) {
        c->first_us = t_us;
    }
    c->last_us = t_us;
    c->only += only;
}

/* Replay one request through every run. */
static int
rl2_sim_entry(rl2_sim_t *s, rl2_sim_tab_t *clients,
              const rl2_sim_tiers_t *tiers, const rl2_alog_entry_t *e,
              const rl2_clock_t *now)
{
    rl2_request_t     req = { 0 };
    rl2_sim_client_t *cl;
    const char       *q = strchr(e->target, '?');
    int               got[2] = { 0, 0 }, oom = 0;

    s->entries++;
    s->logged_429 += e->status == 429;
    if (s->first_us == 0) {
        s->first_us = now->wall_us;
    }
    s->last_us = now->wall_us;
    /* A name (HostnameLookups On) is no address to key on. */
    if (!rl2_ctl_is_address(e->client)) {
        s->unaddressed++;
        return RL2_CTL_OK;
    }
    req.method = e->method;
    req.path = e->target;
    req.query = q != NULL ? q + 1 : NULL;
    req.host = e->host;
    req.peer_ip = e->client;
    req.user = e->user;
    req.header = rl2_sim_header;
    req.header_ctx = (void *)e;
    for (size_t r = 0; r < s->n_runs; r++) {
        req.tier_var = rl2_sim_tier_of(tiers, s->run[r].policy, e, req.query);
        if ((got[r] = rl2_sim_decide(&s->run[r], &req, now)) < -1) {
            return got[r] == -3 ? rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out "
                                                             "of memory")
                                : RL2_CTL_FAIL;
        }
    }
    if ((cl = rl2_sim_client(s, clients, e, &oom)) == NULL) {
        return oom ? rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory")
                   : RL2_CTL_OK;
    }
    cl->requests++;
    for (size_t r = 0; r < s->n_runs; r++) {
        if (got[r] == 1) {
            rl2_sim_refusal(&cl->run[r], now->wall_us,
                            s->n_runs == 2 && got[1 - r] == 0);
        }
    }
    return RL2_CTL_OK;
}

/* ---- the logs, merged by time ---- */

typedef struct {
    const char      *path;
    rl2_alog_t      *r;
    rl2_alog_entry_t e;
    int              have; /* e is the file's next request */
} rl2_sim_file_t;

static int
rl2_sim_advance(rl2_sim_file_t *f)
{
    char errbuf[512];
    int  n = rl2_alog_next(f->r, &f->e, errbuf, sizeof(errbuf));

    if (n < 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s: %s", f->path, errbuf);
    }
    f->have = n == 1;
    return RL2_CTL_OK;
}

static int
rl2_sim_replay(rl2_sim_t *s, rl2_sim_file_t *files, size_t n_files,
               const rl2_sim_tiers_t *tiers)
{
    rl2_sim_tab_t clients = { 0 };
    rl2_clock_t   now = { 0, 0 };
    int           rc = RL2_CTL_OK;

    for (size_t i = 0; i < n_files && rc == RL2_CTL_OK; i++) {
        rc = rl2_sim_advance(&files[i]);
    }
    while (rc == RL2_CTL_OK) {
        rl2_sim_file_t *f = NULL;

        for (size_t i = 0; i < n_files; i++) {
            if (files[i].have
                && (f == NULL || files[i].e.time_us < f->e.time_us)) {
                f = &files[i];
            }
        }
        if (f == NULL) {
            break;
        }
        if (f->e.time_us > now.wall_us) {
            now.wall_us = now.mono_us = f->e.time_us;
        }
        if ((rc = rl2_sim_entry(s, &clients, tiers, &f->e, &now))
            == RL2_CTL_OK) {
            rc = rl2_sim_advance(f);
        }
    }
    free(clients.slots);
    return rc;
}

/* Open every log (all before replaying: a missing one is found before
 * any work is done), replay, and take their counters. */
static int
rl2_sim_logs(const rl2_ctl_opts_t *o, rl2_sim_t *s, int argc, char **argv,
             const rl2_sim_tiers_t *tiers)
{
    rl2_sim_file_t   *files = calloc((size_t)argc, sizeof(*files));
    rl2_alog_format_t fmt =
        o->log_format < 0 ? RL2_ALOG_AUTO : (rl2_alog_format_t)o->log_format;
    char errbuf[512];
    int  rc = RL2_CTL_OK;

    if (files == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: out of memory");
    }
    for (int i = 0; i < argc && rc == RL2_CTL_OK; i++) {
        files[i].path = argv[i];
        if (rl2_alog_open(argv[i], fmt, &files[i].r, errbuf, sizeof(errbuf))
            != 0) {
            rc = rl2_ctl_fail(RL2_CTL_FAIL, "simulate: %s", errbuf);
        }
    }
    if (rc == RL2_CTL_OK) {
        rc = rl2_sim_replay(s, files, (size_t)argc, tiers);
    }
    for (int i = 0; i < argc; i++) {
        if (files[i].r == NULL) {
            continue;
        }
        const rl2_alog_stats_t *st = rl2_alog_stats(files[i].r);

        s->lines += st->lines;
        s->skipped += st->skipped;
        /* The reader's reasons are its constant strings. */
        if (s->first_skip_file == NULL && st->n_bad > 0) {
            s->first_skip_file = files[i].path;
            s->first_skip_line = st->bad_line[0];
            s->first_skip_why = st->bad_why[0];
        }
        rl2_alog_close(files[i].r);
    }
    free(files);
    return rc;
}

/* ---- the subcommand ---- */

static void
rl2_sim_free(rl2_sim_t *s, const rl2_ctl_opts_t *o)
{
    for (size_t r = 0; r < 2; r++) {
        rl2_sim_run_close(&s->run[r]);
        free(s->run[r].rules);
        free(s->run[r].by_tier);
        if (s->run[r].policy != o->policy_loaded) {
            rl2_policy_free(s->run[r].policy);
        }
    }
    for (size_t i = 0; i < s->n_clients; i++) {
        free(s->clients[i].name);
    }
    free(s->clients);
}

static int
rl2_sim_output(const rl2_ctl_opts_t *o, const rl2_sim_t *s)
{
    FILE *f = stdout;

    if (o->output != NULL && (f = fopen(o->output, "w")) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "-o %s: %s", o->output,
                            strerror(errno));
    }
    if (o->format == RL2_CTL_JSON) {
        rl2_ctl_sim_json(f, s);
    }
    else {
        rl2_ctl_sim_text(f, s, o->top);
    }
    if (f != stdout ? fclose(f) != 0 : fflush(f) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "simulate: cannot write the answer");
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_simulate(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_sim_t       s;
    rl2_sim_tiers_t tiers = { 0 };
    rl2_err_t       err;
    int             rc = RL2_CTL_OK;

    if (argc < 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: simulate [--against POLICY_B] "
                            "[--tiers FILE] [--format F] [--json] [-n N] "
                            "ACCESS_LOG...");
    }
    if (o->format == RL2_CTL_HTML) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "simulate takes --json, not "
                                           "--html");
    }
    memset(&s, 0, sizeof(s));
    s.run[0].path = o->policy;
    s.run[0].policy = o->policy_loaded;
    s.n_runs = 1;
    if (o->against != NULL) {
        s.run[1].path = o->against;
        if (rl2_config_load(o->against, &s.run[1].policy, &err) != RL2_OK) {
            return rl2_ctl_fail(RL2_CTL_FAIL, "--against: %s", err.msg);
        }
        s.n_runs = 2;
    }
    if (o->tiers != NULL) {
        rc = rl2_sim_tiers_read(&s, o->tiers, &tiers);
    }
    for (size_t r = 0; r < s.n_runs && rc == RL2_CTL_OK; r++) {
        rc = rl2_sim_run_open(&s.run[r], o, (int)r);
    }
    if (rc == RL2_CTL_OK) {
        rc = rl2_sim_logs(o, &s, argc, argv, &tiers);
    }
    for (size_t r = 0; r < s.n_runs; r++) {
        rl2_sim_run_close(&s.run[r]);
    }
    if (rc == RL2_CTL_OK) {
        rc = rl2_sim_output(o, &s);
    }
    rl2_sim_tiers_free(&tiers);
    rl2_sim_free(&s, o);
    return rc;
}
