/*
 * status.c -- the error buffer and the names of status codes.
 *
 * Owns nothing but formatting: every fallible core function fills a
 * caller-owned rl2_err_t through rl2_err_set() and returns its status.
 */
#include <stdarg.h>
#include <stdio.h>

#include "ratelimit2/status.h"
#include "base/base_internal.h"

rl2_status_t
rl2_err_set(rl2_err_t *err, rl2_status_t status, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return status;
    }
    va_start(ap, fmt);
    /* vsnprintf truncates and always terminates: a long key or path never
     * overruns the buffer, it only shortens the message. */
    if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0) {
        err->msg[0] = '\0';
    }
    va_end(ap);
    return status;
}

const char *
rl2_status_str(rl2_status_t status)
{
    switch (status) {
    case RL2_OK:
        return "ok";
    case RL2_ERR_CONFIG:
        return "configuration error";
    case RL2_ERR_NOMEM:
        return "out of memory";
    case RL2_ERR_SYS:
        return "system error";
    case RL2_ERR_RANGE:
        return "value out of range";
    case RL2_ERR_STORE:
        return "store error";
    case RL2_ERR_INVALID:
        return "invalid argument";
    case RL2_ERR_REQUEST:
        return "malformed request";
    case RL2_ERR_BOUND:
        return "too many rules or limits for one request";
    case RL2_ERR_NOT_FOUND:
        return "not found";
    }
    /* Not a default label, so -Wswitch flags a new enum value here. */
    return "unknown status";
}
