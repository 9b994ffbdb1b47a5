/*
 * headers.c -- a verdict as HTTP header fields and a 429 JSON body.
 *
 * RateLimit-Policy lists every visible limit that applied; RateLimit and
 * the X-RateLimit-* fields report the most restrictive one (the verdict's
 * "shown" layer).  On a refusal, RateLimit's t, Retry-After and
 * X-RateLimit-Reset all point at the same moment: when the refused request
 * would fit, rounded up to whole seconds so a client that obeys is never
 * early.  The 429 body is our JSON or, with headers.body = "problem+json",
 * a problem type of draft-ietf-httpapi-ratelimit-headers (section 5).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ratelimit2/headers.h"

#include "base/buf.h"
#include "algo/algo_internal.h"
#include "decide/decide_internal.h"
#include "control/control_internal.h"

static long long
rl2_ceil_s(int64_t us)
{
    /* Divided first: no overflow whatever the algorithm reported. */
    return us <= 0 ? 0
                   : (long long)(us / RL2_US_PER_S + (us % RL2_US_PER_S != 0));
}

long long
rl2_retry_after_s(const rl2_verdict_t *v)
{
    if (v->outcome == RL2_OUTCOME_DENY && v->refusal != RL2_REFUSAL_LIMIT) {
        return v->refusal_retry_s > 0 ? v->refusal_retry_s : 1;
    }
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

/* Write v in decimal at w (at most 20 bytes); returns the end. */
static char *
rl2_put_i64(char *w, int64_t v)
{
    return w + rl2_i64_text(w, v);
}

static char *
rl2_put_mem(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

/* Is the limit's item the load-time string?  Not for a monthly quota
 * (a month's length varies) nor for a limit a runtime factor scaled (its
 * q is another: runtime.c leaves sf_policy NULL). */
static int
rl2_item_fixed(const rl2_limit_t *limit)
{
    return limit->sf_policy != NULL
           && !(limit->algo.algo == RL2_ALGO_QUOTA
                && limit->algo.period == RL2_PERIOD_MONTH);
}

/* The item of a limit whose item is not fixed, rendered now. */
static char *
rl2_put_item(char *p, const rl2_limit_t *limit, const rl2_clock_t *now)
{
    if (limit->sf_policy != NULL) {
        /* A monthly quota: the fixed part, then this month's w. */
        p = rl2_put_mem(p, limit->sf_policy, limit->sf_policy_len);
        p = rl2_put_mem(p, ";w=", 3);
        return rl2_put_i64(p, rl2_window_s(limit, now));
    }
    p = rl2_put_mem(p, limit->sf_name, limit->sf_name_len);
    p = rl2_put_mem(p, ";q=", 3);
    p = rl2_put_i64(p, limit->algo.limit);
    if (limit->algo.algo != RL2_ALGO_CONCURRENCY) {
        p = rl2_put_mem(p, ";w=", 3);
        p = rl2_put_i64(p, rl2_window_s(limit, now));
    }
    return p;
}

/* RateLimit-Policy: every visible layer's item, comma-separated.  The
 * common case, one layer whose item is fixed, is the load-time string
 * itself (no copy). */
static const char *
rl2_policy_value(const rl2_verdict_t *v, const rl2_clock_t *now, char **w)
{
    const rl2_limit_t *only = NULL;
    char              *start = *w, *p = start;
    size_t             visible = 0;

    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;

        if (!limit->unlimited && !v->layers[i].challenger) {
            visible++;
            only = limit;
        }
    }
    if (visible == 1 && rl2_item_fixed(only)) {
        return only->sf_policy;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;

        /* A challenger's limits are never announced. */
        if (limit->unlimited || v->layers[i].challenger) {
            continue;
        }
        if (p != start) {
            p = rl2_put_mem(p, ", ", 2);
        }
        p = rl2_item_fixed(limit)
                ? rl2_put_mem(p, limit->sf_policy, limit->sf_policy_len)
                : rl2_put_item(p, limit, now);
    }
    *p++ = '\0';
    *w = p;
    return start;
}

/* The key a layer was counted by, read from the log form of its client
 * that rl2_key_value (decide.c) writes: "user:", "key:", "hdr:",
 * "route:" and "global" name theirs; anything else is an address (or the
 * "unknown" text of a hop that is none: no prefix above, whose letters
 * are no hex digits), which is also what a user, API key or header limit
 * counts when the request has no such identity. */
static const char *
rl2_layer_scope(const rl2_layer_t *l)
{
    static const struct {
        const char *prefix, *name;
        size_t      len;
    } kinds[] = { { "user:", "user", 5 },
                  { "key:", "api_key", 4 },
                  { "hdr:", "header", 4 },
                  { "route:", "route", 6 },
                  { "global", "global", 6 } };

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strncmp(l->client, kinds[i].prefix, kinds[i].len) == 0) {
            return kinds[i].name;
        }
    }
    return "ip";
}

void
rl2_headers_legacy(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, int64_t *limit, int64_t *remaining,
                   int64_t *reset)
{
    const rl2_layer_t *l = &v->layers[v->shown];
    long long          t = rl2_reset_s(v);

    *limit = l->result.limit;
    *remaining = l->result.remaining;
    *reset = policy->reset_delta ? t : now->wall_us / RL2_US_PER_S + t;
}

/* Each number takes at most 20 bytes and its NUL; a monthly w as many. */
#define RL2_NUM_ROOM 21

size_t
rl2_headers_size(const rl2_verdict_t *v)
{
    /* The numbers, then X-RateLimit-Variant's room (rl2_headers_variant). */
    size_t need = 6 * RL2_NUM_ROOM + 16 + RL2_VARIANT_NAME_MAX + 1;

    /* Each item: its load-time length, a separator, and room for a w
     * rendered now (a month) or a q rendered now (a scaled copy keeps the
     * length of the item it was copied from). */
    for (size_t i = 0; i < v->n_layers; i++) {
        need += v->layers[i].limit->sf_policy_len + 2 + 3 + 2 * RL2_NUM_ROOM;
    }
    if (v->shown >= 0) {
        need += v->layers[v->shown].limit->sf_name_len;
    }
    if (v->factors_set) {
        need += RL2_FACTORS_TEXT_MAX;
    }
    return need;
}

/* X-RateLimit-Variant, when the policy's headers.variant asks for it
 * and a layer of the verdict is a variant's (variant.c). */
static char *
rl2_headers_variant(const rl2_verdict_t *v, char *w, rl2_header_set_fn set,
                    void *ctx)
{
    const char *name = rl2_verdict_variant(v);
    char       *value = w;

    if (name == NULL) {
        return w;
    }
    w = rl2_put_mem(w, name, strnlen(name, RL2_VARIANT_NAME_MAX));
    *w++ = '\0';
    set(ctx, "X-RateLimit-Variant", value);
    return w;
}

/* X-RateLimit-Factors, when the policy asks (headers.factors) and some
 * factor is on: each factor's value for this client.  A debugging aid an
 * operator turns on, so its snprintf is not on every response's path. */
static char *
rl2_headers_factors(const rl2_policy_t *policy, const rl2_verdict_t *v, char *w,
                    rl2_header_set_fn set, void *ctx)
{
    size_t n;

    if (!policy->header_factors || !v->factors_set) {
        return w;
    }
    n = rl2_factors_format(v->factor_ppm, w, RL2_FACTORS_TEXT_MAX);
    if (n == 0) {
        return w;
    }
    set(ctx, "X-RateLimit-Factors", w);
    return w + n + 1;
}

/* The fields the policy's headers group turns on (header_optional):
 * X-RateLimit-Scope, -Algorithm, -Factors, -Variant.  Out of line and
 * behind one test: most policies send none. */
static __attribute__((noinline)) char *
rl2_headers_optional(const rl2_policy_t *policy, const rl2_verdict_t *v,
                     char *w, rl2_header_set_fn set, void *ctx)
{
    const rl2_layer_t *l = &v->layers[v->shown];

    if (policy->header_scope) {
        set(ctx, "X-RateLimit-Scope", rl2_layer_scope(l));
    }
    if (policy->header_algorithm) {
        set(ctx, "X-RateLimit-Algorithm", rl2_algo_name(l->limit->algo.algo));
    }
    w = rl2_headers_factors(policy, v, w, set, ctx);
    if (policy->header_variant) {
        w = rl2_headers_variant(v, w, set, ctx);
    }
    return w;
}

/* Refused before any limit (a ban, the emergency switch): when to come
 * back is all there is to say.  Nothing for a verdict that shows no
 * layer otherwise. */
static size_t
rl2_headers_refusal(const rl2_verdict_t *v, char *buf, size_t len,
                    rl2_header_set_fn set, void *ctx)
{
    if (v->outcome != RL2_OUTCOME_DENY || v->refusal == RL2_REFUSAL_LIMIT) {
        return 0;
    }
    if (len < RL2_NUM_ROOM) {
        return RL2_NUM_ROOM;
    }
    *rl2_put_i64(buf, rl2_retry_after_s(v)) = '\0';
    set(ctx, "Retry-After", buf);
    return RL2_NUM_ROOM;
}

/* One value after another in buf, each NUL-terminated; the room was
 * checked against rl2_headers_size() first, so nothing here can run past
 * the end.  This runs on every response: no snprintf, no strlen. */
size_t
rl2_headers_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, char *buf, size_t len,
                   rl2_header_set_fn set, void *ctx)
{
    const rl2_layer_t *l;
    char              *w = buf, *value;
    size_t             need;
    long long          t;

    if (v->shown < 0) {
        return rl2_headers_refusal(v, buf, len, set, ctx);
    }
    if (len < (need = rl2_headers_size(v))) {
        return need;
    }
    l = &v->layers[v->shown];
    t = rl2_reset_s(v);
    set(ctx, "RateLimit-Policy", rl2_policy_value(v, now, &w));

    value = w;
    w = rl2_put_mem(w, l->limit->sf_name, l->limit->sf_name_len);
    w = rl2_put_mem(w, ";r=", 3);
    w = rl2_put_i64(w, l->result.remaining);
    w = rl2_put_mem(w, ";t=", 3);
    w = rl2_put_i64(w, t);
    *w++ = '\0';
    set(ctx, "RateLimit", value);

    if (policy->header_legacy) {
        int64_t limit, remaining, reset;

        rl2_headers_legacy(policy, v, now, &limit, &remaining, &reset);
        value = w;
        w = rl2_put_i64(w, limit);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Limit", value);
        value = w;
        w = rl2_put_i64(w, remaining);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Remaining", value);
        value = w;
        w = rl2_put_i64(w, reset);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Reset", value);
    }
    if (__builtin_expect(policy->header_optional, 0)) {
        w = rl2_headers_optional(policy, v, w, set, ctx);
    }
    if (v->outcome == RL2_OUTCOME_DENY) {
        value = w;
        w = rl2_put_i64(w, rl2_retry_after_s(v));
        *w = '\0';
        set(ctx, "Retry-After", value);
    }
    return need;
}

/* ---- the body ---- */

/* Append formatted text at pos; returns the position after it, past len
 * when it did not fit (the caller reports the length it needed). */
static size_t
rl2_body_add(char *buf, size_t len, size_t pos, const char *fmt, ...)
{
    va_list ap;
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(pos < len ? buf + pos : NULL, pos < len ? len - pos : 0, fmt,
                  ap);
    va_end(ap);
    return n < 0 ? pos : pos + (size_t)n;
}

/* Append s to buf as the inside of a JSON string. */
static size_t
rl2_json_escape(char *buf, size_t len, size_t pos, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char          tmp[8];
        int           n;

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

/* ,"name":"value", the value escaped. */
static size_t
rl2_json_field(char *buf, size_t len, size_t pos, const char *name,
               const char *value)
{
    pos = rl2_body_add(buf, len, pos, ",\"%s\":\"", name);
    pos = rl2_json_escape(buf, len, pos, value);
    return rl2_body_add(buf, len, pos, "\"");
}

/* End the body: NUL-terminated whatever fitted. */
static size_t
rl2_body_end(char *buf, size_t len, size_t pos)
{
    pos = rl2_body_add(buf, len, pos, "}\n");
    buf[pos < len ? pos : len - 1] = '\0';
    return pos;
}

/* The units in use under the layer's limit when it answered, in the
 * limit's units: its quota less what was left.  That is the requests (or
 * units) counted in the window for the window algorithms (sliding_window:
 * its weighted estimate), the tokens spent for token_bucket, the level
 * of a leaky_bucket, the requests in flight for concurrency, and the
 * units of the calendar period for quota. */
static long long
rl2_layer_usage(const rl2_layer_t *l)
{
    int64_t used;

    /* A store's answer is trusted only this far: no overflow. */
    if (__builtin_sub_overflow(l->result.limit, l->result.remaining, &used)) {
        return l->result.remaining < 0 ? INT64_MAX : 0;
    }
    return used > 0 ? (long long)used : 0;
}

/* `t` seconds from now as ISO 8601 UTC ("2026-12-06T12:00:05Z"). */
static void
rl2_iso_time(const rl2_clock_t *now, long long t, char *out, size_t size)
{
    time_t    s = (time_t)(now->wall_us / RL2_US_PER_S + t);
    struct tm tm;

    if (gmtime_r(&s, &tm) == NULL
        || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        /* A year no struct tm holds: no time a client could wait for. */
        snprintf(out, size, "9999-12-31T23:59:59Z");
    }
}

/* The message a person reads: "message" of our JSON, "detail" of a
 * problem. */
static void
rl2_body_message(const rl2_verdict_t *v, long long retry, char *msg,
                 size_t size)
{
    const char *s = retry == 1 ? "" : "s";

    switch (v->refusal) {
    case RL2_REFUSAL_BAN:
        snprintf(msg, size, "This client is banned. Retry in %lld second%s.",
                 retry, s);
        break;
    case RL2_REFUSAL_EMERGENCY:
        snprintf(msg, size,
                 "The service admits listed clients only for now. "
                 "Retry in %lld second%s.",
                 retry, s);
        break;
    default:
        snprintf(msg, size,
                 "Too many requests: the limit \"%s\" is "
                 "used up. Retry in %lld second%s.",
                 v->shown >= 0 ? v->layers[v->shown].limit->name : "", retry,
                 s);
    }
}

/* The body of a refusal that came before any limit. */
static size_t
rl2_body_refusal(const rl2_verdict_t *v, long long retry, char *buf, size_t len)
{
    char   msg[160];
    size_t pos;

    rl2_body_message(v, retry, msg, sizeof(msg));
    pos =
        rl2_body_add(buf, len, 0, "{\"error\":\"%s\"",
                     v->refusal == RL2_REFUSAL_BAN ? "banned" : "unavailable");
    pos = rl2_json_field(buf, len, pos, "message", msg);
    pos = rl2_body_add(buf, len, pos, ",\"retry_after\":%lld", retry);
    return rl2_body_end(buf, len, pos);
}

static const char *
rl2_body_upgrade_url(const rl2_policy_t *policy, const rl2_verdict_t *v)
{
    return v->tier >= 0 && (size_t)v->tier < policy->n_tiers
               ? policy->tiers[v->tier].upgrade_url
               : NULL;
}

/* Our JSON body of a limit's refusal. */
static size_t
rl2_body_json(const rl2_policy_t *policy, const rl2_verdict_t *v,
              const rl2_clock_t *now, char *buf, size_t len)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    long long          retry = rl2_retry_after_s(v), t = l ? rl2_reset_s(v) : 0;
    const char        *url = rl2_body_upgrade_url(policy, v);
    char               msg[256], when[32];
    size_t             pos;

    if (v->refusal != RL2_REFUSAL_LIMIT) {
        return rl2_body_refusal(v, retry, buf, len);
    }
    rl2_body_message(v, retry, msg, sizeof(msg));
    rl2_iso_time(now, t, when, sizeof(when));
    pos = rl2_body_add(buf, len, 0, "{\"error\":\"too_many_requests\"");
    pos = rl2_json_field(buf, len, pos, "message", msg);
    pos = rl2_json_field(buf, len, pos, "rule", l ? l->rule->name : "");
    pos = rl2_body_add(
        buf, len, pos,
        ",\"limit\":%lld,\"remaining\":%lld,\"current_usage\":%lld,"
        "\"reset\":%lld,\"reset_time\":\"%s\",\"retry_after\":%lld",
        l ? (long long)l->result.limit : 0LL,
        l ? (long long)l->result.remaining : 0LL, l ? rl2_layer_usage(l) : 0LL,
        policy->reset_delta ? t : (long long)(now->wall_us / RL2_US_PER_S) + t,
        when, retry);
    if (url != NULL) {
        pos = rl2_json_field(buf, len, pos, "upgrade_url", url);
    }
    return rl2_body_end(buf, len, pos);
}

/* "violated-policies": the names, as RateLimit-Policy carries them, of
 * the limits that refused; a ban or the emergency switch refused before
 * any limit, and names none. */
static size_t
rl2_body_violated(const rl2_verdict_t *v, char *buf, size_t len, size_t pos)
{
    const char *sep = "";

    pos = rl2_body_add(buf, len, pos, ",\"violated-policies\":[");
    for (size_t i = 0; v->refusal == RL2_REFUSAL_LIMIT && i < v->n_layers;
         i++) {
        const rl2_layer_t *l = &v->layers[i];

        if (!l->refused || l->dry_run || l->challenger || l->limit->unlimited) {
            continue;
        }
        pos = rl2_body_add(buf, len, pos, "%s\"", sep);
        pos = rl2_json_escape(buf, len, pos, l->limit->name);
        pos = rl2_body_add(buf, len, pos, "\"");
        sep = ",";
    }
    return rl2_body_add(buf, len, pos, "]");
}

/* A problem (RFC 9457) of the type the draft registers for the refusal:
 * quota-exceeded for a limit, abnormal-usage-detected for a ban,
 * temporary-reduced-capacity for the emergency switch's 503.  Its title
 * is the one the draft registers; the members are the draft's, no more. */
static size_t
rl2_body_problem(const rl2_policy_t *policy, const rl2_verdict_t *v, char *buf,
                 size_t len)
{
    static const char *const types[][2] = {
        { "quota-exceeded", "Quota Exceeded" },
        { "abnormal-usage-detected", "Abnormal Usage Detected" },
        { "temporary-reduced-capacity", "Temporary Reduced Capacity" },
    };
    unsigned which = v->refusal <= RL2_REFUSAL_EMERGENCY ? v->refusal : 0;
    int      status = v->refusal == RL2_REFUSAL_BAN         ? policy->ban_status
                      : v->refusal == RL2_REFUSAL_EMERGENCY ? 503
                                                            : 429;
    char     msg[256];
    size_t   pos;

    rl2_body_message(v, rl2_retry_after_s(v), msg, sizeof(msg));
    pos = rl2_body_add(buf, len, 0,
                       "{\"type\":\"https://iana.org/assignments/"
                       "http-problem-types#%s\",\"title\":\"%s\","
                       "\"status\":%d",
                       types[which][0], types[which][1], status);
    pos = rl2_json_field(buf, len, pos, "detail", msg);
    pos = rl2_body_violated(v, buf, len, pos);
    return rl2_body_end(buf, len, pos);
}

const char *
rl2_body_type(const rl2_policy_t *policy)
{
    return policy->body_problem ? "application/problem+json"
                                : "application/json";
}

size_t
rl2_body_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                const rl2_clock_t *now, char *buf, size_t len)
{
    if (len == 0) {
        return 0;
    }
    return policy->body_problem ? rl2_body_problem(policy, v, buf, len)
                                : rl2_body_json(policy, v, now, buf, len);
}
