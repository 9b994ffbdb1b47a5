/*
 * redis_conn.c -- connections to one Redis server and the per-thread cache
 * of them (redis.h).
 *
 * Owns the hiredis contexts: connect with a timeout, the command timeout
 * (SO_RCVTIMEO/SO_SNDTIMEO through redisSetTimeout), AUTH and SELECT, the
 * health flag, and the pool whose pthread key gives every thread its own
 * connection, or (conf.pipeline) whose handle sends every thread's
 * commands through one pipe (redis_pipe.c); and the pipe leader's I/O,
 * a batch written at once and its replies read in order.  A context is
 * dead after its first I/O error: it is marked broken and replaced,
 * never reused.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/redis.h"
#include "redis_internal.h"
#include "redis_resp.h"
#include "redis/redis_internal.h"

struct rl2_redis_conn {
    redisContext          *ctx;    /* NULL for a pool's pipeline handle */
    rl2_redis_pipe_t      *pipe;   /* the handle's pipeline, else NULL */
    unsigned               forks;  /* rl2_forks when it was opened */
    pid_t                  pid;    /* process that opened it */
    int                    broken; /* an I/O error or timeout killed it */
    int                    timeout_ms;
    char                   name[RL2_REDIS_NAME_MAX];
    rl2_redis_pool_t      *pool; /* NULL when opened on its own */
    struct rl2_redis_conn *next; /* the pool's list */
    struct rl2_redis_conn *prev;
};

struct rl2_redis_pool {
    rl2_redis_conf_t conf;
    char             name[RL2_REDIS_NAME_MAX];
    pthread_key_t    key; /* this thread's rl2_redis_conn_t */
    /* Every connection handed out, so that destroy closes those of threads
     * still running; held only to link and unlink. */
    pthread_mutex_t   lock;
    rl2_redis_conn_t *conns;
    /* conf.pipeline: one connection for every thread (redis_pipe.c),
     * reached through one handle that all threads share */
    rl2_redis_pipe_t *pipe;
    rl2_redis_conn_t *handle;
};

/* ---- configuration ---- */

void
rl2_redis_conf_init(rl2_redis_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    snprintf(conf->host, sizeof(conf->host), "127.0.0.1");
    conf->port = 6379;
    conf->connect_timeout_ms = 200;
    conf->command_timeout_ms = 100;
    conf->lease_time_ms = 1000;
    conf->lease_max = 100;
    conf->pipeline = 1;
}

static int
rl2_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

rl2_status_t
rl2_redis_conf_check(const rl2_redis_conf_t *conf, rl2_err_t *err)
{
    if (!rl2_terminated(conf->host, sizeof(conf->host))
        || !rl2_terminated(conf->unix_path, sizeof(conf->unix_path))
        || !rl2_terminated(conf->username, sizeof(conf->username))
        || !rl2_terminated(conf->password, sizeof(conf->password))) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: a host, socket, "
                           "user or password is not terminated");
    }
    if (conf->unix_path[0] == '\0'
        && (conf->host[0] == '\0' || conf->port < 1 || conf->port > 65535)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: a host and a port "
                           "between 1 and 65535, or a unix socket, are "
                           "needed (port %d)",
                           conf->port);
    }
    if (conf->db < 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: database %d is "
                           "negative",
                           conf->db);
    }
    if (conf->connect_timeout_ms < 1 || conf->command_timeout_ms < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: timeouts must be at "
                           "least 1 ms (connect %d, command %d)",
                           conf->connect_timeout_ms, conf->command_timeout_ms);
    }
    if (!rl2_terminated(conf->overrides_key, sizeof(conf->overrides_key))
        || strpbrk(conf->overrides_key, "{} \t\r\n") != NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: overrides_key must be at most %d bytes "
                           "without '{', '}' or white space (it is put in "
                           "a hash tag)",
                           RL2_REDIS_OVR_KEY_MAX - 1);
    }
    if (conf->username[0] != '\0' && conf->password[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: user \"%s\" needs a "
                           "password (AUTH takes both)",
                           conf->username);
    }
    if (rl2_redis_sentinel_check(conf, err) != RL2_OK) {
        return RL2_ERR_CONFIG;
    }
    return rl2_redis_cluster_check(conf, err);
}

static void
rl2_conf_name(const rl2_redis_conf_t *conf, char *buf, size_t size)
{
    if (conf->n_seeds > 0) {
        snprintf(buf, size, "cluster:%.*s", (int)(size - 9), conf->seeds[0]);
    }
    else if (conf->n_sentinels > 0) {
        snprintf(buf, size, "sentinel:%s", conf->master_name);
    }
    else if (conf->unix_path[0] != '\0') {
        snprintf(buf, size, "unix:%s", conf->unix_path);
    }
    else if (strchr(conf->host, ':') != NULL) {
        snprintf(buf, size, "[%.*s]:%d", (int)(size - 10), conf->host,
                 conf->port);
    }
    else {
        snprintf(buf, size, "%.*s:%d", (int)(size - 8), conf->host, conf->port);
    }
}

struct timeval
rl2_ms_timeval(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* ---- one connection ---- */

/* How many forks made this process, counted by a pthread_atfork child
 * handler: a connection opened before a fork belongs to the parent, and
 * telling so without getpid(), a system call (glibc does not cache it)
 * on every request, costs a load.  The handler is registered before the
 * first connection is opened, so no connection predates it; glibc drops
 * it when the module that registered it is unloaded.  Should the
 * registration fail (no memory), getpid() it is. */
static atomic_uint    rl2_forks;
static int            rl2_forks_unknown;
static pthread_once_t rl2_forks_once = PTHREAD_ONCE_INIT;

static void
rl2_forks_child(void)
{
    atomic_fetch_add_explicit(&rl2_forks, 1, memory_order_relaxed);
}

static void
rl2_forks_register(void)
{
    rl2_forks_unknown = pthread_atfork(NULL, NULL, rl2_forks_child) != 0;
}

static unsigned
rl2_forks_now(void)
{
    pthread_once(&rl2_forks_once, rl2_forks_register);
    return atomic_load_explicit(&rl2_forks, memory_order_relaxed);
}

/* Whether c was opened by this process, not by one it was forked from. */
static int
rl2_conn_ours(const rl2_redis_conn_t *c)
{
    if (c->forks != rl2_forks_now()) {
        return 0;
    }
    return !rl2_forks_unknown || c->pid == getpid();
}

/* Why an I/O on c failed.  A timeout surfaces as EAGAIN from read or
 * write: say so, since "Resource temporarily unavailable" tells an
 * operator nothing.  io_err: the context's error (hiredis did the I/O). */
static void
rl2_io_why(const rl2_redis_conn_t *c, int io_err, int saved_errno, char *why,
           size_t size)
{
    if (io_err && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        snprintf(why, size, "no answer within %d ms", c->timeout_ms);
    }
    else if (c->ctx->errstr[0] != '\0') {
        snprintf(why, size, "%s", c->ctx->errstr);
    }
    else {
        snprintf(why, size, "connection lost");
    }
}

static rl2_status_t
rl2_io_error(rl2_redis_conn_t *c, const char *what, int saved_errno,
             rl2_err_t *err)
{
    char why[RL2_ERR_MAX];

    c->broken = 1;
    rl2_io_why(c, c->ctx->err == REDIS_ERR_IO, saved_errno, why, sizeof(why));
    return rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: %s", c->name, what,
                       why);
}

/* Queue one command on the context's output buffer, formatted by
 * redis_resp.c when it fits its buffer (hiredis' own formatting costs
 * about ten times as much). */
static int
rl2_redis_append(redisContext *ctx, int argc, const char **argv,
                 const size_t *argvlen)
{
    char   buf[RL2_RESP_BUF];
    size_t n = rl2_resp_format(buf, sizeof(buf), argc, argv, argvlen);

    if (n == 0) {
        return redisAppendCommandArgv(ctx, argc, argv, argvlen);
    }
    return redisAppendFormattedCommand(ctx, buf, n);
}

/* One command and its reply on a blocking context (redisCommandArgv,
 * with our formatting); NULL on an I/O error. */
static redisReply *
rl2_redis_roundtrip(redisContext *ctx, int argc, const char **argv,
                    const size_t *argvlen)
{
    void *reply = NULL;

    if (rl2_redis_append(ctx, argc, argv, argvlen) != REDIS_OK
        || redisGetReply(ctx, &reply) != REDIS_OK) {
        return NULL;
    }
    return reply;
}

rl2_status_t
rl2_redis_command(rl2_redis_conn_t *c, int argc, const char **argv,
                  const size_t *argvlen, const char *what,
                  struct redisReply **reply, rl2_err_t *err)
{
    redisReply *r;

    if (c->pipe != NULL) {
        return rl2_redis_pipe_command(c->pipe, argc, argv, argvlen, what, reply,
                                      err);
    }
    *reply = NULL;
    if (c->broken) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s: %s: connection "
                           "already failed",
                           c->name, what);
    }
    errno = 0;
    r = rl2_redis_roundtrip(c->ctx, argc, argv, argvlen);
    if (r == NULL) {
        return rl2_io_error(c, what, errno, err);
    }
    /* A replica, once our master: a failover demoted it.  Replace the
     * connection; the next open asks the sentinels again. */
    if (rl2_redis_reply_readonly(r)) {
        c->broken = 1;
    }
    *reply = r;
    return RL2_OK;
}

rl2_status_t
rl2_redis_command_asking(rl2_redis_conn_t *c, int argc, const char **argv,
                         const size_t *argvlen, const char *what,
                         struct redisReply **reply, rl2_err_t *err)
{
    const char *asking[1] = { "ASKING" };
    size_t      asking_len[1] = { 6 };
    redisReply *r[2] = { NULL, NULL };

    *reply = NULL;
    if (c->pipe != NULL) {
        /* ASKING must come right before its command: a Cluster node's
         * pool never pipelines (redis_cluster.c). */
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s: %s: ASKING through a pipeline", c->name,
                           what);
    }
    if (c->broken) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s: %s: connection "
                           "already failed",
                           c->name, what);
    }
    errno = 0;
    if (rl2_redis_append(c->ctx, 1, asking, asking_len) != REDIS_OK
        || rl2_redis_append(c->ctx, argc, argv, argvlen) != REDIS_OK) {
        return rl2_io_error(c, what, errno, err);
    }
    for (int i = 0; i < 2; i++) {
        errno = 0;
        if (redisGetReply(c->ctx, (void **)&r[i]) != REDIS_OK || r[i] == NULL) {
            rl2_redis_reply_free(r[0]);
            return rl2_io_error(c, what, errno, err);
        }
    }
    if (r[0]->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r[1]);
        *reply = r[0];
        return RL2_OK;
    }
    freeReplyObject(r[0]);
    *reply = r[1];
    return RL2_OK;
}

/* This batch's command timeout: the connection's, or less for a leader
 * that has less than half of its own left (one setsockopt pair now and
 * one after).  A leader that waited its turn for less than half the
 * timeout -- every one on a server that answers in time, even on a
 * loaded machine -- costs no system call, and takes at most one and a
 * half timeouts in all. */
static int
rl2_batch_timeout(rl2_redis_conn_t *c, int left_ms)
{
    if (left_ms <= 0 || left_ms >= c->timeout_ms / 2) {
        return 0;
    }
    return redisSetTimeout(c->ctx, rl2_ms_timeval(left_ms)) == REDIS_OK;
}

/* The whole batch in one send (MSG_NOSIGNAL: a closed socket is an error,
 * not a signal); 0 or errno. */
static int
rl2_batch_send(rl2_redis_conn_t *c, const char *buf, size_t len)
{
    size_t  done = 0;
    ssize_t w;

    while (done < len) {
        w = send(c->ctx->fd, buf + done, len - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return w < 0 ? errno : EPIPE;
        }
        done += (size_t)w;
    }
    return 0;
}

size_t
rl2_redis_conn_batch(rl2_redis_conn_t *c, const char *buf, size_t len, size_t n,
                     struct redisReply **replies, int left_ms, char *why,
                     size_t size)
{
    int    shortened, e, readonly = 0;
    size_t got = 0;
    void  *r;

    if (c->broken || c->pipe != NULL) {
        snprintf(why, size, "connection already failed");
        return 0;
    }
    shortened = rl2_batch_timeout(c, left_ms);
    if ((e = rl2_batch_send(c, buf, len)) != 0) {
        c->broken = 1;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            snprintf(why, size, "no answer within %d ms", c->timeout_ms);
        }
        else {
            snprintf(why, size, "%s", strerror(e));
        }
        return 0;
    }
    for (; got < n; got++) {
        r = NULL;
        errno = 0;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || r == NULL) {
            c->broken = 1;
            rl2_io_why(c, c->ctx->err == REDIS_ERR_IO, errno, why, size);
            return got;
        }
        readonly |= rl2_redis_reply_readonly(r);
        replies[got] = r;
    }
    /* As rl2_redis_command(): a demoted master is replaced. */
    if (readonly) {
        c->broken = 1;
    }
    else if (shortened
             && redisSetTimeout(c->ctx, rl2_ms_timeval(c->timeout_ms))
                    != REDIS_OK) {
        c->broken = 1;
    }
    return got;
}

void
rl2_redis_reply_free(struct redisReply *reply)
{
    if (reply != NULL) {
        freeReplyObject(reply);
    }
}

/* AUTH and SELECT, pipelined: one round trip, one timeout at most. */
static rl2_status_t
rl2_redis_auth_select(rl2_redis_conn_t *c, const rl2_redis_conf_t *conf,
                      rl2_err_t *err)
{
    int user = conf->username[0] != '\0';
    /* AUTH pass, or AUTH user pass (Redis 6 ACL) */
    const char *auth[3] = { "AUTH", user ? conf->username : conf->password,
                            conf->password };
    size_t      auth_len[3] = { 4, strlen(auth[1]), strlen(conf->password) };
    char        db[16], what[2][RL2_REDIS_USER_MAX + 24];
    const char *sel[2] = { "SELECT", db };
    size_t      sel_len[2] = { 6, 0 };
    int         n = 0;

    if (conf->password[0] != '\0') {
        if (redisAppendCommandArgv(c->ctx, 2 + user, auth, auth_len)
            != REDIS_OK) {
            return rl2_io_error(c, "AUTH", errno, err);
        }
        snprintf(what[n++], sizeof(what[0]), "AUTH%s%s%s", user ? " as \"" : "",
                 conf->username, user ? "\"" : "");
    }
    if (conf->db != 0) {
        sel_len[1] = (size_t)snprintf(db, sizeof(db), "%d", conf->db);
        if (redisAppendCommandArgv(c->ctx, 2, sel, sel_len) != REDIS_OK) {
            return rl2_io_error(c, "SELECT", errno, err);
        }
        snprintf(what[n++], sizeof(what[0]), "SELECT %d", conf->db);
    }
    for (int i = 0; i < n; i++) {
        redisReply  *r = NULL;
        rl2_status_t st = RL2_OK;

        errno = 0;
        if (redisGetReply(c->ctx, (void **)&r) != REDIS_OK || r == NULL) {
            return rl2_io_error(c, what[i], errno, err);
        }
        if (r->type == REDIS_REPLY_ERROR) {
            c->broken = 1;
            st = rl2_err_set(err, RL2_ERR_STORE,
                             "redis %s: %s refused: "
                             "%.120s",
                             c->name, what[i], r->str);
        }
        freeReplyObject(r);
        if (st != RL2_OK) {
            return st;
        }
    }
    return RL2_OK;
}

/* With sentinels, the master they name now, in a copy of conf (*where);
 * else conf itself. */
static rl2_status_t
rl2_conn_target(const rl2_redis_conf_t *conf, rl2_redis_conf_t *master,
                const rl2_redis_conf_t **where, rl2_err_t *err)
{
    rl2_status_t st;

    *where = conf;
    if (conf->n_sentinels == 0) {
        return RL2_OK;
    }
    *master = *conf;
    master->n_sentinels = 0;
    st = rl2_redis_sentinel_master(conf, master->host, sizeof(master->host),
                                   &master->port, err);
    if (st == RL2_OK) {
        *where = master;
    }
    return st;
}

rl2_status_t
rl2_redis_conn_open(const rl2_redis_conf_t *given, rl2_redis_conn_t **out,
                    rl2_err_t *err)
{
    rl2_redis_conf_t        master;
    const rl2_redis_conf_t *conf;
    struct timeval          ctv;
    rl2_redis_conn_t       *c;
    rl2_status_t            st;

    *out = NULL;
    if ((st = rl2_redis_conf_check(given, err)) != RL2_OK) {
        return st;
    }
    if (given->n_seeds > 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: a Cluster is "
                           "reached through rl2_redis_cluster_command(), "
                           "not one connection");
    }
    if ((st = rl2_conn_target(given, &master, &conf, err)) != RL2_OK) {
        return st;
    }
    ctv = rl2_ms_timeval(conf->connect_timeout_ms);
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    c->forks = rl2_forks_now();
    c->pid = getpid();
    c->timeout_ms = conf->command_timeout_ms;
    rl2_conf_name(conf, c->name, sizeof(c->name));
    c->ctx = conf->unix_path[0] != '\0'
                 ? redisConnectUnixWithTimeout(conf->unix_path, ctv)
                 : redisConnectWithTimeout(conf->host, conf->port, ctv);
    if (c->ctx == NULL) {
        free(c);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    if (c->ctx->err != 0) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: connect: %s", c->name,
                         c->ctx->errstr);
    }
    else if (redisSetTimeout(c->ctx, rl2_ms_timeval(conf->command_timeout_ms))
             != REDIS_OK) {
        st = rl2_err_set(err, RL2_ERR_STORE,
                         "redis %s: setting the "
                         "command timeout: %s",
                         c->name, c->ctx->errstr);
    }
    else {
        st = rl2_redis_auth_select(c, conf, err);
    }
    if (st != RL2_OK) {
        rl2_redis_conn_close(c);
        return st;
    }
    *out = c;
    return RL2_OK;
}

void
rl2_redis_conn_close(rl2_redis_conn_t *c)
{
    if (c != NULL) {
        /* redisFree only closes the descriptor: in a child after fork it
         * leaves the parent's copy of the socket alone. */
        redisFree(c->ctx);
        free(c);
    }
}

int
rl2_redis_conn_broken(const rl2_redis_conn_t *c)
{
    return c->broken;
}

const char *
rl2_redis_conn_name(const rl2_redis_conn_t *c)
{
    return c->name;
}

/* Between commands a RESP2 server never speaks first: a readable socket
 * means the server closed it (restart, idle timeout, CLIENT KILL).  One
 * poll() finds that before a request is sent into a dead socket. */
int
rl2_redis_conn_piped(const rl2_redis_conn_t *c)
{
    return c->pipe != NULL;
}

int
rl2_redis_conn_usable(const rl2_redis_conn_t *c)
{
    struct pollfd p;

    if (c->broken || !rl2_conn_ours(c)) {
        return 0;
    }
    p.fd = c->ctx->fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 0;
}

/* ---- the per-thread cache ---- */

static void
rl2_pool_unlink(rl2_redis_pool_t *pool, rl2_redis_conn_t *c)
{
    pthread_mutex_lock(&pool->lock);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    }
    else {
        pool->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&pool->lock);
}

/* pthread key destructor: the thread is exiting. */
static void
rl2_pool_thread_exit(void *arg)
{
    rl2_redis_conn_t *c = arg;

    rl2_pool_unlink(c->pool, c);
    rl2_redis_conn_close(c);
}

/* conf.pipeline: the pipe, and the handle every thread is given; the
 * handle has no context of its own, its commands go to the pipe. */
static rl2_status_t
rl2_pool_pipe(rl2_redis_pool_t *pool, rl2_err_t *err)
{
    rl2_status_t st;

    st = rl2_redis_pipe_create(&pool->conf, pool->name, &pool->pipe, err);
    if (st != RL2_OK) {
        return st;
    }
    if ((pool->handle = calloc(1, sizeof(*pool->handle))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    pool->handle->pipe = pool->pipe;
    pool->handle->pool = pool;
    pool->handle->timeout_ms = pool->conf.command_timeout_ms;
    snprintf(pool->handle->name, sizeof(pool->handle->name), "%s", pool->name);
    return RL2_OK;
}

rl2_status_t
rl2_redis_pool_create(const rl2_redis_conf_t *conf, rl2_redis_pool_t **out,
                      rl2_err_t *err)
{
    rl2_redis_pool_t *pool;
    rl2_status_t      st;
    int               rc;

    *out = NULL;
    if ((st = rl2_redis_conf_check(conf, err)) != RL2_OK) {
        return st;
    }
    if ((pool = calloc(1, sizeof(*pool))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    pool->conf = *conf;
    rl2_conf_name(conf, pool->name, sizeof(pool->name));
    if ((rc = pthread_key_create(&pool->key, rl2_pool_thread_exit)) != 0) {
        st = rl2_err_set(err, RL2_ERR_SYS,
                         "redis %s: pthread_key_create: "
                         "%s",
                         pool->name, strerror(rc));
        free(pool);
        return st;
    }
    pthread_mutex_init(&pool->lock, NULL);
    if (conf->pipeline && (st = rl2_pool_pipe(pool, err)) != RL2_OK) {
        rl2_redis_pool_destroy(pool);
        return st;
    }
    *out = pool;
    return RL2_OK;
}

rl2_status_t
rl2_redis_pool_get(rl2_redis_pool_t *pool, rl2_redis_conn_t **out,
                   rl2_err_t *err)
{
    rl2_redis_conn_t *c;
    rl2_status_t      st;

    if (pool->pipe != NULL) {
        /* connects, when it must, in the batch's leader */
        *out = pool->handle;
        return RL2_OK;
    }
    c = pthread_getspecific(pool->key);
    *out = NULL;
    if (c != NULL && rl2_redis_conn_usable(c)) {
        *out = c;
        return RL2_OK;
    }
    if (c != NULL) {
        pthread_setspecific(pool->key, NULL);
        rl2_pool_unlink(pool, c);
        rl2_redis_conn_close(c);
    }
    if ((st = rl2_redis_conn_open(&pool->conf, &c, err)) != RL2_OK) {
        return st;
    }
    c->pool = pool;
    pthread_mutex_lock(&pool->lock);
    c->next = pool->conns;
    if (pool->conns != NULL) {
        pool->conns->prev = c;
    }
    pool->conns = c;
    pthread_mutex_unlock(&pool->lock);
    pthread_setspecific(pool->key, c);
    *out = c;
    return RL2_OK;
}

int
rl2_redis_pool_cached(rl2_redis_pool_t *pool, rl2_redis_conn_t **out)
{
    rl2_redis_conn_t *c;

    if (pool->pipe != NULL) {
        *out = rl2_redis_pipe_up(pool->pipe) ? pool->handle : NULL;
        return *out != NULL;
    }
    c = pthread_getspecific(pool->key);
    *out = c != NULL && rl2_redis_conn_usable(c) ? c : NULL;
    return *out != NULL;
}

void
rl2_redis_pool_destroy(rl2_redis_pool_t *pool)
{
    rl2_redis_conn_t *c, *next;

    if (pool == NULL) {
        return;
    }
    /* Deleting the key first means no destructor runs for it any more:
     * every connection is closed here, once. */
    pthread_key_delete(pool->key);
    for (c = pool->conns; c != NULL; c = next) {
        next = c->next;
        rl2_redis_conn_close(c);
    }
    rl2_redis_pipe_destroy(pool->pipe);
    free(pool->handle);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int
rl2_redis_pool_pipe_stats(rl2_redis_pool_t *pool, rl2_redis_pipe_stats_t *out)
{
    if (pool->pipe == NULL) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    rl2_redis_pipe_stats(pool->pipe, out);
    return 1;
}

const char *
rl2_redis_pool_name(const rl2_redis_pool_t *pool)
{
    return pool->name;
}
