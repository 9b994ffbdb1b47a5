/*
 * match.c -- which rules a request falls under: path normalisation, path
 * and host globs, method sets.
 *
 * Rules match the normalised path, so "/api//v2/./x", "/api/v2/y/../x",
 * "/api/%76%32/x", "/api%2Fv2/x", "/api/v2;jsessionid=1/x", "/API/v2/x"
 * and "/api/v2/x/" all meet the rule written for "/api/v2/x": a client
 * cannot step around a limit by spelling its path differently.  A path
 * is decoded exactly once: from the form the front end received (the
 * raw REQUEST_URI of a FastCGI server), or not at all when the front end
 * has decoded it already (Apache's r->uri): a second decoding would read
 * "%252e%252e" as "..", which no server does.
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/policy.h"
#include "base/base_internal.h"
#include "policy/policy_internal.h"

#include "policy_internal.h"

/* The length of the separator at p, or 0: '/', and in a path not yet
 * decoded "%2F" too, since nginx and the frameworks behind it decode it
 * before they route ("/x/..%2Fauth/login" is "/auth/login" to them). */
static size_t
rl2_path_sep(const char *p, int decode)
{
    if (p[0] == '/') {
        return 1;
    }
    return decode && p[0] == '%' && rl2_pct_byte(p, 3) == '/' ? 3 : 0;
}

/* Drop the last segment of out[0..*len), never going above "/". */
static void
rl2_path_pop(char *out, size_t *len)
{
    while (*len > 1 && out[*len - 1] != '/') {
        (*len)--;
    }
    if (*len > 1) {
        (*len)--;
    }
}

/* Is seg[0..n) "." or ".."? */
static int
rl2_dots(const char *seg, long n)
{
    return (n == 1 && seg[0] == '.')
                   || (n == 2 && seg[0] == '.' && seg[1] == '.')
               ? (int)n
               : 0;
}

/* Copy the next segment of path (after any run of separators) into
 * seg, decoding every escape but %00 when `decode`, and leaving out a
 * ";parameter" (Tomcat and other servlet containers route "/login;x" and
 * "/x/..;/admin" as "/login" and "/admin"); returns the segment length or
 * -1 on overflow. */
static long
rl2_path_segment(const char **pp, char *seg, size_t segmax, int decode)
{
    const char *p = *pp;
    size_t      n = 0, s;
    int         param = 0, d;

    while ((s = rl2_path_sep(p, decode)) != 0) {
        p += s;
    }
    while (*p != '\0' && *p != '?' && *p != '#' && !rl2_path_sep(p, decode)) {
        int c = (unsigned char)*p;

        if (c == ';') {
            param = 1;
        }
        else if (decode && c == '%'
                 && (d = rl2_pct_byte(p, 3)) > 0) { /* %00 kept */
            c = d;
            p += 2;
        }
        if (!param) {
            if (n + 1 >= segmax) {
                return -1;
            }
            seg[n++] = (char)c;
        }
        p++;
    }
    seg[n] = '\0';
    *pp = p;
    /* "..;x" is ".." to a servlet container and a plain name to nginx,
     * Apache and PHP: two servers would route the path two ways, and a
     * rule could meet only the one the limiter did not take. */
    if (param && rl2_dots(seg, (long)n)) {
        return -2;
    }
    return (long)n;
}

/* Segments are decoded straight into out: the result is never longer
 * than the input plus a slash, so a caller that sizes out from the input
 * never sees a failure (a failure that mapped a path to "/" would let a
 * long path slip past the rules written for it). */
int
rl2_path_normalise(const char *path, char *out, size_t outlen, int decode)
{
    size_t len = 1;
    int    trailing = 0;

    if (path == NULL || path[0] != '/' || outlen < 2) {
        return -1;
    }
    out[0] = '/';
    while (rl2_path_sep(path, decode)) {
        /* A kept segment goes after a separating slash. */
        size_t start = len > 1 ? len + 1 : len;
        long   n;
        int    dots;

        if (start >= outlen) {
            return -1;
        }
        n = rl2_path_segment(&path, out + start, outlen - start, decode);
        if (n < 0) {
            return (int)n;
        }
        dots = rl2_dots(out + start, n);
        trailing = (n == 0 || dots != 0);
        if (dots == 2) {
            rl2_path_pop(out, &len);
        }
        if (n == 0 || dots != 0) {
            continue;
        }
        if (len > 1) {
            out[len] = '/';
        }
        len = start + (size_t)n;
    }
    /* Keep a trailing slash: "/projects/" and "/projects" differ. */
    if (trailing && len > 1 && len + 1 < outlen) {
        out[len++] = '/';
    }
    out[len] = '\0';
    return 0;
}

int
rl2_glob_match(const char *glob, const char *text)
{
    while (*glob != '\0') {
        if (glob[0] == '*' && glob[1] == '*') {
            glob += 2;
            for (const char *t = text;; t++) {
                if (rl2_glob_match(glob, t)) {
                    return 1;
                }
                if (*t == '\0') {
                    return 0;
                }
            }
        }
        if (*glob == '*') {
            glob++;
            for (const char *t = text;; t++) {
                if (rl2_glob_match(glob, t)) {
                    return 1;
                }
                if (*t == '\0' || *t == '/') {
                    return 0;
                }
            }
        }
        if (*text == '\0') {
            /* One trailing slash is optional on either side: most
             * applications serve "/auth/login/" as "/auth/login". */
            return glob[0] == '/' && glob[1] == '\0';
        }
        if ((*glob != '?' && rl2_ascii_fold(*glob) != rl2_ascii_fold(*text))
            || (*glob == '?' && *text == '/')) {
            return 0;
        }
        glob++;
        text++;
    }
    return *text == '\0' || (text[0] == '/' && text[1] == '\0');
}

/* The length of the name in a Host value as servers route on it: without
 * the port ("api.example.com:8443", "[2001:db8::1]:443") and without
 * trailing dots ("api.example.com." is the same name, fully qualified).
 * Case is left to the glob, which folds ASCII case. */
static size_t
rl2_host_name_len(const char *host)
{
    size_t n;

    if (host[0] == '[') {
        const char *close = strchr(host, ']');

        n = close != NULL ? (size_t)(close - host) + 1 : strlen(host);
    }
    else {
        n = strcspn(host, ":");
    }
    while (n > 1 && host[n - 1] == '.') {
        n--;
    }
    return n;
}

/* The longest name DNS has (253 bytes, 255 with brackets for an IPv6
 * literal).  A longer Host names no host a rule could be written for
 * (Apache serves it from the default virtual host), and matching it
 * against a glob of several '*' would cost time that grows with its
 * length: it meets no host glob. */
#define RL2_HOST_NAME_MAX 255

static int
rl2_host_match(const char *glob, const char *host)
{
    char   name[RL2_HOST_NAME_MAX + 1];
    size_t n = rl2_host_name_len(host);

    if (n > RL2_HOST_NAME_MAX) {
        return 0;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    return rl2_glob_match(glob, name);
}

/* Is glob a script path: written without a wildcard, its last segment
 * naming a file ("/wp-login.php", "/cgi-bin/app.cgi")?  The server runs
 * it for "/wp-login.php/x" too, with "/x" as PATH_INFO. */
static int
rl2_glob_names_script(const char *glob)
{
    const char *last = strrchr(glob, '/');

    return last != NULL && strchr(last, '.') != NULL
           && strpbrk(glob, "*?") == NULL;
}

/* Does path name the script `glob` with a PATH_INFO after it?  The
 * rule meets both. */
static int
rl2_path_info_match(const char *glob, const char *path)
{
    size_t n = strlen(glob);

    if (!rl2_glob_names_script(glob)) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (rl2_ascii_fold((unsigned char)glob[i])
            != rl2_ascii_fold((unsigned char)path[i])) {
            return 0;
        }
    }
    return path[n] == '/';
}

int
rl2_rule_match(const rl2_rule_t *rule, unsigned method_bit, const char *path,
               const char *host)
{
    size_t i;

    if (rule->methods != 0 && (rule->methods & method_bit) == 0) {
        return 0;
    }
    if (rule->n_hosts != 0) {
        if (host == NULL) {
            return 0;
        }
        for (i = 0; i < rule->n_hosts; i++) {
            if (rl2_host_match(rule->hosts[i], host)) {
                break;
            }
        }
        if (i == rule->n_hosts) {
            return 0;
        }
    }
    if (rule->n_paths == 0) {
        return 1;
    }
    for (i = 0; i < rule->n_paths; i++) {
        if (rl2_glob_match(rule->paths[i], path)
            || (!rule->exact && rl2_path_info_match(rule->paths[i], path))) {
            return 1;
        }
    }
    return 0;
}

/* ---- may two rules meet one request? (decide/bound.c) ----
 *
 * The loader adds up the limits of the rules one request may meet, so a
 * "no" here must be a proof: whenever a case is not worked out exactly,
 * the answer is "they may". */

/* Bytes of s[0..n) before its trailing slashes. */
static size_t
rl2_unslashed_len(const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == '/') {
        n--;
    }
    return n;
}

static int
rl2_fold_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rl2_ascii_fold((unsigned char)a[i])
            != rl2_ascii_fold((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

static int
rl2_glob_is_literal(const char *glob)
{
    return strpbrk(glob, "*?") == NULL;
}

/* A literal glob matches, of the texts a rule ever sees (normalised
 * paths, which end in one '/' at most, and host names), only itself
 * without its trailing slashes and that with one: two literals share a
 * text only when those agree. */
static int
rl2_literals_meet(const char *a, const char *b)
{
    size_t na = rl2_unslashed_len(a, strlen(a));

    return na == rl2_unslashed_len(b, strlen(b)) && rl2_fold_eq(a, b, na);
}

/* The longest literal tried as a text against a glob; a longer one is
 * taken to meet it (no rule is written that long). */
#define RL2_MEET_TEXT_MAX 1024

/* Does glob g match one of the texts literal l matches (above)? */
static int
rl2_glob_meets_literal(const char *g, const char *l)
{
    char   text[RL2_MEET_TEXT_MAX];
    size_t n = rl2_unslashed_len(l, strlen(l));

    if (n + 2 > sizeof(text)) {
        return 1;
    }
    memcpy(text, l, n);
    text[n] = '\0';
    if (rl2_glob_match(g, text)) {
        return 1;
    }
    text[n] = '/';
    text[n + 1] = '\0';
    return rl2_glob_match(g, text);
}

/* What follows the last wildcard of glob. */
static const char *
rl2_glob_tail(const char *glob)
{
    const char *tail = glob;

    for (const char *c = glob; *c != '\0'; c++) {
        if (*c == '*' || *c == '?') {
            tail = c + 1;
        }
    }
    return tail;
}

/* Two globs with wildcards: a text either matches starts with the glob's
 * literal head (up to its first wildcard) and, trailing slashes aside,
 * ends with its literal tail (after its last): heads that disagree, or
 * tails that disagree, share no text.  Any other pair may meet: "/api/"
 * then "**", and "/api/v1/" then "*", do; so, by this test, do "/api/"
 * then "*" and "/api/v1/" then "*", which never meet (one segment after
 * "/api/", or two): the sum is then larger than it needs to be, never
 * smaller. */
static int
rl2_globs_meet(const char *a, const char *b)
{
    size_t      ha = strcspn(a, "*?"), hb = strcspn(b, "*?");
    const char *ta = rl2_glob_tail(a), *tb = rl2_glob_tail(b);
    size_t      la = rl2_unslashed_len(ta, strlen(ta));
    size_t      lb = rl2_unslashed_len(tb, strlen(tb));
    size_t      t = la < lb ? la : lb;

    return rl2_fold_eq(a, b, ha < hb ? ha : hb)
           && rl2_fold_eq(ta + la - t, tb + lb - t, t);
}

/* Can a path under script s ("/app.php/x": s, a '/', anything) match
 * the path glob q? */
static int
rl2_script_meets(const char *s, const char *q)
{
    size_t ns = strlen(s), hq;

    if (rl2_glob_is_literal(q)) {
        size_t nq = rl2_unslashed_len(q, strlen(q));

        return nq > ns && q[ns] == '/' && rl2_fold_eq(s, q, ns);
    }
    /* q's head and "s/" agree as far as both go; its tail can always
     * be met by what follows the slash. */
    hq = strcspn(q, "*?");
    return rl2_fold_eq(s, q, hq < ns ? hq : ns) && (hq <= ns || q[ns] == '/');
}

/* May one text match glob a and glob b?  a_script: a also meets a
 * PATH_INFO after it (a path glob of a rule without `exact`). */
static int
rl2_globs_may_meet(const char *a, int a_script, const char *b, int b_script)
{
    int la = rl2_glob_is_literal(a), lb = rl2_glob_is_literal(b);
    int meet = la && lb ? rl2_literals_meet(a, b)
               : la     ? rl2_glob_meets_literal(b, a)
               : lb     ? rl2_glob_meets_literal(a, b)
                        : rl2_globs_meet(a, b);

    return meet
           || (a_script && rl2_glob_names_script(a) && rl2_script_meets(a, b))
           || (b_script && rl2_glob_names_script(b) && rl2_script_meets(b, a));
}

/* May one text match a glob of list a and one of list b?  An empty list
 * matches every text. */
static int
rl2_lists_may_meet(const char *const *a, size_t na, int a_script,
                   const char *const *b, size_t nb, int b_script)
{
    if (na == 0 || nb == 0) {
        return 1;
    }
    for (size_t i = 0; i < na; i++) {
        for (size_t j = 0; j < nb; j++) {
            if (rl2_globs_may_meet(a[i], a_script, b[j], b_script)) {
                return 1;
            }
        }
    }
    return 0;
}

int
rl2_rules_may_meet(const rl2_rule_t *a, const rl2_rule_t *b)
{
    return rl2_lists_may_meet(a->hosts, a->n_hosts, 0, b->hosts, b->n_hosts, 0)
           && rl2_lists_may_meet(a->paths, a->n_paths, !a->exact, b->paths,
                                 b->n_paths, !b->exact);
}

int
rl2_rule_path_literal(const rl2_rule_t *rule, const char *glob, size_t *len)
{
    if (!rl2_glob_is_literal(glob)
        || (!rule->exact && rl2_glob_names_script(glob))) {
        return 0;
    }
    *len = rl2_unslashed_len(glob, strlen(glob));
    return 1;
}
