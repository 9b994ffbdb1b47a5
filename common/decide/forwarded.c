/*
 * forwarded.c -- the Forwarded header (RFC 7239): elements separated by
 * commas, each a list of name=value pairs separated by semicolons, values
 * tokens or quoted strings (which may hold commas).  Only the for= node of
 * each element matters to a rate limiter; what cannot be read is kept as
 * an empty hop, so the walk in identity.c stops there instead of guessing.
 */
#include <ctype.h>
#include <string.h>

#include "forwarded.h"

static const char *
rl2_fwd_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Past a quoted string starting at p (on its opening quote); *closed
 * says whether it was.  A comma ends it too, closed or not: no node a
 * proxy writes holds one, and a client's own `for="x` before the element
 * its proxy appends must not swallow that element (the walk would then
 * stop at the proxy, and every client share its address). */
static const char *
rl2_fwd_quoted_end(const char *p, int *closed)
{
    for (p++; *p != '\0' && *p != '"' && *p != ','; p++) {
        if (*p == '\\' && p[1] != '\0' && p[1] != ',') {
            p++;
        }
    }
    *closed = *p == '"';
    return *closed ? p + 1 : p;
}

static const char *
rl2_fwd_skip_quoted(const char *p)
{
    int closed;

    return rl2_fwd_quoted_end(p, &closed);
}

/* A token or quoted string at p into val (unquoted, unescaped); *bad when
 * it does not fit or a quote is not closed.  Returns what follows it. */
static const char *
rl2_fwd_read_value(const char *p, char *val, size_t len, int *bad)
{
    size_t n = 0;

    if (*p == '"') {
        int         closed;
        const char *end = rl2_fwd_quoted_end(p, &closed);

        if (!closed) {
            /* Not closed: bad, and the element ends at the next comma. */
            *bad = 1;
            val[0] = '\0';
            return end;
        }
        for (p++; p < end - 1; p++) {
            if (*p == '\\' && p + 1 < end - 1) {
                p++;
            }
            if (n + 1 < len) {
                val[n++] = *p;
            }
            else {
                *bad = 1;
            }
        }
        p = end;
    }
    else {
        for (; *p != '\0' && strchr(";, \t\"", *p) == NULL; p++) {
            if (n + 1 < len) {
                val[n++] = *p;
            }
            else {
                *bad = 1;
            }
        }
    }
    val[n] = '\0';
    return p;
}

int
rl2_forwarded_node(const char *val, char *node, size_t len)
{
    const char *s = val, *e;
    size_t      n;

    if (*s == '[') {
        s++;
        e = strchr(s, ']');
        if (e == NULL || (e[1] != '\0' && e[1] != ':')) {
            return -1;
        }
    }
    else {
        e = strchr(s, ':');
        if (e == NULL || strchr(e + 1, ':') != NULL) {
            e = s + strlen(s); /* no port, or an unbracketed IPv6 */
        }
    }
    n = (size_t)(e - s);
    if (n >= len) {
        return -1;
    }
    memcpy(node, s, n);
    node[n] = '\0';
    return 0;
}

/* One element at p; its for= node into node ("" when none or bad).
 * Returns the start of the next element, or the end of the string. */
static const char *
rl2_fwd_parse_element(const char *p, char *node)
{
    int bad = 0, seen_for = 0;

    node[0] = '\0';
    for (;;) {
        char   name[8], val[RL2_FWD_HOP_MAX];
        size_t nl = 0;

        p = rl2_fwd_skip_ows(p);
        for (; *p != '\0' && strchr("=;,", *p) == NULL; p++) {
            if (nl + 1 < sizeof(name)) {
                name[nl++] = (char)tolower((unsigned char)*p);
            }
        }
        name[nl] = '\0';
        if (*p == '=') {
            int is_for = strcmp(name, "for") == 0, vbad = 0;

            p = rl2_fwd_read_value(p + 1, val, sizeof(val), &vbad);
            if (is_for) {
                /* Two for= in one element: which one is meant? */
                bad |= vbad || seen_for
                       || rl2_forwarded_node(val, node, RL2_FWD_HOP_MAX) != 0;
                seen_for = 1;
            }
            p = rl2_fwd_skip_ows(p);
        }
        else {
            bad = 1;
        }
        if (*p == ';') {
            p++;
            continue;
        }
        if (*p != ',' && *p != '\0') {
            bad = 1;
            while (*p != '\0' && *p != ',') {
                p = *p == '"' ? rl2_fwd_skip_quoted(p) : p + 1;
            }
        }
        break;
    }
    if (bad) {
        node[0] = '\0';
    }
    return *p == ',' ? p + 1 : p;
}

void
rl2_forwarded_parse(const char *value, rl2_fwd_hops_t *out)
{
    size_t count = 0;

    out->n = 0;
    if (value == NULL) {
        return;
    }
    /* Keep the right-most RL2_FWD_HOPS_MAX in a ring, then put them in
     * order. */
    for (const char *p = value; *p != '\0';) {
        p = rl2_fwd_parse_element(p, out->hop[count % RL2_FWD_HOPS_MAX]);
        count++;
    }
    if (count > RL2_FWD_HOPS_MAX) {
        char   tmp[RL2_FWD_HOPS_MAX][RL2_FWD_HOP_MAX];
        size_t first = count % RL2_FWD_HOPS_MAX;

        for (size_t i = 0; i < RL2_FWD_HOPS_MAX; i++) {
            memcpy(tmp[i], out->hop[(first + i) % RL2_FWD_HOPS_MAX],
                   RL2_FWD_HOP_MAX);
        }
        memcpy(out->hop, tmp, sizeof(tmp));
        count = RL2_FWD_HOPS_MAX;
    }
    out->n = count;
}
