/*
 * headers.h -- a verdict rendered as HTTP: the RateLimit-Policy and
 * RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11), the
 * X-RateLimit-* fields most APIs send, Retry-After, and the 429 body (our
 * JSON, or the draft's application/problem+json).
 * Nothing here allocates: values go through a callback or into a caller's
 * buffer.
 */
#ifndef RL2_HEADERS_H
#define RL2_HEADERS_H

#include <stddef.h>

#include "ratelimit2/decide.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"

typedef void (*rl2_header_set_fn)(void *ctx, const char *name,
                                  const char *value);

/* Emit the header fields of the verdict and return the buffer size they
 * need; nothing is emitted when no layer is shown (0 is returned) or when
 * len is less than that size (call again with a buffer that large):
 * RateLimit-Policy and RateLimit always; X-RateLimit-Limit, -Remaining and
 * -Reset when the policy's header_legacy is set; X-RateLimit-Scope and
 * -Algorithm when their switches are; Retry-After when the verdict is a denial.
 * The values are written into buf and the callback gets pointers into it, or to
 * strings of the policy (rendered at load): they live as long as both buf and
 * the policy, so a caller that allocates buf from its request's memory can keep
 * them without copying. Names are string constants. */
size_t rl2_headers_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                          const rl2_clock_t *now, char *buf, size_t len,
                          rl2_header_set_fn set, void *ctx);

/* Always enough: a name renders to at most 128 bytes and a policy item
 * to 174, so 16 layers need at most about 3.5 KiB. */
#define RL2_HEADERS_MAX 4096

/* The numbers of X-RateLimit-Limit, -Remaining and -Reset (epoch or delta
 * as the policy says) for the verdict's shown layer, whether or not the
 * policy sends those fields (the FastCGI front end passes them to the
 * application).  The verdict must show a layer (v->shown >= 0). */
void rl2_headers_legacy(const rl2_policy_t *policy, const rl2_verdict_t *v,
                        const rl2_clock_t *now, int64_t *limit,
                        int64_t *remaining, int64_t *reset);

/* Seconds until the denied request may be retried: the refusing layer's
 * wait rounded up, at least 1.  0 when not denied. */
long long rl2_retry_after_s(const rl2_verdict_t *v);

/* The 429 body into buf (always NUL-terminated); returns the length it
 * needed (like snprintf).  Our JSON (error, message, rule, limit,
 * remaining, current_usage, reset, reset_time, retry_after, upgrade_url),
 * or with the policy's body_problem a problem of the type the
 * RateLimit draft registers (type, title, status, detail,
 * violated-policies). */
size_t rl2_body_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                       const rl2_clock_t *now, char *buf, size_t len);

/* The Content-Type of the policy's bodies: "application/json" or
 * "application/problem+json". */
const char *rl2_body_type(const rl2_policy_t *policy);

/* Always enough: 16 violated policies of 63-byte names, a 256-byte
 * upgrade_url (RL2_UPGRADE_URL_MAX) escaped, and the rest. */
#define RL2_BODY_MAX 2048

#endif /* RL2_HEADERS_H */
