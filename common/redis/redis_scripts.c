/*
 * redis_scripts.c -- calling the Lua of the Redis store: keys, arguments,
 * FCALL with FUNCTION LOAD, EVALSHA with the EVAL fallback, and the replies
 * (calling convention in redis_scripts.h, the Lua in redis_lua.c).
 *
 * FCALL first: a function library runs its definitions once, at load,
 * where EVAL runs the whole script on every call (a sixth of the Redis CPU
 * of a request).  A server without the library (first use, a restart
 * without persistence, FUNCTION FLUSH) answers "Function not found"; the
 * library is then loaded through the same target and the call sent once
 * more.  In a Cluster both go through the router to the node of the
 * call's slot, so each node gets the library when it first needs it.
 * "Already exists" to FUNCTION LOAD means another process won the race.
 * A call that misses the library even after the load (-ASK took it to a
 * node importing the slot; the load went by the map) runs as a script.
 *
 * A server older than 7.0 (unknown command) or an ACL without FCALL or
 * FUNCTION LOAD (NOPERM) switches the whole process to scripts for good,
 * and the call is completed as one; a load that failed otherwise (a full
 * memory) sends only this call as a script.  A script's SHA1 depends only on
 * its text, so it is learned once per process (SCRIPT LOAD on first use) and is
 * valid on every server.  A server that has lost its script cache answers
 * NOSCRIPT; the call is then sent again as EVAL, which also puts the
 * script back into that server's cache (per node in a Cluster).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "algo/algo_internal.h"
#include "base/buf.h"
#include "redis_scripts.h"
#include "redis/redis_internal.h"

/* The bound of redis_scripts.h: 2^50. */

/* "FCALL" function (or "EVALSHA" sha) numkeys, the keys, ARGV[1], then
 * one argument per layer. */
#define RL2_ARGC_MAX (3 + 2 * RL2_MAX_LAYERS + 1 + RL2_MAX_LAYERS)
#define RL2_NUM_MAX  24
/* A layer's RL2_SCRIPT_FIELDS numbers, each at most 20 characters, with a
 * space after each but the last. */
#define RL2_LAYER_TEXT_MAX (RL2_SCRIPT_FIELDS * 21)

static const char *const rl2_script_names[RL2_SCRIPT_COUNT] = { "apply", "peek",
                                                                "refund",
                                                                "lease" };

static pthread_mutex_t rl2_sha_lock = PTHREAD_MUTEX_INITIALIZER;
static char            rl2_sha[RL2_SCRIPT_COUNT][41];
static atomic_int      rl2_sha_known[RL2_SCRIPT_COUNT];
/* Set once functions were refused: from then on, scripts only.  Only a
 * flag, published by nothing else: relaxed is enough. */
static atomic_int rl2_functions_off;

/* One call's arguments, built on the stack (about 6 KiB). */
typedef struct {
    int         argc;
    const char *argv[RL2_ARGC_MAX];
    size_t      len[RL2_ARGC_MAX];
    int         nkeys;
    char        keys[2 * RL2_MAX_LAYERS][RL2_REDIS_KEY_MAX];
    char        numkeys[RL2_NUM_MAX];
    char        now[RL2_NUM_MAX];
    char        layer[RL2_MAX_LAYERS][RL2_LAYER_TEXT_MAX];
    char        what[RL2_REDIS_KEY_MAX + 48]; /* for messages */
} rl2_call_t;

const char *
rl2_script_name(rl2_script_t which)
{
    return (unsigned)which < RL2_SCRIPT_COUNT ? rl2_script_names[which]
                                              : "unknown";
}

/* "rl2:{32 hex digits}:s": written by hand, for every layer of every
 * call. */
void
rl2_redis_key(rl2_digest_t digest, char suffix, char out[RL2_REDIS_KEY_MAX])
{
    static const char hex[] = "0123456789abcdef";
    char             *w = out;

    memcpy(w, "rl2:{", 5);
    w += 5;
    for (int i = 60; i >= 0; i -= 4) {
        *w++ = hex[(digest.hi >> i) & 0xf];
    }
    for (int i = 60; i >= 0; i -= 4) {
        *w++ = hex[(digest.lo >> i) & 0xf];
    }
    *w++ = '}';
    *w++ = ':';
    *w++ = suffix;
    *w = '\0';
}

rl2_status_t
rl2_redis_layers_check(const rl2_layer_t *layers, const size_t *idx, size_t n,
                       rl2_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const rl2_limit_t *limit = layers[idx[i]].limit;

        if (!rl2_algo_params_exact(&limit->algo) || limit->cost < 1
            || limit->cost >= RL2_ALGO_EXACT
            || (limit->overflow.limit != 0
                && !rl2_algo_params_exact(&limit->overflow))) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "limit \"%s\": its "
                               "window, limit, burst or cost is beyond what "
                               "the Redis scripts compute exactly (2^50)",
                               limit->name);
        }
    }
    return RL2_OK;
}

/* ---- building a call ---- */

static void
rl2_call_arg(rl2_call_t *c, const char *s, size_t len)
{
    c->argv[c->argc] = s;
    c->len[c->argc] = len;
    c->argc++;
}

static void
rl2_call_key(rl2_call_t *c, rl2_digest_t digest, char suffix)
{
    char *buf = c->keys[c->nkeys++];

    rl2_redis_key(digest, suffix, buf);
    rl2_call_arg(c, buf, RL2_REDIS_KEY_MAX - 1);
}

/* "v " at *w: one number of a layer's argument. */
static char *
rl2_layer_num(char *w, int64_t v)
{
    w += rl2_i64_text(w, v);
    *w++ = ' ';
    return w;
}

/* The limit's algorithm, limit, window_us, burst, period and cost, as a
 * layer's and an ask's arguments both begin. */
static char *
rl2_limit_text(char *w, const rl2_limit_t *limit)
{
    const rl2_algo_params_t *p = &limit->algo;

    w = rl2_layer_num(w, p->algo);
    w = rl2_layer_num(w, p->limit);
    w = rl2_layer_num(w, p->window_us);
    w = rl2_layer_num(w, p->burst);
    w = rl2_layer_num(w, p->period);
    return rl2_layer_num(w, limit->cost);
}

/* One argument per layer, its numbers separated by single spaces: Redis
 * pays about a microsecond for each argument of a call (an object, a
 * string in Lua's table, a tonumber), and a function library remembers
 * what the text of an apply or peek means, the same on every request
 * for a limit, and parses it once. */
static void
rl2_call_layer(rl2_call_t *c, rl2_script_t which, const rl2_layer_t *l,
               char *buf)
{
    const rl2_limit_t       *limit = l->limit;
    const rl2_algo_params_t *o = &limit->overflow;
    int                      flags = (l->dry_run || limit->unlimited)
                | (which == RL2_SCRIPT_REFUND && l->overflow_used) << 1;
    char *w = buf;

    w = rl2_layer_num(w, flags);
    w = rl2_limit_text(w, limit);
    w = rl2_layer_num(w, o->limit);
    w = rl2_layer_num(w, o->limit != 0 ? o->window_us : 0);
    w = rl2_layer_num(w, o->limit != 0 ? o->burst : 0);
    w = rl2_layer_num(w, which == RL2_SCRIPT_REFUND ? l->committed_us : 0);
    rl2_call_arg(c, buf, (size_t)(w - 1 - buf));
}

/* "apply on KEY (+N more layers)", for messages: built on every call, so
 * without snprintf (the key always fits: what has room for it). */
static void
rl2_call_what(rl2_call_t *c, rl2_script_t which, size_t n)
{
    rl2_buf_t b;

    rl2_buf_init(&b, c->what, sizeof(c->what));
    rl2_buf_str(&b, rl2_script_name(which));
    rl2_buf_mem(&b, " on ", 4);
    if (n == 0) {
        rl2_buf_mem(&b, "no key", 6);
        return;
    }
    rl2_buf_mem(&b, c->argv[3], c->len[3]);
    if (n > 1) {
        rl2_buf_mem(&b, " (+", 3);
        rl2_buf_i64(&b, (int64_t)(n - 1));
        rl2_buf_mem(&b, " more layers)", 13);
    }
}

/* argv[0] and argv[1] (FCALL and the function, or EVALSHA and the SHA1,
 * or EVAL and the source) are set when the call is sent. */
static void
rl2_call_build(rl2_call_t *c, rl2_script_t which, const rl2_layer_t *layers,
               const size_t *idx, size_t n, const int64_t *now_us)
{
    c->argc = 0;
    c->nkeys = 0;
    rl2_call_arg(c, "", 0);
    rl2_call_arg(c, "", 0);
    rl2_call_arg(c, c->numkeys, 0);
    for (size_t i = 0; i < n; i++) {
        const rl2_layer_t *l = &layers[idx[i]];

        rl2_call_key(c, l->key, 's');
        if (l->limit->overflow.limit != 0) {
            rl2_call_key(c, l->key, 'o');
        }
    }
    c->len[2] = rl2_i64_text(c->numkeys, c->nkeys);
    if (now_us != NULL) {
        rl2_call_arg(c, c->now, rl2_i64_text(c->now, *now_us));
    }
    else {
        rl2_call_arg(c, "", 0);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_call_layer(c, which, &layers[idx[i]], c->layer[i]);
    }
    rl2_call_what(c, which, n);
}

/* ---- sending it ---- */

static rl2_status_t
rl2_target_command(rl2_redis_target_t *to, int argc, const char **argv,
                   const size_t *len, const char *what, redisReply **reply,
                   rl2_err_t *err)
{
    if (to->conn != NULL) {
        to->name = rl2_redis_conn_name(to->conn);
        return rl2_redis_command(to->conn, argc, argv, len, what, reply, err);
    }
    to->name = rl2_redis_cluster_name(to->cluster);
    return rl2_redis_cluster_command(to->cluster, to->slot, argc, argv, len,
                                     what, reply, &to->name, err);
}

static rl2_status_t
rl2_script_sha(rl2_redis_target_t *to, rl2_script_t which, rl2_err_t *err)
{
    const char  *src = rl2_lua_source[which];
    const char  *argv[3] = { "SCRIPT", "LOAD", src };
    size_t       len[3] = { 6, 4, strlen(src) };
    redisReply  *r;
    rl2_status_t st;

    if (atomic_load_explicit(&rl2_sha_known[which], memory_order_acquire)) {
        return RL2_OK;
    }
    st = rl2_target_command(to, 3, argv, len, "SCRIPT LOAD", &r, err);
    if (st != RL2_OK) {
        return st;
    }
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        st = rl2_err_set(err, RL2_ERR_STORE,
                         "redis %s: SCRIPT LOAD %s: "
                         "%.120s",
                         to->name, rl2_script_name(which),
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
    }
    else {
        /* Written once: threads that raced to load it must not rewrite
         * what a reader may already be using. */
        pthread_mutex_lock(&rl2_sha_lock);
        if (!atomic_load_explicit(&rl2_sha_known[which],
                                  memory_order_relaxed)) {
            memcpy(rl2_sha[which], r->str, 40);
            rl2_sha[which][40] = '\0';
            atomic_store_explicit(&rl2_sha_known[which], 1,
                                  memory_order_release);
        }
        pthread_mutex_unlock(&rl2_sha_lock);
    }
    freeReplyObject(r);
    return st;
}

static int
rl2_is_error(const redisReply *r, const char *prefix)
{
    return r->type == REDIS_REPLY_ERROR
           && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static rl2_status_t
rl2_call_script(rl2_redis_target_t *to, rl2_script_t which, rl2_call_t *c,
                redisReply **reply, rl2_err_t *err)
{
    rl2_status_t st = rl2_script_sha(to, which, err);

    if (st != RL2_OK) {
        return st;
    }
    c->argv[0] = "EVALSHA";
    c->len[0] = 7;
    c->argv[1] = rl2_sha[which];
    c->len[1] = 40;
    st = rl2_target_command(to, c->argc, c->argv, c->len, c->what, reply, err);
    if (st != RL2_OK || !rl2_is_error(*reply, "NOSCRIPT")) {
        return st;
    }
    freeReplyObject(*reply);
    c->argv[0] = "EVAL";
    c->len[0] = 4;
    c->argv[1] = rl2_lua_source[which];
    c->len[1] = strlen(rl2_lua_source[which]);
    return rl2_target_command(to, c->argc, c->argv, c->len, c->what, reply,
                              err);
}

/* Whether this error reply means that this process may not use functions
 * on this server: a server before 7.0, or an ACL without +fcall or
 * +function|load. */
static int
rl2_functions_refused(const redisReply *r)
{
    return rl2_is_error(r, "ERR unknown command")
           || rl2_is_error(r, "ERR unknown subcommand")
           || rl2_is_error(r, "NOPERM");
}

/* FUNCTION LOAD at `to`.  *loaded: 1 when the library is there now (a
 * name, or "already exists": another process loaded it first); 0 when
 * the server refuses functions to us for good (rl2_functions_refused);
 * -1 when it failed this time (a full memory, a busy script): this call
 * goes as a script and the next one tries again. */
static rl2_status_t
rl2_library_load(rl2_redis_target_t *to, int *loaded, rl2_err_t *err)
{
    const char  *argv[3] = { "FUNCTION", "LOAD", NULL };
    size_t       len[3] = { 8, 4, 0 };
    redisReply  *r;
    rl2_status_t st;

    argv[2] = rl2_lua_library(&len[2]);
    st = rl2_target_command(to, 3, argv, len, "FUNCTION LOAD", &r, err);
    if (st != RL2_OK) {
        return st;
    }
    if (r->type != REDIS_REPLY_ERROR
        || strstr(r->str, "already exists") != NULL) {
        *loaded = 1;
    }
    else {
        *loaded = rl2_functions_refused(r) ? 0 : -1;
    }
    freeReplyObject(r);
    return RL2_OK;
}

/* *reply freed when it is "Function not found" (returns 1). */
static int
rl2_drop_not_found(redisReply **reply)
{
    if (!rl2_is_error(*reply, "ERR Function not found")) {
        return 0;
    }
    freeReplyObject(*reply);
    *reply = NULL;
    return 1;
}

/* FCALL, and after "Function not found" FUNCTION LOAD and FCALL once
 * more.  RL2_OK with *reply NULL when the caller must complete the call
 * as a script: functions are refused (then for the whole process), or
 * the library was loaded and the call still misses it (-ASK took it to a
 * node importing the slot, while the load, which has no key, went by the
 * map to the slot's old master).  Any other error reply (the script's
 * own, a full memory) is the call's answer. */
static rl2_status_t
rl2_call_function(rl2_redis_target_t *to, rl2_script_t which, rl2_call_t *c,
                  redisReply **reply, rl2_err_t *err)
{
    rl2_status_t st;
    int          loaded = 0;

    c->argv[0] = "FCALL";
    c->len[0] = 5;
    c->argv[1] = rl2_lua_function(which);
    c->len[1] = strlen(c->argv[1]);
    st = rl2_target_command(to, c->argc, c->argv, c->len, c->what, reply, err);
    if (st != RL2_OK || (*reply)->type != REDIS_REPLY_ERROR) {
        return st;
    }
    if (rl2_functions_refused(*reply)) {
        freeReplyObject(*reply);
        *reply = NULL;
        atomic_store_explicit(&rl2_functions_off, 1, memory_order_relaxed);
        return RL2_OK;
    }
    if (!rl2_drop_not_found(reply)) {
        return RL2_OK;
    }
    if ((st = rl2_library_load(to, &loaded, err)) != RL2_OK) {
        return st;
    }
    if (loaded <= 0) {
        if (loaded == 0) {
            atomic_store_explicit(&rl2_functions_off, 1, memory_order_relaxed);
        }
        return RL2_OK;
    }
    st = rl2_target_command(to, c->argc, c->argv, c->len, c->what, reply, err);
    if (st == RL2_OK) {
        rl2_drop_not_found(reply);
    }
    return st;
}

void
rl2_redis_functions_reset(void)
{
    atomic_store_explicit(&rl2_functions_off, 0, memory_order_relaxed);
}

static rl2_status_t
rl2_call_send(rl2_redis_target_t *to, rl2_script_t which, rl2_call_t *c,
              redisReply **reply, rl2_err_t *err)
{
    rl2_status_t st;

    *reply = NULL;
    if (!atomic_load_explicit(&rl2_functions_off, memory_order_relaxed)) {
        st = rl2_call_function(to, which, c, reply, err);
        if (st != RL2_OK || *reply != NULL) {
            return st;
        }
    }
    return rl2_call_script(to, which, c, reply, err);
}

/* ---- the answer ---- */

/* One decimal integer of a script's answer at *p (before end): at most
 * 19 digits, so that v cannot wrap, and no digit after them.  One test
 * per digit ((unsigned)(c - '0') < 10), for the forty-odd characters of
 * every answer. */
static int
rl2_answer_int(const char **p, const char *end, int64_t *out)
{
    const char *s = *p, *first, *stop;
    int         neg = s < end && *s == '-';
    uint64_t    v = 0;
    unsigned    d;

    s += neg;
    first = s;
    stop = end - s > 19 ? s + 19 : end;
    while (s < stop && (d = (unsigned)((unsigned char)*s - '0')) < 10) {
        v = v * 10 + d;
        s++;
    }
    if (s == first || v > INT64_MAX
        || (s < end && (unsigned)((unsigned char)*s - '0') < 10)) {
        return 0;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    *p = s;
    return 1;
}

/* apply and peek answer one string of n integers separated by single
 * spaces: hiredis then builds one reply object instead of an array of
 * 1 + 8 per layer, each allocated and freed (a third of the Redis store's
 * own cost per request). */
int
rl2_redis_answer_parse(const struct redisReply *r, int64_t *vals, size_t n)
{
    const char *p, *end;

    if (r->type != REDIS_REPLY_STRING) {
        return 0;
    }
    p = r->str;
    end = r->str + r->len;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (p == end || *p++ != ' ')) {
            return 0;
        }
        if (!rl2_answer_int(&p, end, &vals[i])) {
            return 0;
        }
    }
    return p == end;
}

/* peek, like the local store's, leaves what was committed alone. */
static void
rl2_layer_fill(rl2_layer_t *l, rl2_script_t which, const int64_t *e,
               int64_t now)
{
    l->result.allowed = e[0] != 0;
    l->result.limit = e[1];
    l->result.remaining = e[2];
    l->result.reset_us = e[3];
    l->result.retry_after_us = e[4];
    l->refused = e[5] != 0;
    l->overflow_used = e[6] != 0;
    if (which == RL2_SCRIPT_APPLY) {
        l->committed = e[7] != 0;
        l->committed_us = l->committed ? now : 0;
    }
}

static rl2_status_t
rl2_reply_take(const rl2_redis_target_t *to, rl2_script_t which,
               const rl2_call_t *c, const redisReply *r, rl2_layer_t *layers,
               const size_t *idx, size_t n, rl2_err_t *err)
{
    int64_t vals[1 + 8 * RL2_MAX_LAYERS];

    if (r->type == REDIS_REPLY_ERROR) {
        return rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: %.120s", to->name,
                           c->what, r->str);
    }
    if (which == RL2_SCRIPT_REFUND) {
        if (r->type != REDIS_REPLY_INTEGER || r->integer != (long long)n) {
            return rl2_err_set(err, RL2_ERR_STORE,
                               "redis %s: %s: "
                               "unexpected reply",
                               to->name, c->what);
        }
        return RL2_OK;
    }
    if (!rl2_redis_answer_parse(r, vals, 1 + 8 * n)) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s: %s: unexpected "
                           "reply",
                           to->name, c->what);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_layer_fill(&layers[idx[i]], which, vals + 1 + 8 * i, vals[0]);
    }
    return RL2_OK;
}

rl2_status_t
rl2_redis_script_run(rl2_redis_target_t *to, rl2_script_t which,
                     rl2_layer_t *layers, const size_t *idx, size_t n,
                     const int64_t *now_us, rl2_err_t *err)
{
    rl2_call_t   c;
    redisReply  *r = NULL;
    rl2_status_t st;

    if ((unsigned)which >= RL2_SCRIPT_COUNT || n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "redis: script %d with %zu "
                           "layers",
                           (int)which, n);
    }
    if ((st = rl2_redis_layers_check(layers, idx, n, err)) != RL2_OK) {
        return st;
    }
    rl2_call_build(&c, which, layers, idx, n, now_us);
    if ((st = rl2_call_send(to, which, &c, &r, err)) != RL2_OK) {
        return st;
    }
    st = rl2_reply_take(to, which, &c, r, layers, idx, n, err);
    freeReplyObject(r);
    return st;
}

/* ---- leases ---- */

/* An ask is one argument of 9 numbers, as a layer is (redis_scripts.h). */
static void
rl2_call_lease(rl2_call_t *c, const rl2_lease_ask_t *a, char *buf)
{
    char *w = rl2_limit_text(buf, a->layer->limit);

    w = rl2_layer_num(w, a->want);
    w = rl2_layer_num(w, a->back);
    w = rl2_layer_num(w, a->back_at_us);
    rl2_call_arg(c, buf, (size_t)(w - 1 - buf));
}

static void
rl2_lease_fill(rl2_lease_ask_t *a, const int64_t *e, int64_t now)
{
    a->granted = e[0];
    a->result.allowed = e[0] > 0;
    a->result.limit = e[1];
    a->result.remaining = e[2];
    a->result.reset_us = e[3];
    a->result.retry_after_us = e[4];
    a->horizon_us = e[5];
    a->granted_at_us = now;
}

rl2_status_t
rl2_redis_lease_run(rl2_redis_target_t *to, rl2_lease_ask_t *asks, size_t n,
                    const int64_t *now_us, rl2_err_t *err)
{
    rl2_call_t   c;
    redisReply  *r = NULL;
    rl2_status_t st;
    int64_t      vals[1 + RL2_LEASE_FIELDS * RL2_MAX_LAYERS];
    size_t       idx[RL2_MAX_LAYERS];

    if (n == 0 || n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "redis: lease of %zu layers",
                           n);
    }
    c.argc = 0;
    c.nkeys = 0;
    rl2_call_arg(&c, "", 0);
    rl2_call_arg(&c, "", 0);
    rl2_call_arg(&c, c.numkeys, rl2_i64_text(c.numkeys, (int64_t)n));
    for (size_t i = 0; i < n; i++) {
        idx[i] = i;
        rl2_call_key(&c, asks[i].layer->key, 's');
    }
    if (now_us != NULL) {
        rl2_call_arg(&c, c.now, rl2_i64_text(c.now, *now_us));
    }
    else {
        rl2_call_arg(&c, "", 0);
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = rl2_redis_layers_check(asks[i].layer, idx, 1, err))
            != RL2_OK) {
            return st;
        }
        rl2_call_lease(&c, &asks[i], c.layer[i]);
    }
    rl2_call_what(&c, RL2_SCRIPT_LEASE, n);
    if ((st = rl2_call_send(to, RL2_SCRIPT_LEASE, &c, &r, err)) != RL2_OK) {
        return st;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: %.120s", to->name,
                         c.what, r->str);
    }
    else if (!rl2_redis_answer_parse(r, vals, 1 + RL2_LEASE_FIELDS * n)) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: unexpected reply",
                         to->name, c.what);
    }
    else {
        for (size_t i = 0; i < n; i++) {
            rl2_lease_fill(&asks[i], vals + 1 + RL2_LEASE_FIELDS * i, vals[0]);
        }
    }
    freeReplyObject(r);
    return st;
}
