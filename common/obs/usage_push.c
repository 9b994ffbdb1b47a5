/*
 * usage_push.c -- each minute a host has ended, into Redis (the keys:
 * usage_redis.h), so that the fleet's usage series can be read there.
 *
 * Called by the one request a minute that takes the host's snapshot
 * (metrics_usage.c), so its cost is bounded and paid once: one EVAL per
 * RL2_USAGE_PUSH_CELLS cells, all written at once on the Redis store's
 * connection of that thread and their replies read (one round trip;
 * through a pooled pipe, or in a Cluster to the master of the hour's
 * slot, one after the other), with the store's timeouts; nothing is
 * retried and nothing waits for a reconnect loop.  A failure drops the
 * minute (counted); an open circuit skips it without a try, as the
 * violation log does.  The command carries every active cell's sketch:
 * the sparse encoding when it is small (few clients: a few bytes a
 * client), else the dense one (12,304 bytes).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store/store_internal.h"
#include "redis/redis_resp.h"
#include "usage_redis.h"

/* A sparse sketch larger than this goes dense: Redis' own limit
 * (hll-sparse-max-bytes) before it converts a sketch. */
#define RL2_USAGE_SPARSE_MAX 3000

/* Cells per EVAL: a script holds Redis while it runs (about 0.18 ms a
 * cell with a dense sketch, two PFMERGEs, measured), so a minute of many
 * cells is cut into scripts of this many, and other clients' commands
 * run between them. */
#define RL2_USAGE_PUSH_CELLS 16
#define RL2_USAGE_PUSH_CMDS_MAX \
    ((RL2_USAGE_CELLS + RL2_USAGE_PUSH_CELLS - 1) / RL2_USAGE_PUSH_CELLS)

struct rl2_usage_push {
    rl2_redis_pool_t    *pool;    /* borrowed */
    rl2_redis_cluster_t *cluster; /* borrowed; NULL: one server */
    const rl2_circuit_t *circuit; /* borrowed; NULL: always try */
    _Atomic uint64_t     minutes, failed, skipped;
};

/* KEYS: 1 the minute's hash, 2 the hour's hash, 3 a scratch key, then
 * per cell its minute's and its hour's HyperLogLog.  ARGV: 1 and 2 the
 * TTLs, then per cell "RULE\tTIER", requests, admitted, refused, peak
 * (ppm), the sketch as a Redis HyperLogLog string.  The sketch is SET
 * on the scratch key and PFMERGEd from there: PFMERGE checks it (a
 * malformed one is an error, and the script stops), and the servers'
 * sketches of one cell merge register by register. */
static const char rl2_usage_push_lua[] =
    "local mh, hh, tmp = KEYS[1], KEYS[2], KEYS[3]\n"
    "local n = (#KEYS - 3) / 2\n"
    "for i = 0, n - 1 do\n"
    "  local a, cell = 3 + i * 6, ARGV[3 + i * 6]\n"
    "  local mk, hk = KEYS[4 + 2 * i], KEYS[5 + 2 * i]\n"
    "  for j, f in ipairs({'requests', 'admitted', 'refused'}) do\n"
    "    redis.call('HINCRBY', mh, cell .. '\\t' .. f, ARGV[a + j])\n"
    "    redis.call('HINCRBY', hh, cell .. '\\t' .. f, ARGV[a + j])\n"
    "  end\n"
    "  local peak = tonumber(ARGV[a + 4])\n"
    "  for _, h in ipairs({mh, hh}) do\n"
    "    local was = tonumber(redis.call('HGET', h, cell .. '\\tpeak') or 0)\n"
    "    if peak > was then\n"
    "      redis.call('HSET', h, cell .. '\\tpeak', ARGV[a + 4])\n"
    "    end\n"
    "  end\n"
    "  redis.call('SET', tmp, ARGV[a + 5])\n"
    "  redis.call('PFMERGE', mk, tmp)\n"
    "  redis.call('PFMERGE', hk, tmp)\n"
    "  redis.call('DEL', tmp)\n"
    "  redis.call('EXPIRE', mk, ARGV[1])\n"
    "  redis.call('EXPIRE', hk, ARGV[2])\n"
    "end\n"
    "redis.call('EXPIRE', mh, ARGV[1])\n"
    "redis.call('EXPIRE', hh, ARGV[2])\n"
    "return n\n";

/* One cell's strings for the command (owned by the push's buffer). */
typedef struct {
    char    mkey[RL2_USAGE_REDIS_KEY_MAX];
    char    hkey[RL2_USAGE_REDIS_KEY_MAX];
    char    cell[2 * RL2_NAME_MAX + 2];
    char    num[4][24]; /* requests, admitted, refused, peak */
    size_t  blob_len;
    uint8_t blob[RL2_HLL_REDIS_DENSE];
} rl2_usage_push_cell_t;

/* The command of one minute: argv into its cells' strings. */
typedef struct {
    char                   mhash[RL2_USAGE_REDIS_KEY_MAX];
    char                   hhash[RL2_USAGE_REDIS_KEY_MAX];
    char                   tmp[RL2_USAGE_REDIS_KEY_MAX];
    char                   nkeys[24], mttl[24], httl[24];
    int                    argc;
    const char           **argv;
    size_t                *argvlen;
    rl2_usage_push_cell_t *cells;
} rl2_usage_push_cmd_t;

rl2_status_t
rl2_usage_push_create(rl2_redis_pool_t *pool, rl2_redis_cluster_t *cluster,
                      const rl2_circuit_t *circuit, rl2_usage_push_t **out,
                      rl2_err_t *err)
{
    rl2_usage_push_t *p = calloc(1, sizeof(*p));

    *out = NULL;
    if (p == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage push: out of memory");
    }
    p->pool = pool;
    p->cluster = cluster;
    p->circuit = circuit;
    *out = p;
    return RL2_OK;
}

void
rl2_usage_push_destroy(rl2_usage_push_t *p)
{
    free(p);
}

size_t
rl2_usage_key_hour_tag(char *key, size_t size, int64_t start_s)
{
    int n = snprintf(key, size,
                     RL2_USAGE_REDIS_PREFIX "{h:%" PRId64 "}:", start_s / 3600);

    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* One cell's keys, numbers and sketch. */
static void
rl2_usage_push_fill(rl2_usage_push_cell_t *pc, const char *tag,
                    int64_t minute_start_s, const rl2_usage_minute_cell_t *c)
{
    snprintf(pc->cell, sizeof(pc->cell), "%s\t%s", c->rule, c->tier);
    snprintf(pc->mkey, sizeof(pc->mkey), "%shll:m:%" PRId64 ":%s", tag,
             minute_start_s / 60, pc->cell);
    snprintf(pc->hkey, sizeof(pc->hkey), "%shll:h:%s", tag, pc->cell);
    snprintf(pc->num[0], sizeof(pc->num[0]), "%" PRIu64, c->requests);
    snprintf(pc->num[1], sizeof(pc->num[1]), "%" PRIu64, c->admitted);
    snprintf(pc->num[2], sizeof(pc->num[2]), "%" PRIu64, c->refused);
    snprintf(pc->num[3], sizeof(pc->num[3]), "%" PRIu32, c->peak_ppm);
    pc->blob_len =
        rl2_hll_redis_sparse(c->sketch, pc->blob, RL2_USAGE_SPARSE_MAX);
    if (pc->blob_len == 0) {
        rl2_hll_redis_dense(c->sketch, pc->blob);
        pc->blob_len = RL2_HLL_REDIS_DENSE;
    }
}

static void
rl2_usage_push_arg(rl2_usage_push_cmd_t *cmd, const void *s, size_t len)
{
    cmd->argv[cmd->argc] = s;
    cmd->argvlen[cmd->argc] = len;
    cmd->argc++;
}

static void
rl2_usage_push_cmd_free(rl2_usage_push_cmd_t *cmd)
{
    free(cmd->argv);
    free(cmd->argvlen);
    free(cmd->cells);
}

/* EVAL script numkeys KEYS... ARGV... for the minute; its buffers are
 * freed by rl2_usage_push_cmd_free(), also on failure. */
static rl2_status_t
rl2_usage_push_build(rl2_usage_push_cmd_t *cmd, int64_t minute_start_s,
                     const rl2_usage_minute_cell_t *cells, size_t n,
                     rl2_err_t *err)
{
    size_t max_args = 3 + (3 + 2 * n) + (2 + 6 * n);
    char   tag[RL2_USAGE_REDIS_TAG_MAX];

    memset(cmd, 0, sizeof(*cmd));
    cmd->argv = malloc(max_args * sizeof(*cmd->argv));
    cmd->argvlen = malloc(max_args * sizeof(*cmd->argvlen));
    cmd->cells = malloc(n * sizeof(*cmd->cells));
    if (cmd->argv == NULL || cmd->argvlen == NULL || cmd->cells == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage push: out of memory");
    }
    rl2_usage_key_hour_tag(tag, sizeof(tag), minute_start_s);
    snprintf(cmd->mhash, sizeof(cmd->mhash), "%sm:%" PRId64, tag,
             minute_start_s / 60);
    snprintf(cmd->hhash, sizeof(cmd->hhash), "%sh", tag);
    snprintf(cmd->tmp, sizeof(cmd->tmp), "%stmp", tag);
    snprintf(cmd->nkeys, sizeof(cmd->nkeys), "%zu", 3 + 2 * n);
    snprintf(cmd->mttl, sizeof(cmd->mttl), "%d", RL2_USAGE_REDIS_MINUTE_TTL_S);
    snprintf(cmd->httl, sizeof(cmd->httl), "%d", RL2_USAGE_REDIS_HOUR_TTL_S);
    rl2_usage_push_arg(cmd, "EVAL", 4);
    rl2_usage_push_arg(cmd, rl2_usage_push_lua, sizeof(rl2_usage_push_lua) - 1);
    rl2_usage_push_arg(cmd, cmd->nkeys, strlen(cmd->nkeys));
    rl2_usage_push_arg(cmd, cmd->mhash, strlen(cmd->mhash));
    rl2_usage_push_arg(cmd, cmd->hhash, strlen(cmd->hhash));
    rl2_usage_push_arg(cmd, cmd->tmp, strlen(cmd->tmp));
    for (size_t i = 0; i < n; i++) {
        rl2_usage_push_fill(&cmd->cells[i], tag, minute_start_s, &cells[i]);
        rl2_usage_push_arg(cmd, cmd->cells[i].mkey, strlen(cmd->cells[i].mkey));
        rl2_usage_push_arg(cmd, cmd->cells[i].hkey, strlen(cmd->cells[i].hkey));
    }
    rl2_usage_push_arg(cmd, cmd->mttl, strlen(cmd->mttl));
    rl2_usage_push_arg(cmd, cmd->httl, strlen(cmd->httl));
    for (size_t i = 0; i < n; i++) {
        rl2_usage_push_cell_t *pc = &cmd->cells[i];

        rl2_usage_push_arg(cmd, pc->cell, strlen(pc->cell));
        for (unsigned k = 0; k < 4; k++) {
            rl2_usage_push_arg(cmd, pc->num[k], strlen(pc->num[k]));
        }
        rl2_usage_push_arg(cmd, pc->blob, pc->blob_len);
    }
    return RL2_OK;
}

/* A reply that is not the script's count, as an error naming the key. */
static rl2_status_t
rl2_usage_push_reply(const rl2_usage_push_cmd_t *cmd, const redisReply *reply,
                     rl2_err_t *err)
{
    if (reply->type == REDIS_REPLY_INTEGER) {
        return RL2_OK;
    }
    return rl2_err_set(err, RL2_ERR_STORE, "redis usage %s: %.200s", cmd->mhash,
                       reply->type == REDIS_REPLY_ERROR ? reply->str
                                                        : "unexpected reply");
}

/* The commands one after the other, on a Cluster's router (the master
 * of the hour's slot) or a pooled pipe; the first failure ends it. */
static rl2_status_t
rl2_usage_push_each(rl2_usage_push_t *p, rl2_redis_conn_t *conn,
                    const rl2_usage_push_cmd_t *cmds, size_t n, rl2_err_t *err)
{
    rl2_status_t st = RL2_OK;

    for (size_t i = 0; i < n && st == RL2_OK; i++) {
        const rl2_usage_push_cmd_t *cmd = &cmds[i];
        redisReply                 *reply = NULL;

        if (p->cluster != NULL) {
            unsigned slot = rl2_redis_key_slot(cmd->mhash, strlen(cmd->mhash));

            st = rl2_redis_cluster_command(p->cluster, slot, cmd->argc,
                                           cmd->argv, cmd->argvlen,
                                           "usage EVAL", &reply, NULL, err);
        }
        else {
            st = rl2_redis_command(conn, cmd->argc, cmd->argv, cmd->argvlen,
                                   "usage EVAL", &reply, err);
        }
        if (st == RL2_OK) {
            st = rl2_usage_push_reply(cmd, reply, err);
        }
        rl2_redis_reply_free(reply);
    }
    return st;
}

/* The commands written at once on this thread's own connection, then
 * their replies read: one round trip. */
static rl2_status_t
rl2_usage_push_batch(rl2_redis_conn_t *conn, const rl2_usage_push_cmd_t *cmds,
                     size_t n, rl2_err_t *err)
{
    redisReply  *replies[RL2_USAGE_PUSH_CMDS_MAX] = { NULL };
    size_t       cap = 0, len = 0, got;
    char        *buf, why[128];
    rl2_status_t st = RL2_OK;

    for (size_t i = 0; i < n; i++) {
        for (int a = 0; a < cmds[i].argc; a++) {
            cap += cmds[i].argvlen[a] + 32; /* "$len\r\n" "\r\n" */
        }
        cap += 32; /* "*argc\r\n" */
    }
    if (n == 0) {
        return RL2_OK;
    }
    if ((buf = malloc(cap)) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage push: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        size_t w = rl2_resp_format(buf + len, cap - len, cmds[i].argc,
                                   cmds[i].argv, cmds[i].argvlen);

        if (w == 0) { /* cannot be: cap counts every byte */
            free(buf);
            return rl2_err_set(err, RL2_ERR_STORE, "usage push: RESP");
        }
        len += w;
    }
    got = rl2_redis_conn_batch(conn, buf, len, n, replies, INT_MAX, why,
                               sizeof(why));
    free(buf);
    if (got < n) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: usage EVAL: %s",
                         rl2_redis_conn_name(conn), why);
    }
    for (size_t i = 0; i < got; i++) {
        if (st == RL2_OK) {
            st = rl2_usage_push_reply(&cmds[i], replies[i], err);
        }
        rl2_redis_reply_free(replies[i]);
    }
    return st;
}

/* The commands to Redis: pipelined on the thread's connection when it
 * has one of its own, else one by one. */
static rl2_status_t
rl2_usage_push_call(rl2_usage_push_t *p, const rl2_usage_push_cmd_t *cmds,
                    size_t n, rl2_err_t *err)
{
    rl2_redis_conn_t *conn = NULL;
    rl2_status_t      st;

    if (p->cluster != NULL) {
        return rl2_usage_push_each(p, NULL, cmds, n, err);
    }
    if (!rl2_redis_pool_cached(p->pool, &conn)
        && (st = rl2_redis_pool_get(p->pool, &conn, err)) != RL2_OK) {
        return st;
    }
    if (rl2_redis_conn_piped(conn)) {
        return rl2_usage_push_each(p, conn, cmds, n, err);
    }
    return rl2_usage_push_batch(conn, cmds, n, err);
}

rl2_status_t
rl2_usage_push_send(rl2_usage_push_t *p, int64_t minute_start_s,
                    const rl2_usage_minute_cell_t *cells, size_t n,
                    rl2_err_t *err)
{
    size_t n_cmds = (n + RL2_USAGE_PUSH_CELLS - 1) / RL2_USAGE_PUSH_CELLS;
    rl2_usage_push_cmd_t *cmds;
    rl2_status_t          st = RL2_OK;

    if (n == 0) {
        return RL2_OK;
    }
    if (n_cmds > RL2_USAGE_PUSH_CMDS_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID, "usage push: %zu cells", n);
    }
    if ((cmds = calloc(n_cmds, sizeof(*cmds))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "usage push: out of memory");
    }
    for (size_t i = 0; i < n_cmds && st == RL2_OK; i++) {
        size_t at = i * RL2_USAGE_PUSH_CELLS;
        size_t k =
            n - at < RL2_USAGE_PUSH_CELLS ? n - at : RL2_USAGE_PUSH_CELLS;

        st = rl2_usage_push_build(&cmds[i], minute_start_s, cells + at, k, err);
    }
    if (st == RL2_OK) {
        st = rl2_usage_push_call(p, cmds, n_cmds, err);
    }
    for (size_t i = 0; i < n_cmds; i++) {
        rl2_usage_push_cmd_free(&cmds[i]);
    }
    free(cmds);
    return st;
}

rl2_usage_minute_result_t
rl2_usage_push_minute(void *ctx, int64_t minute_start_s,
                      const rl2_usage_minute_cell_t *cells, size_t n)
{
    rl2_usage_push_t *p = ctx;
    rl2_err_t         err;

    if (p->circuit != NULL
        && rl2_circuit_state(p->circuit) != RL2_CIRCUIT_CLOSED) {
        atomic_fetch_add_explicit(&p->skipped, 1, memory_order_relaxed);
        return RL2_USAGE_MINUTE_SKIPPED;
    }
    if (rl2_usage_push_send(p, minute_start_s, cells, n, &err) != RL2_OK) {
        atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
        return RL2_USAGE_MINUTE_FAILED;
    }
    atomic_fetch_add_explicit(&p->minutes, 1, memory_order_relaxed);
    return RL2_USAGE_MINUTE_PUSHED;
}

void
rl2_usage_push_stats(const rl2_usage_push_t *p, rl2_usage_push_stats_t *out)
{
    rl2_usage_push_t *q = (rl2_usage_push_t *)p;

    out->minutes = atomic_load_explicit(&q->minutes, memory_order_relaxed);
    out->failed = atomic_load_explicit(&q->failed, memory_order_relaxed);
    out->skipped = atomic_load_explicit(&q->skipped, memory_order_relaxed);
}
