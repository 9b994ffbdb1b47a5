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

#include "buf.h"

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

static void
rl2_render_policy(const rl2_verdict_t *v, const rl2_clock_t *now,
                  rl2_buf_t *b)
{
    int first = 1;

    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;

        if (limit->unlimited) {
            continue;
        }
        if (!first) {
            rl2_buf_mem(b, ", ", 2);
        }
        first = 0;
        rl2_buf_str(b, limit->sf_policy);
        if (limit->algo.algo == RL2_ALGO_QUOTA
            && limit->algo.period == RL2_PERIOD_MONTH) {
            /* A month's length depends on the month: rendered now. */
            rl2_buf_mem(b, ";w=", 3);
            rl2_buf_i64(b, rl2_window_s(limit, now));
        }
    }
}

static const char *const rl2_key_names[] = {
    "ip", "user", "api_key", "header", "route", "global"
};

/* Values are written one after another into the caller's buffer, each
 * NUL-terminated; "start" is where the current one began. */
typedef struct {
    rl2_buf_t          b;
    rl2_header_set_fn  set;
    void              *ctx;
    size_t             start;
} rl2_out_t;

static void
rl2_out_emit(rl2_out_t *o, const char *name)
{
    o->set(o->ctx, name, o->b.p + o->start);
    /* Step past the NUL: the next value starts after it. */
    if (o->b.len + 1 < o->b.cap) {
        o->b.len++;
        o->b.p[o->b.len] = '\0';
    }
    o->start = o->b.len;
}

static void
rl2_out_i64(rl2_out_t *o, const char *name, int64_t n)
{
    rl2_buf_i64(&o->b, n);
    rl2_out_emit(o, name);
}

size_t
rl2_headers_size(const rl2_verdict_t *v)
{
    /* Each number takes at most 20 digits; a monthly w as many. */
    size_t need = 8 * 24 + 16;

    for (size_t i = 0; i < v->n_layers; i++) {
        need += strlen(v->layers[i].limit->sf_policy) + 2 + 24;
    }
    if (v->shown >= 0) {
        need += strlen(v->layers[v->shown].limit->sf_name);
    }
    return need;
}

void
rl2_headers_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, char *buf, size_t len,
                   rl2_header_set_fn set, void *ctx)
{
    rl2_out_t o = { { buf, 0, len, 0 }, set, ctx, 0 };
    const rl2_layer_t *l;
    long long t;

    if (v->shown < 0 || len < 2) {
        return;
    }
    buf[0] = '\0';
    l = &v->layers[v->shown];
    t = rl2_reset_s(v);
    rl2_render_policy(v, now, &o.b);
    rl2_out_emit(&o, "RateLimit-Policy");
    rl2_buf_str(&o.b, l->limit->sf_name);
    rl2_buf_mem(&o.b, ";r=", 3);
    rl2_buf_i64(&o.b, l->result.remaining);
    rl2_buf_mem(&o.b, ";t=", 3);
    rl2_buf_i64(&o.b, t);
    rl2_out_emit(&o, "RateLimit");
    rl2_out_i64(&o, "X-RateLimit-Limit", l->result.limit);
    rl2_out_i64(&o, "X-RateLimit-Remaining", l->result.remaining);
    rl2_out_i64(&o, "X-RateLimit-Reset", policy->reset_delta ? t
                : now->wall_us / US_PER_S + t);
    if (policy->header_scope) {
        set(ctx, "X-RateLimit-Scope", rl2_key_names[l->limit->key]);
    }
    if (policy->header_algorithm) {
        set(ctx, "X-RateLimit-Algorithm", rl2_algo_name(l->limit->algo.algo));
    }
    if (v->outcome == RL2_OUTCOME_DENY) {
        rl2_out_i64(&o, "Retry-After", rl2_retry_after_s(v));
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
