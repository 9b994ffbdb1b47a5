/*
 * mod_ratelimit2_fields.c -- where the rate-limit fields of a response
 * go.
 *
 * A verdict is rendered once, when it is final, into the request's state
 * (rl2_fields_render).  rl2_fields_place puts the fields in a table,
 * nothing else does, and each moment that calls it picks the table.  A
 * refusal puts them on r->err_headers_out.  An allowed request gets them
 * in fixups, once its handler is known: on r->headers_out, the
 * response's own table, unless the response will come from a proxied
 * server (mod_proxy_http replaces r->headers_out with the backend's
 * fields), in which case on r->err_headers_out, which every response
 * keeps.  Why not always err_headers_out: Apache then merges the two
 * tables for every response, a few hundred instructions, more than the
 * rest of a decision's bookkeeping.  An error response starts over with
 * an empty r->headers_out (ap_send_error_response): the
 * insert_error_filter hook moves the fields to r->err_headers_out,
 * except for 304 and 204, which keep r->headers_out.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"

#include "apr_tables.h"

#include "ratelimit2/headers.h"

#include "mod_ratelimit2.h"

static void
rl2_field_collect(void *ctx, const char *name, const char *value)
{
    rl2_fields_t *f = ctx;

    if (f->n < RL2_FIELDS_MAX) {
        f->name[f->n] = name;
        f->value[f->n] = value;
        f->n++;
    }
}

/* The verdict must show a layer (v->shown >= 0).  Returns f, or NULL
 * when the policy sends no field. */
rl2_fields_t *
rl2_fields_render(request_rec *r, const rl2_policy_t *policy,
                  const rl2_verdict_t *v, const rl2_clock_t *now,
                  rl2_fields_t *f, char *buf, apr_size_t len)
{
    apr_size_t need;

    f->n = 0;
    f->table = RL2_FIELDS_PENDING;
    need = rl2_headers_render(policy, v, now, buf, len, rl2_field_collect, f);
    if (need > len) {
        rl2_headers_render(policy, v, now, apr_palloc(r->pool, need), need,
                           rl2_field_collect, f);
    }
    return f->n > 0 ? f : NULL;
}

/* Names are constants and values live in the request pool: added, not
 * copied. */
static void
rl2_fields_add(const rl2_fields_t *f, apr_table_t *table)
{
    for (int i = 0; i < f->n; i++) {
        apr_table_addn(table, f->name[i], f->value[i]);
    }
}

/* Will the response's fields come from another server? */
static int
rl2_proxied(const request_rec *r)
{
    return r->proxyreq != PROXYREQ_NONE
           || (r->handler != NULL && r->handler[0] == 'p'
               && strncmp(r->handler, "proxy:", 6) == 0);
}

/* The table the fields belong in at `at`. */
static rl2_fields_table_t
rl2_fields_table(const request_rec *r, const rl2_fields_t *f,
                 rl2_fields_at_t at)
{
    if (at == RL2_FIELDS_AT_FIXUPS) {
        return rl2_proxied(r) ? RL2_FIELDS_ERR : RL2_FIELDS_OUT;
    }
    /* A 429 or an error response; but 304 and 204 are sent from
     * r->headers_out as it stands. */
    if (at == RL2_FIELDS_AT_ERROR && f->table == RL2_FIELDS_OUT
        && AP_STATUS_IS_HEADER_ONLY(r->status)) {
        return RL2_FIELDS_OUT;
    }
    return RL2_FIELDS_ERR;
}

/* Fields in r->err_headers_out stay there: every response sends it. */
void
rl2_fields_place(request_rec *r, rl2_fields_t *f, rl2_fields_at_t at)
{
    rl2_fields_table_t to;

    if (f == NULL || f->table == RL2_FIELDS_ERR) {
        return;
    }
    to = rl2_fields_table(r, f, at);
    if (to != f->table) {
        rl2_fields_add(f, to == RL2_FIELDS_OUT ? r->headers_out
                                               : r->err_headers_out);
        f->table = to;
    }
}
