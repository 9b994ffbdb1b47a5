/*
 * headers.c -- a verdict as HTTP header fields and a 429 JSON body.
 *
 * RateLimit-Policy lists every visible limit that applied; RateLimit and
 * the X-RateLimit-* fields report the most restrictive one (the verdict's
 * "shown" layer).  On a refusal, RateLimit's t, Retry-After and
 * X-RateLimit-Reset all point at the same moment: when the refused request
 * would fit, rounded up to whole seconds so a client that obeys is never
 * early.
 */
#include <stdio.h>
#include <string.h>

#include "ratelimit2/headers.h"

#define US_PER_S 1000000LL

static long long
rl2_ceil_s(int64_t us)
{
    return us <= 0 ? 0 : (long long)((us + US_PER_S - 1) / US_PER_S);
}

long long
rl2_retry_after_s(const rl2_verdict_t *v)
{
    if (v->outcome != RL2_OUTCOME_DENY || v->shown < 0) {
        return 0;
    }
    long long s = rl2_ceil_s(v->layers[v->shown].result.retry_after_us);

    return s < 1 ? 1 : s;
}

/* Seconds until the shown limit's quota is back (t of RateLimit). */
static long long
rl2_reset_s(const rl2_verdict_t *v)
{
    if (v->outcome == RL2_OUTCOME_DENY) {
        return rl2_retry_after_s(v);
    }
    return rl2_ceil_s(v->layers[v->shown].result.reset_us);
}

/* The window a client sees (w of RateLimit-Policy); 0 when none. */
static long long
rl2_window_s(const rl2_limit_t *limit, const rl2_clock_t *now)
{
    int64_t start, end;

    switch (limit->algo.algo) {
    case RL2_ALGO_CONCURRENCY:
        return 0;
    case RL2_ALGO_QUOTA:
        rl2_period_bounds(limit->algo.period, now->wall_us, &start, &end);
        return rl2_ceil_s(end - start);
    default:
        return rl2_ceil_s(limit->algo.window_us);
    }
}

/* Append a Structured Field string ("..." with \ and " escaped). */
static size_t
rl2_sf_string(char *buf, size_t len, size_t pos, const char *s)
{
    if (pos < len) {
        buf[pos] = '"';
    }
    pos++;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            if (pos < len) {
                buf[pos] = '\\';
            }
            pos++;
        }
        if ((unsigned char)*s >= 0x20 && *s != 0x7f) {
            if (pos < len) {
                buf[pos] = *s;
            }
            pos++;
        }
    }
    if (pos < len) {
        buf[pos] = '"';
    }
    return pos + 1;
}

static void
rl2_render_policy(const rl2_verdict_t *v, const rl2_clock_t *now,
                  char *buf, size_t len)
{
    size_t pos = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < v->n_layers && pos < len; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;
        long long w = rl2_window_s(limit, now);

        if (limit->unlimited) {
            continue;
        }
        if (pos > 0) {
            pos += (size_t)snprintf(buf + pos, len - pos, ", ");
        }
        pos = rl2_sf_string(buf, len, pos, limit->name);
        if (pos >= len) {
            break;
        }
        pos += (size_t)snprintf(buf + pos, len - pos, ";q=%lld",
                                (long long)limit->algo.limit);
        if (w > 0 && pos < len) {
            pos += (size_t)snprintf(buf + pos, len - pos, ";w=%lld", w);
        }
    }
    buf[len - 1] = '\0';
}

static const char *const rl2_key_names[] = {
    "ip", "user", "api_key", "header", "route", "global"
};

void
rl2_headers_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, rl2_header_set_fn set, void *ctx)
{
    char buf[1024];
    const rl2_layer_t *l;
    long long t;

    if (v->shown < 0) {
        return;
    }
    l = &v->layers[v->shown];
    t = rl2_reset_s(v);
    rl2_render_policy(v, now, buf, sizeof(buf));
    set(ctx, "RateLimit-Policy", buf);
    size_t pos = rl2_sf_string(buf, sizeof(buf), 0, l->limit->name);

    snprintf(buf + pos, sizeof(buf) - pos, ";r=%lld;t=%lld",
             (long long)l->result.remaining, t);
    set(ctx, "RateLimit", buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)l->result.limit);
    set(ctx, "X-RateLimit-Limit", buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)l->result.remaining);
    set(ctx, "X-RateLimit-Remaining", buf);
    snprintf(buf, sizeof(buf), "%lld", policy->reset_delta ? t
             : (long long)(now->wall_us / US_PER_S) + t);
    set(ctx, "X-RateLimit-Reset", buf);
    if (policy->header_scope) {
        set(ctx, "X-RateLimit-Scope", rl2_key_names[l->limit->key]);
    }
    if (policy->header_algorithm) {
        set(ctx, "X-RateLimit-Algorithm", rl2_algo_name(l->limit->algo.algo));
    }
    if (v->outcome == RL2_OUTCOME_DENY) {
        snprintf(buf, sizeof(buf), "%lld", rl2_retry_after_s(v));
        set(ctx, "Retry-After", buf);
    }
}

/* Append s to buf as the inside of a JSON string. */
static size_t
rl2_json_escape(char *buf, size_t len, size_t pos, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char tmp[8];
        int n;

        if (ch == '"' || ch == '\\') {
            n = snprintf(tmp, sizeof(tmp), "\\%c", ch);
        }
        else if (ch < 0x20) {
            n = snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        }
        else {
            tmp[0] = (char)ch;
            n = 1;
        }
        for (int i = 0; i < n; i++, pos++) {
            if (pos < len) {
                buf[pos] = tmp[i];
            }
        }
    }
    return pos;
}

static size_t
rl2_json_field(char *buf, size_t len, size_t pos, const char *name,
               const char *value)
{
    pos += (size_t)snprintf(pos < len ? buf + pos : NULL,
                            pos < len ? len - pos : 0, ",\"%s\":\"", name);
    pos = rl2_json_escape(buf, len, pos, value);
    if (pos < len) {
        buf[pos] = '"';
    }
    return pos + 1;
}

size_t
rl2_body_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                const rl2_clock_t *now, char *buf, size_t len)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    long long retry = rl2_retry_after_s(v), t = l ? rl2_reset_s(v) : 0;
    char msg[256];
    size_t pos;

    if (len == 0) {
        return 0;
    }
    snprintf(msg, sizeof(msg), "Too many requests: the limit \"%s\" is "
             "used up. Retry in %lld second%s.", l ? l->limit->name : "",
             retry, retry == 1 ? "" : "s");
    pos = (size_t)snprintf(buf, len, "{\"error\":\"too_many_requests\"");
    pos = rl2_json_field(buf, len, pos, "message", msg);
    pos = rl2_json_field(buf, len, pos, "rule", l ? l->rule->name : "");
    pos += (size_t)snprintf(pos < len ? buf + pos : NULL,
                            pos < len ? len - pos : 0,
                            ",\"limit\":%lld,\"remaining\":%lld,"
                            "\"reset\":%lld,\"retry_after\":%lld",
                            l ? (long long)l->result.limit : 0LL,
                            l ? (long long)l->result.remaining : 0LL,
                            policy->reset_delta ? t
                            : (long long)(now->wall_us / US_PER_S) + t,
                            retry);
    if (v->tier >= 0 && (size_t)v->tier < policy->n_tiers
        && policy->tiers[v->tier].upgrade_url != NULL) {
        pos = rl2_json_field(buf, len, pos, "upgrade_url",
                             policy->tiers[v->tier].upgrade_url);
    }
    pos += (size_t)snprintf(pos < len ? buf + pos : NULL,
                            pos < len ? len - pos : 0, "}\n");
    buf[pos < len ? pos : len - 1] = '\0';
    return pos;
}
