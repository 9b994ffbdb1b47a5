/*
 * redis_resp.c -- a command in the Redis protocol (redis_resp.h).
 *
 * RESP: an array header "*<count>\r\n", then each argument as a bulk
 * string "$<length>\r\n<bytes>\r\n".  The lengths are decimal; the bytes
 * are copied as they are (binary safe).
 */
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "redis_resp.h"

/* "<mark><n>\r\n" at out + *len, if it fits in cap. */
static int
rl2_resp_header(char *out, size_t cap, size_t *len, char mark, size_t n)
{
    if (cap - *len < 1 + rl2_digits(n) + 2) {
        return 0;
    }
    out[(*len)++] = mark;
    *len += rl2_i64_text(out + *len, (int64_t)n);
    out[(*len)++] = '\r';
    out[(*len)++] = '\n';
    return 1;
}

size_t
rl2_resp_format(char *out, size_t cap, int argc, const char **argv,
                const size_t *argvlen)
{
    size_t len = 0;

    if (argc < 0 || !rl2_resp_header(out, cap, &len, '*', (size_t)argc)) {
        return 0;
    }
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);

        if (n > (size_t)INT64_MAX || !rl2_resp_header(out, cap, &len, '$', n)
            || cap - len < n + 2) {
            return 0;
        }
        memcpy(out + len, argv[i], n);
        len += n;
        out[len++] = '\r';
        out[len++] = '\n';
    }
    return len;
}
