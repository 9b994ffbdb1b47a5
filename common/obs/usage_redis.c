/*
 * usage_redis.c -- reading the fleet's usage series from Redis (the keys:
 * usage_redis.h) into a view that usage.c's functions serve, so that
 * whatever renders a host's series renders the fleet's unchanged.
 *
 * The whole period is read at open, in two passes of pipelined batches
 * (one server, Sentinel's master) or one command at a time (a Cluster,
 * routed by the hour's slot): first every minute's hash of the last 24 h
 * and every hour's of the last 31 days, which name the cells and give
 * their counts and peaks; then one PFCOUNT per cell and interval that
 * had a request.  Nothing is written.
 *
 * Replies are data from the network: a field that does not parse, or a
 * name longer than a rule's, is skipped.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis/redis_resp.h"
#include "usage_redis.h"

/* Commands in one pipelined batch. */
#define RL2_USAGE_READ_BATCH 256

typedef struct {
    rl2_usage_cell_t  cell;
    rl2_usage_point_t minutes[RL2_USAGE_MINUTES];
    rl2_usage_point_t hours[RL2_USAGE_HOURS];
} rl2_usage_fleet_cell_t;

struct rl2_usage_fleet {
    uint64_t                first_minute; /* minutes[0]'s, Unix time / 60 */
    uint64_t                first_hour;   /* hours[0]'s, Unix time / 3600 */
    size_t                  n_cells;
    rl2_usage_fleet_cell_t *cells[RL2_USAGE_CELLS]; /* owned */
};

/* Where the commands go: a connection, or a Cluster's router. */
typedef struct {
    rl2_redis_conn_t    *conn;
    rl2_redis_cluster_t *cluster;
} rl2_usage_io_t;

/* One read command: a verb and its key, and where its reply goes. */
typedef struct {
    const char        *verb; /* "HGETALL" or "PFCOUNT" */
    char               key[RL2_USAGE_REDIS_KEY_MAX];
    rl2_usage_point_t *point; /* PFCOUNT: the point it counts */
    int                hour;  /* HGETALL: 1 for an hour's hash */
    size_t             index; /* HGETALL: the interval's index */
} rl2_usage_read_t;

/* ---- the transport ------------------------------------------------- */

/* n commands (n <= RL2_USAGE_READ_BATCH), their replies into replies[]
 * (the caller frees them); RL2_ERR_STORE when any is missing. */
static rl2_status_t
rl2_usage_io_batch(rl2_usage_io_t *io, const rl2_usage_read_t *cmds, size_t n,
                   redisReply **replies, rl2_err_t *err)
{
    char  *buf, why[128];
    size_t len = 0, cap = n * (RL2_USAGE_REDIS_KEY_MAX + 32), got;

    for (size_t i = 0; i < n && io->cluster != NULL; i++) {
        const char *argv[2] = { cmds[i].verb, cmds[i].key };
        unsigned    slot = rl2_redis_key_slot(cmds[i].key, strlen(cmds[i].key));
        rl2_status_t st;

        st = rl2_redis_cluster_command(
            io->cluster, slot, 2, argv, NULL, cmds[i].verb,
            (struct redisReply **)&replies[i], NULL, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    if (io->cluster != NULL) {
        return RL2_OK;
    }
    if ((buf = malloc(cap)) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *argv[2] = { cmds[i].verb, cmds[i].key };
        size_t      w = rl2_resp_format(buf + len, cap - len, 2, argv, NULL);

        if (w == 0) {
            free(buf);
            return rl2_err_set(err, RL2_ERR_STORE, "usage: key too long");
        }
        len += w;
    }
    got = rl2_redis_conn_batch(io->conn, buf, len, n,
                               (struct redisReply **)replies, INT_MAX, why,
                               sizeof(why));
    free(buf);
    if (got < n) {
        return rl2_err_set(err, RL2_ERR_STORE, "redis %s: usage read: %s",
                           rl2_redis_conn_name(io->conn), why);
    }
    return RL2_OK;
}

/* ---- cells --------------------------------------------------------- */

/* The cell named "RULE\tTIER" (len bytes of name), added if new; NULL
 * when the name does not parse or the view is full. */
static rl2_usage_fleet_cell_t *
rl2_usage_fleet_cell(struct rl2_usage_fleet *f, const char *name, size_t len)
{
    const char *tab = memchr(name, '\t', len);
    size_t      rule_len, tier_len;

    if (tab == NULL) {
        return NULL;
    }
    rule_len = (size_t)(tab - name);
    tier_len = len - rule_len - 1;
    if (rule_len == 0 || rule_len > RL2_NAME_MAX || tier_len == 0
        || tier_len > RL2_NAME_MAX || memchr(tab + 1, '\t', tier_len) != NULL) {
        return NULL;
    }
    for (size_t i = 0; i < f->n_cells; i++) {
        rl2_usage_fleet_cell_t *c = f->cells[i];

        if (strlen(c->cell.rule) == rule_len
            && memcmp(c->cell.rule, name, rule_len) == 0
            && strlen(c->cell.tier) == tier_len
            && memcmp(c->cell.tier, tab + 1, tier_len) == 0) {
            return c;
        }
    }
    if (f->n_cells == RL2_USAGE_CELLS
        || (f->cells[f->n_cells] = calloc(1, sizeof(**f->cells))) == NULL) {
        return NULL;
    }
    memcpy(f->cells[f->n_cells]->cell.rule, name, rule_len);
    memcpy(f->cells[f->n_cells]->cell.tier, tab + 1, tier_len);
    return f->cells[f->n_cells++];
}

/* A decimal count; 0 for anything else. */
static uint64_t
rl2_usage_fleet_u64(const redisReply *r)
{
    char     text[24], *end;
    uint64_t v;

    if (r->type != REDIS_REPLY_STRING || r->len == 0
        || r->len >= sizeof(text)) {
        return 0;
    }
    memcpy(text, r->str, r->len);
    text[r->len] = '\0';
    v = strtoull(text, &end, 10);
    return *end == '\0' && text[0] != '-' ? v : 0;
}

/* One field "RULE\tTIER\tFIELD" of a minute's or an hour's hash into
 * its cell's point. */
static void
rl2_usage_fleet_field(struct rl2_usage_fleet *f, const rl2_usage_read_t *cmd,
                      const redisReply *name, const redisReply *value)
{
    const char             *last;
    rl2_usage_fleet_cell_t *c;
    rl2_usage_point_t      *p;
    uint64_t                v = rl2_usage_fleet_u64(value);
    size_t                  len;

    if (name->type != REDIS_REPLY_STRING
        || (last = memrchr(name->str, '\t', name->len)) == NULL
        || (c = rl2_usage_fleet_cell(f, name->str, (size_t)(last - name->str)))
               == NULL) {
        return;
    }
    p = cmd->hour ? &c->hours[cmd->index] : &c->minutes[cmd->index];
    len = name->len - (size_t)(last + 1 - name->str);
#define RL2_USAGE_FIELD_IS(s) \
    (len == sizeof(s) - 1 && memcmp(last + 1, s, len) == 0)
    if (RL2_USAGE_FIELD_IS("requests")) {
        p->requests = v;
    }
    else if (RL2_USAGE_FIELD_IS("admitted")) {
        p->admitted = v;
    }
    else if (RL2_USAGE_FIELD_IS("refused")) {
        p->refused = v;
    }
    else if (RL2_USAGE_FIELD_IS("peak")) {
        p->peak_ppm = v > 1000000 ? 1000000 : (uint32_t)v;
    }
#undef RL2_USAGE_FIELD_IS
}

/* ---- the two passes ------------------------------------------------ */

/* Run cmds[0..n) in batches; HGETALL replies fill cells, PFCOUNT ones
 * their point's clients. */
static rl2_status_t
rl2_usage_fleet_run(struct rl2_usage_fleet *f, rl2_usage_io_t *io,
                    const rl2_usage_read_t *cmds, size_t n, rl2_err_t *err)
{
    redisReply  *replies[RL2_USAGE_READ_BATCH];
    rl2_status_t st = RL2_OK;

    for (size_t at = 0; at < n && st == RL2_OK; at += RL2_USAGE_READ_BATCH) {
        size_t k =
            n - at < RL2_USAGE_READ_BATCH ? n - at : RL2_USAGE_READ_BATCH;

        memset(replies, 0, sizeof(replies));
        st = rl2_usage_io_batch(io, cmds + at, k, replies, err);
        for (size_t i = 0; i < k && st == RL2_OK; i++) {
            const rl2_usage_read_t *cmd = &cmds[at + i];
            const redisReply       *r = replies[i];

            if (r->type == REDIS_REPLY_ERROR) {
                st = rl2_err_set(err, RL2_ERR_STORE, "redis %s %s: %.200s",
                                 cmd->verb, cmd->key, r->str);
            }
            else if (cmd->point != NULL && r->type == REDIS_REPLY_INTEGER) {
                cmd->point->clients = r->integer < 0 ? 0
                                      : r->integer > UINT32_MAX
                                          ? UINT32_MAX
                                          : (uint32_t)r->integer;
            }
            else if (cmd->point == NULL && r->type == REDIS_REPLY_ARRAY) {
                for (size_t j = 0; j + 1 < r->elements; j += 2) {
                    rl2_usage_fleet_field(f, cmd, r->element[j],
                                          r->element[j + 1]);
                }
            }
        }
        for (size_t i = 0; i < k; i++) {
            rl2_redis_reply_free(replies[i]);
        }
    }
    return st;
}

/* Pass 1: every minute's and every hour's hash. */
static rl2_status_t
rl2_usage_fleet_hashes(struct rl2_usage_fleet *f, rl2_usage_io_t *io,
                       rl2_err_t *err)
{
    const size_t      n = RL2_USAGE_MINUTES + RL2_USAGE_HOURS;
    rl2_usage_read_t *cmds = calloc(n, sizeof(*cmds));
    rl2_status_t      st;
    char              tag[RL2_USAGE_REDIS_TAG_MAX];

    if (cmds == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage: out of memory");
    }
    for (size_t i = 0; i < RL2_USAGE_MINUTES; i++) {
        int64_t minute = (int64_t)(f->first_minute + i);

        rl2_usage_key_hour_tag(tag, sizeof(tag), minute * 60);
        cmds[i].verb = "HGETALL";
        snprintf(cmds[i].key, sizeof(cmds[i].key), "%sm:%" PRId64, tag, minute);
        cmds[i].index = i;
    }
    for (size_t i = 0; i < RL2_USAGE_HOURS; i++) {
        rl2_usage_read_t *c = &cmds[RL2_USAGE_MINUTES + i];

        rl2_usage_key_hour_tag(tag, sizeof(tag),
                               (int64_t)(f->first_hour + i) * 3600);
        c->verb = "HGETALL";
        snprintf(c->key, sizeof(c->key), "%sh", tag);
        c->hour = 1;
        c->index = i;
    }
    st = rl2_usage_fleet_run(f, io, cmds, n, err);
    free(cmds);
    return st;
}

/* Pass 2: one PFCOUNT per cell and interval that had a request (hours'
 * keys merge their minutes: one count each).  The cells' totals are the
 * sums of their hours. */
static rl2_status_t
rl2_usage_fleet_counts(struct rl2_usage_fleet *f, rl2_usage_io_t *io,
                       rl2_err_t *err)
{
    size_t            n = 0, cap = 0;
    rl2_usage_read_t *cmds = NULL;
    rl2_status_t      st;
    char              tag[RL2_USAGE_REDIS_TAG_MAX];

    for (size_t c = 0; c < f->n_cells; c++) {
        rl2_usage_fleet_cell_t *fc = f->cells[c];

        for (size_t i = 0; i < RL2_USAGE_MINUTES + RL2_USAGE_HOURS; i++) {
            int                hour = i >= RL2_USAGE_MINUTES;
            size_t             j = hour ? i - RL2_USAGE_MINUTES : i;
            rl2_usage_point_t *p = hour ? &fc->hours[j] : &fc->minutes[j];
            int64_t start_s = hour ? (int64_t)(f->first_hour + j) * 3600
                                   : (int64_t)(f->first_minute + j) * 60;

            if (hour) {
                fc->cell.requests += p->requests;
                fc->cell.admitted += p->admitted;
                fc->cell.refused += p->refused;
            }
            if (p->requests == 0) {
                continue;
            }
            if (n == cap) {
                rl2_usage_read_t *more;

                cap = cap == 0 ? 1024 : cap * 2;
                if ((more = realloc(cmds, cap * sizeof(*cmds))) == NULL) {
                    free(cmds);
                    return rl2_err_set(err, RL2_ERR_NOMEM,
                                       "usage: out of memory");
                }
                cmds = more;
            }
            rl2_usage_key_hour_tag(tag, sizeof(tag), start_s);
            memset(&cmds[n], 0, sizeof(cmds[n]));
            cmds[n].verb = "PFCOUNT";
            if (hour) {
                snprintf(cmds[n].key, sizeof(cmds[n].key), "%shll:h:%s\t%s",
                         tag, fc->cell.rule, fc->cell.tier);
            }
            else {
                snprintf(cmds[n].key, sizeof(cmds[n].key),
                         "%shll:m:%" PRId64 ":%s\t%s", tag, start_s / 60,
                         fc->cell.rule, fc->cell.tier);
            }
            cmds[n].point = p;
            n++;
        }
    }
    st = rl2_usage_fleet_run(f, io, cmds, n, err);
    free(cmds);
    return st;
}

/* ---- opening ------------------------------------------------------- */

void
rl2_usage_fleet_free(struct rl2_usage_fleet *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->n_cells; i++) {
        free(f->cells[i]);
    }
    free(f);
}

static rl2_status_t
rl2_usage_fleet_read(struct rl2_usage_fleet *f, const rl2_redis_conf_t *conf,
                     rl2_err_t *err)
{
    rl2_usage_io_t io = { NULL, NULL };
    rl2_status_t   st;

    st = conf->n_seeds > 0 ? rl2_redis_cluster_create(conf, &io.cluster, err)
                           : rl2_redis_conn_open(conf, &io.conn, err);
    if (st == RL2_OK) {
        st = rl2_usage_fleet_hashes(f, &io, err);
    }
    if (st == RL2_OK) {
        st = rl2_usage_fleet_counts(f, &io, err);
    }
    rl2_redis_conn_close(io.conn);
    rl2_redis_cluster_destroy(io.cluster);
    return st;
}

rl2_status_t
rl2_usage_open_redis(const rl2_redis_conf_t *conf, int64_t now_wall_s,
                     rl2_usage_t **out, rl2_err_t *err)
{
    struct rl2_usage_fleet *f;
    rl2_usage_t            *u;
    rl2_status_t            st;
    uint64_t                now_s = now_wall_s > 0 ? (uint64_t)now_wall_s : 0;

    *out = NULL;
    if (now_s / 60 < RL2_USAGE_MINUTES || now_s / 3600 < RL2_USAGE_HOURS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "usage: bad time %" PRId64,
                           now_wall_s);
    }
    f = calloc(1, sizeof(*f));
    u = calloc(1, sizeof(*u));
    if (f == NULL || u == NULL) {
        free(f);
        free(u);
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage: out of memory");
    }
    f->first_minute = now_s / 60 - (RL2_USAGE_MINUTES - 1);
    f->first_hour = now_s / 3600 - (RL2_USAGE_HOURS - 1);
    if ((st = rl2_usage_fleet_read(f, conf, err)) != RL2_OK) {
        rl2_usage_fleet_free(f);
        free(u);
        return st;
    }
    u->fleet = f;
    *out = u;
    return RL2_OK;
}

/* ---- serving usage.h ----------------------------------------------- */

size_t
rl2_usage_fleet_cells(const rl2_usage_t *u, rl2_usage_cell_t *out, size_t max)
{
    const struct rl2_usage_fleet *f = u->fleet;
    size_t                        n = f->n_cells < max ? f->n_cells : max;

    for (size_t i = 0; i < n; i++) {
        out[i] = f->cells[i]->cell;
    }
    return n;
}

/* As rl2_usage_series(): the last max points ending with the interval
 * of now_wall_s, from what was read at open (zeros outside it). */
size_t
rl2_usage_fleet_series(const rl2_usage_t *u, size_t i, rl2_usage_step_t step,
                       int64_t now_wall_s, rl2_usage_point_t *out, size_t max,
                       int64_t *first_start_s)
{
    const struct rl2_usage_fleet *f = u->fleet;
    const rl2_usage_point_t      *ring;
    size_t                        len =
        step == RL2_USAGE_STEP_MINUTE ? RL2_USAGE_MINUTES : RL2_USAGE_HOURS;
    uint64_t first_read, now_iv, first;
    size_t   n = max < len ? max : len;

    if (i >= f->n_cells || now_wall_s < 0
        || (step != RL2_USAGE_STEP_MINUTE && step != RL2_USAGE_STEP_HOUR)) {
        return 0;
    }
    now_iv = (uint64_t)now_wall_s / (uint64_t)step;
    if (n == 0 || now_iv + 1 < n) {
        return 0;
    }
    first = now_iv + 1 - n;
    ring = step == RL2_USAGE_STEP_MINUTE ? f->cells[i]->minutes
                                         : f->cells[i]->hours;
    first_read =
        step == RL2_USAGE_STEP_MINUTE ? f->first_minute : f->first_hour;
    for (size_t k = 0; k < n; k++) {
        uint64_t iv = first + k;

        if (iv >= first_read && iv - first_read < len) {
            out[k] = ring[iv - first_read];
        }
        else {
            memset(&out[k], 0, sizeof(out[k]));
        }
    }
    *first_start_s = (int64_t)(first * (uint64_t)step);
    return n;
}
