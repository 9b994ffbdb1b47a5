/*
 * redis_resp.h -- a command in the Redis protocol (RESP), written into a
 * caller's buffer (private to the core: redis_conn.c).
 *
 * hiredis 0.14 formats a command with sdscatfmt, a growing string and a
 * formatted length per argument: about 10,000 instructions for one call
 * of the store's script, which has some forty arguments.  This writes the
 * same bytes in a few per byte; redis_conn.c hands them to hiredis with
 * redisAppendFormattedCommand.
 */
#ifndef RL2_REDIS_RESP_H
#define RL2_REDIS_RESP_H

#include <stddef.h>

/* Room for the commands of the hot path: a script call of
 * RL2_MAX_LAYERS layers with two keys each fits with room to spare.  A
 * longer command (a violation log entry with a long path) is formatted
 * by hiredis instead. */
#define RL2_RESP_BUF 4096

/* Write "*argc\r\n" and "$len\r\narg\r\n" for each argument into out
 * (cap bytes); argvlen NULL means every argument is a C string, as in
 * hiredis.  Returns the length written, or 0 when the command does not
 * fit (out is then undefined). */
size_t rl2_resp_format(char *out, size_t cap, int argc, const char **argv,
                       const size_t *argvlen);

#endif /* RL2_REDIS_RESP_H */
