/*
 * status.h -- status codes and the error buffer shared by the whole core.
 *
 * Every fallible function in libratelimit2 returns an rl2_status_t and, when
 * it fails, writes a one-line human message into a caller-owned rl2_err_t.
 * Config errors carry "file:line: message"; store errors name the key.
 */
#ifndef RL2_STATUS_H
#define RL2_STATUS_H

#include <stddef.h>

typedef enum {
    RL2_OK = 0,
    RL2_ERR_CONFIG,   /* bad policy: message carries file:line */
    RL2_ERR_NOMEM,    /* allocation failed (load time only) */
    RL2_ERR_SYS,      /* a system call failed: message carries errno text */
    RL2_ERR_RANGE,    /* a value would overflow 64-bit arithmetic */
    RL2_ERR_STORE,    /* the store could not answer */
    RL2_ERR_INVALID,  /* a caller passed something malformed */
    RL2_ERR_REQUEST,  /* the client's request is ambiguous: answer 400 */
    RL2_ERR_BOUND,    /* more rules or limits apply to one request than
                         the core checks at once: refused, answer 500 (the
                         loader keeps a policy file from it; a front end's
                         inline rules on top of one can reach it) */
    RL2_ERR_NOT_FOUND /* the named object does not exist (a reader
                         opening what no front end has created) */
} rl2_status_t;

#define RL2_ERR_MAX 256

/* A caller-owned error buffer; msg is always NUL-terminated. */
typedef struct {
    char msg[RL2_ERR_MAX];
} rl2_err_t;

/* printf into err->msg (err may be NULL); returns status unchanged, so that
 * "return rl2_err_set(err, RL2_ERR_CONFIG, ...)" reads naturally. */
rl2_status_t rl2_err_set(rl2_err_t *err, rl2_status_t status, const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));

#endif /* RL2_STATUS_H */
