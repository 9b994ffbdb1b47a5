/*
 * redis_pipe.c -- the commands of a process's threads written together on
 * one connection per server: group commit (redis_internal.h, "pipeline").
 *
 * A thread that sends a command formats it (RESP) on its stack and puts
 * it at the end of the pipe's queue.  When no batch is in flight it
 * becomes the leader: it takes what is queued (at most
 * RL2_PIPE_BATCH_MAX commands and RL2_PIPE_BATCH_BYTES bytes), writes it
 * in one send(2), reads the replies in order, hands each waiting thread
 * its own and wakes it; if more were queued meanwhile, the first of them
 * leads the next batch.  A thread alone pays one round trip, as with a
 * connection of its own: there is no timer and no window to wait for.
 * Under load the server reads, parses and answers many commands per read
 * event, and the threads share one connection instead of one each.
 *
 * Every waiter keeps its own deadline (the command timeout from when it
 * queued).  One whose deadline passes while queued leaves the queue; one
 * whose command is in flight leaves its slot of the batch empty, and the
 * leader reads its reply and drops it, so the reply stream stays in step.
 * Both fail with the timeout error a thread's own connection gives.  A
 * leader with less than half of its own time left reads with what is
 * left of it, so that no caller waits more than one and a half command
 * timeouts (a thread that leads at once waits one, as on a connection of
 * its own).  Its time is measured after the yield a leader may make
 * first (rl2_pipe_lead): one whose time ran out in it writes nothing,
 * fails as a queued waiter would, and passes the lead on.  An I/O error,
 * a timeout or a reply that does not parse breaks the connection: every
 * command of the batch not answered yet fails with that error, and the
 * next leader opens a new connection (asking the sentinels first when
 * there are some).  A failed connect fails the batch with the connect
 * error.
 *
 * fork(): a pthread_atfork child handler empties every pipe of the child
 * (its waiters were the parent's threads) and closes its copy of the
 * connection, so that no two processes share one.  The prepare handler
 * holds every pipe's lock across fork(), so the child finds each in a
 * state the handler can reset.
 *
 * Locking: p->lock guards the queue, the batch slots, the name, the
 * counters and the leading flag.  The connection, the output buffer and
 * the replies belong to the leader alone (one at a time: p->leading),
 * which does its I/O without the lock.
 *
 * Waking: each waiter sleeps on a futex word of its own (seq), which a
 * waker changes before waking it, so that a wake that comes before the
 * sleep is not lost: a wake to lead adds RL2_PIPE_LEAD_STEP (under the
 * lock), the answer's wake sets RL2_PIPE_HANDED.  The leader hands the
 * answers out under the lock but wakes their threads after letting it
 * go: woken under the lock, a thread that shares the leader's CPU runs at
 * once, finds the lock held and sleeps again, two context switches for
 * nothing per answer.  Its last write to a waiter is that one atomic
 * setting of RL2_PIPE_HANDED, after which the waiter may return and its
 * stack be reused; the futex wake that follows names only the address (a
 * stray wake of whatever sleeps there next is a spurious wake-up, which
 * every futex sleeper, glibc's included, tolerates).  The flag is in the
 * word slept on, not beside it: a waiter that saw a flag of its own
 * unset and then slept on a word the leader had already changed would
 * sleep through the wake.  A waiter whose answer was handed therefore
 * never leaves before it sees RL2_PIPE_HANDED, even past its deadline:
 * the leader is only a few instructions from setting it.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/base_internal.h"
#include "ratelimit2/clock.h"
#include "ratelimit2/redis.h"
#include "redis_resp.h"
#include "redis/redis_internal.h"

/* Test seams: nothing, unless a test that builds this file defines
 * RL2_PIPE_SEAM(point, w) to hold a thread at one of these points, so as
 * to run an interleaving that timing alone makes rare. */
#ifndef RL2_PIPE_SEAM
#define RL2_PIPE_SEAM(point, w) ((void)0)
#endif
enum {
    RL2_PIPE_SEAM_HANDING,      /* leader: w answered, its last write next */
    RL2_PIPE_SEAM_HANDED,       /* leader: w woken (w may be gone) */
    RL2_PIPE_SEAM_SLEEP_HANDED, /* waiter: about to sleep for handed */
    RL2_PIPE_SEAM_YIELDED       /* leader w: back from its yield, no lock yet */
};

/* In a waiter's seq: the leader is done with it (its last write). */
#define RL2_PIPE_HANDED 1u
/* What a wake to lead adds to seq: leaves RL2_PIPE_HANDED alone. */
#define RL2_PIPE_LEAD_STEP 2u

typedef enum {
    RL2_PIPE_QUEUED = 0, /* in the queue */
    RL2_PIPE_SENT,       /* in the leader's batch */
    RL2_PIPE_DONE        /* reply or error filled in, wake on its way */
} rl2_pipe_state_t;

/* One command and the thread that waits for its reply, on that thread's
 * stack: no other thread touches it once it has left the queue or its
 * batch slot (under the lock). */
typedef struct rl2_pipe_waiter {
    const char             *cmd; /* RESP bytes */
    size_t                  len;
    const char             *what; /* for messages */
    rl2_pipe_state_t        state;
    size_t                  slot; /* in p->batch, when SENT */
    redisReply             *reply;
    rl2_status_t            st;
    rl2_err_t              *err;
    _Atomic uint32_t        seq;  /* futex word: changed before each wake */
    struct rl2_pipe_waiter *next; /* in the queue, then in p->handed */
} rl2_pipe_waiter_t;

struct rl2_redis_pipe {
    const rl2_redis_conf_t *conf; /* the pool's, borrowed */
    pthread_mutex_t         lock;
    rl2_pipe_waiter_t      *head; /* queued, oldest first */
    rl2_pipe_waiter_t      *tail;
    /* The batch in flight; a slot is NULL once its waiter gave up. */
    rl2_pipe_waiter_t     *batch[RL2_PIPE_BATCH_MAX];
    int                    leading;
    size_t                 last_batch; /* commands in the last batch */
    char                   name[RL2_REDIS_NAME_MAX]; /* for messages */
    rl2_redis_pipe_stats_t stats;
    atomic_int             up; /* the connection is open and healthy */
    /* the leader's alone */
    rl2_pipe_waiter_t *handed; /* answered, to wake once the lock is let go */
    rl2_redis_conn_t  *conn;
    char              *out; /* the batch's bytes */
    size_t             out_size;
    redisReply        *replies[RL2_PIPE_BATCH_MAX];
    /* every pipe of the process, for the fork handlers */
    struct rl2_redis_pipe *next;
    struct rl2_redis_pipe *prev;
};

/* Outcome of one batch's I/O. */
typedef struct {
    size_t    got;              /* replies read */
    int       open_failed;      /* err is each waiter's whole message */
    rl2_err_t err;              /* the connect error */
    char      why[RL2_ERR_MAX]; /* else why the rest failed */
} rl2_pipe_io_t;

/* ---- fork ---- */

static pthread_mutex_t   rl2_pipes_lock = PTHREAD_MUTEX_INITIALIZER;
static rl2_redis_pipe_t *rl2_pipes;
static pthread_once_t    rl2_pipes_once = PTHREAD_ONCE_INIT;
static int               rl2_pipes_atfork; /* pthread_atfork's result */

static void
rl2_pipes_prepare(void)
{
    pthread_mutex_lock(&rl2_pipes_lock);
    for (rl2_redis_pipe_t *p = rl2_pipes; p != NULL; p = p->next) {
        pthread_mutex_lock(&p->lock);
    }
}

static void
rl2_pipes_parent(void)
{
    for (rl2_redis_pipe_t *p = rl2_pipes; p != NULL; p = p->next) {
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&rl2_pipes_lock);
}

/* The child's only thread: the waiters and a leader were the parent's
 * threads.  A batch's replies the parent's leader was reading are lost
 * to the child (a few kilobytes at most, once per fork). */
static void
rl2_pipes_child(void)
{
    for (rl2_redis_pipe_t *p = rl2_pipes; p != NULL; p = p->next) {
        p->head = NULL;
        p->tail = NULL;
        memset(p->batch, 0, sizeof(p->batch));
        p->handed = NULL;
        p->leading = 0;
        p->last_batch = 0;
        memset(&p->stats, 0, sizeof(p->stats));
        atomic_store_explicit(&p->up, 0, memory_order_relaxed);
        /* closes only the child's copy of the descriptor */
        rl2_redis_conn_close(p->conn);
        p->conn = NULL;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&rl2_pipes_lock);
}

static void
rl2_pipes_register(void)
{
    rl2_pipes_atfork =
        pthread_atfork(rl2_pipes_prepare, rl2_pipes_parent, rl2_pipes_child);
}

/* ---- create, destroy ---- */

rl2_status_t
rl2_redis_pipe_create(const rl2_redis_conf_t *conf, const char *name,
                      rl2_redis_pipe_t **out, rl2_err_t *err)
{
    rl2_redis_pipe_t *p;

    *out = NULL;
    pthread_once(&rl2_pipes_once, rl2_pipes_register);
    if (rl2_pipes_atfork != 0) {
        /* Without the handlers a child could talk on its parent's
         * connection: refuse rather than risk it. */
        return rl2_err_set(err, RL2_ERR_SYS, "redis %s: pthread_atfork: %s",
                           name, strerror(rl2_pipes_atfork));
    }
    if ((p = calloc(1, sizeof(*p))) == NULL
        || (p->out = malloc(RL2_PIPE_BATCH_BYTES)) == NULL) {
        free(p);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    p->conf = conf;
    p->out_size = RL2_PIPE_BATCH_BYTES;
    snprintf(p->name, sizeof(p->name), "%s", name);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_lock(&rl2_pipes_lock);
    p->next = rl2_pipes;
    if (rl2_pipes != NULL) {
        rl2_pipes->prev = p;
    }
    rl2_pipes = p;
    pthread_mutex_unlock(&rl2_pipes_lock);
    *out = p;
    return RL2_OK;
}

void
rl2_redis_pipe_destroy(rl2_redis_pipe_t *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&rl2_pipes_lock);
    if (p->prev != NULL) {
        p->prev->next = p->next;
    }
    else {
        rl2_pipes = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    }
    pthread_mutex_unlock(&rl2_pipes_lock);
    rl2_redis_conn_close(p->conn);
    pthread_mutex_destroy(&p->lock);
    free(p->out);
    free(p);
}

int
rl2_redis_pipe_up(rl2_redis_pipe_t *p)
{
    return atomic_load_explicit(&p->up, memory_order_relaxed);
}

void
rl2_redis_pipe_stats(rl2_redis_pipe_t *p, rl2_redis_pipe_stats_t *out)
{
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    pthread_mutex_unlock(&p->lock);
}

/* ---- waking ---- */

/* The leader is done with w: acquire, so that its answer, written under
 * the lock before, is seen. */
static int
rl2_pipe_handed(rl2_pipe_waiter_t *w)
{
    return (atomic_load_explicit(&w->seq, memory_order_acquire)
            & RL2_PIPE_HANDED)
           != 0;
}

/* Only the address: the waiter may already be gone (see the top). */
static void
rl2_pipe_kick(rl2_pipe_waiter_t *w)
{
    rl2_futex_wake(&w->seq, 1, 0);
}

/* The next leader, told so (lock held: it is queued, so it is still
 * there); NULL when nobody waits.  The caller wakes it, with the lock or
 * after letting it go (by then it may have left: the wake names only the
 * address). */
static rl2_pipe_waiter_t *
rl2_pipe_next_leader(rl2_redis_pipe_t *p)
{
    if (p->head != NULL) {
        atomic_fetch_add_explicit(&p->head->seq, RL2_PIPE_LEAD_STEP,
                                  memory_order_relaxed);
    }
    return p->head;
}

/* ---- the leader ---- */

/* w's answer is filled in (lock held): its thread is woken by
 * rl2_pipe_wake_handed once the lock is let go. */
static void
rl2_pipe_done(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *w)
{
    w->state = RL2_PIPE_DONE;
    w->next = p->handed;
    p->handed = w;
}

/* Without the lock: after RL2_PIPE_HANDED is set, w is not touched; the
 * release orders the answer, written under the lock, before it.  The
 * leader's own waiter (self) is awake: it is marked, not woken. */
static void
rl2_pipe_wake_handed(rl2_pipe_waiter_t *list, const rl2_pipe_waiter_t *self)
{
    while (list != NULL) {
        rl2_pipe_waiter_t *w = list;

        list = w->next;
        RL2_PIPE_SEAM(RL2_PIPE_SEAM_HANDING, w);
        atomic_fetch_or_explicit(&w->seq, RL2_PIPE_HANDED,
                                 memory_order_release);
        if (w != self) {
            rl2_pipe_kick(w);
        }
        RL2_PIPE_SEAM(RL2_PIPE_SEAM_HANDED, w);
    }
}

/* A command larger than the buffer goes alone, in a buffer grown for it
 * (it stays grown: the largest command the process sends). */
static int
rl2_pipe_room(rl2_redis_pipe_t *p, size_t need)
{
    char *grown;

    if (need <= p->out_size) {
        return 1;
    }
    if ((grown = realloc(p->out, need)) == NULL) {
        return 0;
    }
    p->out = grown;
    p->out_size = need;
    return 1;
}

/* Move the oldest queued commands into the batch and their bytes into
 * p->out (lock held).  Returns how many; *len their bytes. */
static size_t
rl2_pipe_take(rl2_redis_pipe_t *p, size_t *len)
{
    size_t n = 0, used = 0;

    while (p->head != NULL && n < RL2_PIPE_BATCH_MAX) {
        rl2_pipe_waiter_t *w = p->head;

        if (n > 0 && used + w->len > RL2_PIPE_BATCH_BYTES) {
            break;
        }
        p->head = w->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        if (!rl2_pipe_room(p, used + w->len)) {
            w->st = rl2_err_set(w->err, RL2_ERR_NOMEM, "out of memory");
            rl2_pipe_done(p, w);
            continue;
        }
        memcpy(p->out + used, w->cmd, w->len);
        used += w->len;
        w->state = RL2_PIPE_SENT;
        w->slot = n;
        p->batch[n++] = w;
    }
    *len = used;
    return n;
}

/* The connection, open and healthy, or a new one (without the lock). */
static int
rl2_pipe_connect(rl2_redis_pipe_t *p, rl2_pipe_io_t *io)
{
    if (p->conn != NULL && rl2_redis_conn_usable(p->conn)) {
        return 1;
    }
    rl2_redis_conn_close(p->conn);
    p->conn = NULL;
    atomic_store_explicit(&p->up, 0, memory_order_relaxed);
    if (rl2_redis_conn_open(p->conf, &p->conn, &io->err) != RL2_OK) {
        io->open_failed = 1;
        return 0;
    }
    return 1;
}

/* Write the batch and read its n replies (without the lock).  A leader
 * left with less than a command timeout of its own reads with what it
 * has left. */
static void
rl2_pipe_io(rl2_redis_pipe_t *p, size_t n, size_t len, int left_ms,
            rl2_pipe_io_t *io)
{
    io->got = 0;
    io->open_failed = 0;
    io->why[0] = '\0';
    if (!rl2_pipe_connect(p, io)) {
        return;
    }
    io->got = rl2_redis_conn_batch(p->conn, p->out, len, n, p->replies, left_ms,
                                   io->why, sizeof(io->why));
    atomic_store_explicit(&p->up, !rl2_redis_conn_broken(p->conn),
                          memory_order_relaxed);
}

/* Hand each waiter still there its reply or the batch's error; drop the
 * replies of those that gave up (lock held). */
static void
rl2_pipe_deliver(rl2_redis_pipe_t *p, size_t n, const rl2_pipe_io_t *io)
{
    if (p->conn != NULL) {
        snprintf(p->name, sizeof(p->name), "%s", rl2_redis_conn_name(p->conn));
    }
    for (size_t i = 0; i < n; i++) {
        rl2_pipe_waiter_t *w = p->batch[i];

        p->batch[i] = NULL;
        if (w == NULL) {
            if (i < io->got) {
                freeReplyObject(p->replies[i]);
                p->stats.dropped++;
            }
            continue;
        }
        if (i < io->got) {
            w->reply = p->replies[i];
            w->st = RL2_OK;
        }
        else if (io->open_failed) {
            w->st = RL2_ERR_STORE;
            if (w->err != NULL) {
                *w->err = io->err;
            }
        }
        else {
            w->st = rl2_err_set(w->err, RL2_ERR_STORE, "redis %s: %s: %s",
                                p->name, w->what, io->why);
        }
        rl2_pipe_done(p, w);
    }
    p->stats.batches++;
    p->stats.commands += n;
    if (n > p->stats.max_batch) {
        p->stats.max_batch = n;
    }
}

static void rl2_pipe_give_up(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *w);

/* One batch, led by the caller, whose own waiter is self, queued, with
 * its deadline (rl2_mono_us(); lock held on entry and on return, let go
 * for the yield, the I/O and waking the answered).  Returns 0, or
 * ETIMEDOUT when self's time ran out before anything was written: self
 * then gave up (it left the queue with the timeout error) and the lead
 * passed on. */
static int
rl2_pipe_lead(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *self, int64_t deadline_us)
{
    rl2_pipe_io_t      io;
    rl2_pipe_waiter_t *handed, *next;
    size_t             n, len;
    int64_t            left_us;

    p->leading = 1;
    p->handed = NULL;
    if (p->last_batch > 1) {
        /* The process's threads call Redis together: let those that can
         * run reach the queue first, so that one write carries them and
         * Redis is woken once for all.  Redis, woken by the write, would
         * otherwise often run at once on a shared CPU and answer a batch
         * of few.  Measured on one CPU shared by Apache (event MPM, 16
         * connections) and Redis: 10-25% less CPU a request in most of
         * twelve interleaved rounds.  With nothing else runnable the
         * yield returns at once; behind CPU-bound threads on its CPU (of
         * any process) it waits their turns, about 2 ms each on Linux
         * 6.18, and the batch with it.  A lone thread (prefork) never
         * yields, a quiet server's once after a burst (its next batch
         * carries one command). */
        pthread_mutex_unlock(&p->lock);
        sched_yield();
        RL2_PIPE_SEAM(RL2_PIPE_SEAM_YIELDED, self);
        pthread_mutex_lock(&p->lock);
    }
    /* Measured after the yield, which on a busy CPU can outlast what was
     * left: a caller whose time ran out writes nothing (as one whose time
     * runs out while queued), and the batch reads with what is left. */
    left_us = deadline_us - rl2_mono_us();
    if (left_us <= 0) {
        p->leading = 0;
        rl2_pipe_give_up(p, self); /* wakes the next leader */
        return ETIMEDOUT;
    }
    n = rl2_pipe_take(p, &len);
    p->last_batch = n;
    if (n > 0) {
        pthread_mutex_unlock(&p->lock);
        rl2_pipe_io(p, n, len, (int)((left_us + 999) / 1000), &io);
        pthread_mutex_lock(&p->lock);
        rl2_pipe_deliver(p, n, &io);
    }
    p->leading = 0;
    next = rl2_pipe_next_leader(p);
    handed = p->handed;
    p->handed = NULL;
    if (handed != NULL || next != NULL) {
        /* the next batch first: its leader sends while these wake */
        pthread_mutex_unlock(&p->lock);
        if (next != NULL) {
            rl2_pipe_kick(next);
        }
        rl2_pipe_wake_handed(handed, self);
        pthread_mutex_lock(&p->lock);
    }
    return 0;
}

/* ---- the waiters ---- */

static void
rl2_pipe_unqueue(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *w)
{
    rl2_pipe_waiter_t **at = &p->head, *prev = NULL;

    while (*at != w) {
        prev = *at;
        at = &(*at)->next;
    }
    *at = w->next;
    if (p->tail == w) {
        p->tail = prev;
    }
}

/* The deadline passed (lock held): leave the queue, or the batch (the
 * leader drops the reply), with the error a connection of one's own
 * gives; wake the next leader if nobody leads. */
static void
rl2_pipe_give_up(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *w)
{
    if (w->state == RL2_PIPE_QUEUED) {
        rl2_pipe_unqueue(p, w);
    }
    else {
        p->batch[w->slot] = NULL;
    }
    p->stats.gave_up++;
    w->st = rl2_err_set(w->err, RL2_ERR_STORE,
                        "redis %s: %s: no answer within %d ms", p->name,
                        w->what, p->conf->command_timeout_ms);
    if (!p->leading) {
        /* it may have been woken to lead: pass that on */
        rl2_pipe_waiter_t *next = rl2_pipe_next_leader(p);

        if (next != NULL) {
            rl2_pipe_kick(next);
        }
    }
}

/* Answered (state DONE): wait for the leader to be done with w, with no
 * deadline (it is between letting the lock go and setting
 * RL2_PIPE_HANDED, which changes the word slept on). */
static void
rl2_pipe_wait_handed(rl2_pipe_waiter_t *w)
{
    for (;;) {
        uint32_t seen = atomic_load_explicit(&w->seq, memory_order_acquire);

        if (seen & RL2_PIPE_HANDED) {
            return;
        }
        RL2_PIPE_SEAM(RL2_PIPE_SEAM_SLEEP_HANDED, w);
        rl2_futex_wait(&w->seq, seen, -1, 0);
    }
}

/* Queue w and wait until it is answered, leading a batch whenever none is
 * in flight, or until its deadline.  A thread woken with its answer
 * handed leaves without taking the lock again. */
static void
rl2_pipe_wait(rl2_redis_pipe_t *p, rl2_pipe_waiter_t *w)
{
    int64_t deadline_us;

    deadline_us = rl2_mono_us() + (int64_t)p->conf->command_timeout_ms * 1000;
    pthread_mutex_lock(&p->lock);
    if (p->tail != NULL) {
        p->tail->next = w;
    }
    else {
        p->head = w;
    }
    p->tail = w;
    for (;;) {
        uint32_t seen;
        int      rc;

        if (w->state == RL2_PIPE_DONE) {
            pthread_mutex_unlock(&p->lock);
            rl2_pipe_wait_handed(w);
            return;
        }
        if (!p->leading) {
            if (rl2_pipe_lead(p, w, deadline_us) == ETIMEDOUT) {
                pthread_mutex_unlock(&p->lock);
                return;
            }
            continue;
        }
        seen = atomic_load_explicit(&w->seq, memory_order_relaxed);
        pthread_mutex_unlock(&p->lock);
        rc = rl2_futex_wait(&w->seq, seen, deadline_us, 0);
        if (rl2_pipe_handed(w)) {
            return;
        }
        pthread_mutex_lock(&p->lock);
        if (rc == ETIMEDOUT && w->state != RL2_PIPE_DONE) {
            rl2_pipe_give_up(p, w);
            pthread_mutex_unlock(&p->lock);
            return;
        }
    }
}

rl2_status_t
rl2_redis_pipe_command(rl2_redis_pipe_t *p, int argc, const char **argv,
                       const size_t *argvlen, const char *what,
                       struct redisReply **reply, rl2_err_t *err)
{
    char              buf[RL2_RESP_BUF];
    char             *big = NULL;
    rl2_pipe_waiter_t w;
    int               len;

    *reply = NULL;
    memset(&w, 0, sizeof(w));
    w.len = rl2_resp_format(buf, sizeof(buf), argc, argv, argvlen);
    w.cmd = buf;
    if (w.len == 0) {
        /* longer than the hot path's commands: hiredis formats it */
        if ((len = redisFormatCommandArgv(&big, argc, argv, argvlen)) < 0) {
            return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
        }
        w.cmd = big;
        w.len = (size_t)len;
    }
    w.what = what;
    w.err = err;
    rl2_pipe_wait(p, &w);
    redisFreeCommand(big);
    *reply = w.reply;
    return w.st;
}
