/*
 * response.c -- a verdict as a CGI-style response, the form FastCGI
 * applications and CGI scripts both answer in: a Status line, header
 * lines, a blank line, an optional body.  Also the RATELIMIT_* values an
 * allowed request carries on to the application.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fcgi.h"

static void
rl2_field_add(void *ctx, const char *name, const char *value)
{
    rl2_cgi_fields_t *out = ctx;

    if (out->n < RL2_CGI_MAX_FIELDS) {
        out->f[out->n].name = name;
        out->f[out->n].value = value;
        out->n++;
    }
}

/* v in decimal at out (room for 20 digits, a sign and the NUL), without
 * snprintf's hundreds of instructions. */
static void
rl2_cgi_number(char out[24], int64_t v)
{
    char     tmp[24];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t   n = 0, at = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0) {
        out[at++] = '-';
    }
    while (n > 0) {
        out[at++] = tmp[--n];
    }
    out[at] = '\0';
}

void
rl2_cgi_fields(const rl2_policy_t *policy, const rl2_verdict_t *v,
               const rl2_clock_t *now, rl2_cgi_fields_t *out)
{
    int64_t num[3];

    out->n = 0;
    /* A refusal before any limit (a runtime ban, the emergency switch)
     * shows no limit, but says when to come back: Retry-After alone. */
    if (v->shown >= 0 || v->outcome == RL2_OUTCOME_DENY) {
        rl2_headers_render(policy, v, now, out->buf, sizeof(out->buf),
                           rl2_field_add, out);
    }
    if (v->shown >= 0) {
        rl2_headers_legacy(policy, v, now, &num[0], &num[1], &num[2]);
        for (size_t i = 0; i < 3; i++) {
            rl2_cgi_number(out->numbers[i], num[i]);
        }
    }
}

/* The values are the ones X-RateLimit-* carries when the policy sends
 * them, so a script and its client never disagree (reset follows the
 * policy's epoch or delta setting). */
size_t
rl2_cgi_vars(const rl2_policy_t *policy, const rl2_verdict_t *v,
             const rl2_cgi_fields_t *fields, rl2_field_t out[5])
{
    static const char *const names[3] = { "LIMIT", "REMAINING", "RESET" };
    size_t                   n = 0;

    if (v->shown < 0) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        out[n++] = (rl2_field_t){ names[i], fields->numbers[i] };
    }
    out[n++] = (rl2_field_t){ "RULE", v->layers[v->shown].rule->name };
    if (v->tier >= 0 && (size_t)v->tier < policy->n_tiers) {
        out[n++] = (rl2_field_t){ "TIER", policy->tiers[v->tier].name };
    }
    return n;
}

/* Appends text; remembers overflow so the caller checks once.  Plain
 * copies, not printf: an answer is a dozen strings put end to end, and
 * vsnprintf cost the daemon almost a third of its instructions per
 * request. */
typedef struct {
    char  *p;
    size_t len;
    size_t cap;
    int    overflow;
} rl2_text_t;

/* The strings up to a NULL, end to end. */
static void rl2_text_add(rl2_text_t *t, ...) __attribute__((sentinel));

static void
rl2_text_add(rl2_text_t *t, ...)
{
    va_list     ap;
    const char *s;
    size_t      n;

    if (t->overflow) {
        return;
    }
    va_start(ap, t);
    while ((s = va_arg(ap, const char *)) != NULL) {
        n = strlen(s);
        if (n >= t->cap - t->len) {
            t->overflow = 1;
            break;
        }
        memcpy(t->p + t->len, s, n);
        t->len += n;
    }
    va_end(ap);
    t->p[t->len] = '\0';
}

size_t
rl2_cgi_response(char *buf, size_t len, const char *status,
                 const rl2_field_t *vars, size_t n_vars,
                 const rl2_cgi_fields_t *fields, const char *content_type,
                 const char *body)
{
    rl2_text_t t = { buf, 0, len, len == 0 };

    rl2_text_add(&t, "Status: ", status, "\r\n", NULL);
    for (size_t i = 0; i < n_vars; i++) {
        rl2_text_add(&t, "Variable-RATELIMIT_", vars[i].name, ": ",
                     vars[i].value, "\r\n", NULL);
    }
    /* Retry-After first: a client's most urgent field, and the one a
     * truncated answer must not lose. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; fields != NULL && i < fields->n; i++) {
            if ((strcmp(fields->f[i].name, "Retry-After") == 0)
                == (pass == 0)) {
                rl2_text_add(&t, fields->f[i].name, ": ", fields->f[i].value,
                             "\r\n", NULL);
            }
        }
    }
    if (body != NULL) {
        rl2_text_add(&t, "Content-Type: ", content_type, "\r\n\r\n", body,
                     NULL);
    }
    else {
        rl2_text_add(&t, "\r\n", NULL);
    }
    return t.overflow ? 0 : t.len;
}

const char *
rl2_cgi_refusal_status(const rl2_policy_t *policy, const rl2_verdict_t *v,
                       int responder)
{
    if (responder) {
        return "403 Forbidden";
    }
    switch (v->refusal) {
    case RL2_REFUSAL_BAN:
        return policy->ban_status == 403 ? "403 Forbidden"
                                         : "429 Too Many Requests";
    case RL2_REFUSAL_EMERGENCY:
        return "503 Service Unavailable";
    default:
        return "429 Too Many Requests";
    }
}

size_t
rl2_cgi_deny(char *buf, size_t len, const char *status, int responder,
             const rl2_policy_t *policy, const rl2_verdict_t *v,
             const rl2_clock_t *now)
{
    rl2_cgi_fields_t fields;
    char             body[RL2_BODY_MAX];

    rl2_cgi_fields(policy, v, now, &fields);
    /* The responder's 403 is nginx's to turn into what the client gets:
     * a limit's 429, a ban's ban_status, the emergency's 503. */
    if (responder && fields.n < RL2_CGI_MAX_FIELDS) {
        fields.f[fields.n++] =
            (rl2_field_t){ "X-RateLimit2-Status",
                           rl2_cgi_refusal_status(policy, v, 0) };
    }
    rl2_body_render(policy, v, now, body, sizeof(body));
    return rl2_cgi_response(buf, len, status, NULL, 0, &fields,
                            rl2_body_type(policy), body);
}

static const char *
rl2_reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

size_t
rl2_cgi_error(char *buf, size_t len, int status, const char *text)
{
    char line[48], body[256];

    snprintf(line, sizeof(line), "%d %s", status, rl2_reason_phrase(status));
    snprintf(body, sizeof(body), "%s\n", text);
    return rl2_cgi_response(buf, len, line, NULL, 0, NULL, "text/plain", body);
}

size_t
rl2_cgi_unavailable(char *buf, size_t len, int64_t retry_after_s)
{
    rl2_cgi_fields_t fields;

    snprintf(fields.buf, sizeof(fields.buf), "%lld",
             (long long)(retry_after_s > 0 ? retry_after_s : 1));
    fields.f[0] = (rl2_field_t){ "Retry-After", fields.buf };
    fields.n = 1;
    return rl2_cgi_response(buf, len, "503 Service Unavailable", NULL, 0,
                            &fields, "text/plain",
                            "rate limit store unavailable; retry later\n");
}
