/*
 * override_target.c -- what an override names, as an operator writes it,
 * in the one canonical form the table keys on; and its value (a factor,
 * a tier, a mode) as people read and write it.
 *
 * Addresses: "192.0.2.9", "192.0.2.0/24", "2001:db8::/48"; the host bits
 * of a network are cleared and the address is written back in its usual
 * spelling, so "2001:DB8:0::/48" and "2001:db8::/48" are one entry.
 * Users: "user:NAME", kept as written (a name is not a secret).  API
 * keys: "key:KEY" is stored as "key#HASH", the key's hash under the
 * policy's secret, which is also what a request's key becomes
 * (identity.c): the key itself is never stored; "key#HASH" as listed
 * names the same entry.  Rules and tiers:
 * "rule:NAME", "tier:NAME", checked against the policy.  "*": all.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base_internal.h"
#include "control_internal.h"

static const char *const kind_names[RL2_OVR_KINDS] = {
    [RL2_OVR_BAN] = "ban",   [RL2_OVR_ALLOW] = "allow",
    [RL2_OVR_TIER] = "tier", [RL2_OVR_BOOST] = "boost",
    [RL2_OVR_MODE] = "mode", [RL2_OVR_EMERGENCY] = "emergency",
};

const char *
rl2_ovr_kind_name(rl2_ovr_kind_t kind)
{
    return kind > 0 && kind < RL2_OVR_KINDS ? kind_names[kind] : NULL;
}

rl2_ovr_kind_t
rl2_ovr_kind_from_name(const char *name)
{
    for (int k = 1; name != NULL && k < RL2_OVR_KINDS; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            return (rl2_ovr_kind_t)k;
        }
    }
    return 0;
}

/* Which targets each kind takes. */
static int
rl2_ovr_takes(rl2_ovr_kind_t kind, rl2_ovr_target_t t)
{
    switch (kind) {
    case RL2_OVR_BAN:
    case RL2_OVR_ALLOW:
    case RL2_OVR_TIER:
        return t == RL2_OVT_ADDR || t == RL2_OVT_USER || t == RL2_OVT_KEY;
    case RL2_OVR_BOOST:
        return t == RL2_OVT_RULE || t == RL2_OVT_TIER || t == RL2_OVT_ALL;
    case RL2_OVR_MODE:
        return t == RL2_OVT_RULE;
    case RL2_OVR_EMERGENCY:
        return t == RL2_OVT_ALL;
    default:
        return 0;
    }
}

static void
rl2_ovr_mask(int family, uint8_t addr[16], unsigned prefix)
{
    unsigned bits = family == AF_INET ? 32 : 128;

    for (unsigned b = prefix; b < bits; b++) {
        addr[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    }
}

rl2_digest_t
rl2_ovr_addr_key(rl2_ovr_kind_t kind, int family, const uint8_t addr[16],
                 unsigned prefix)
{
    uint8_t m[20];

    m[0] = (uint8_t)kind;
    m[1] = (uint8_t)RL2_OVT_ADDR;
    m[2] = family == AF_INET ? 4 : 6;
    m[3] = (uint8_t)prefix;
    memcpy(m + 4, addr, 16);
    rl2_ovr_mask(family, m + 4, prefix);
    if (family == AF_INET) {
        memset(m + 8, 0, 12);
    }
    return rl2_digest(m, sizeof(m));
}

rl2_digest_t
rl2_ovr_key(rl2_ovr_kind_t kind, rl2_ovr_target_t target_kind,
            const char *target)
{
    char   m[2 + RL2_OVR_TARGET_MAX];
    size_t n = strnlen(target, RL2_OVR_TARGET_MAX - 1);

    if (target_kind == RL2_OVT_ADDR) {
        int      family;
        uint8_t  addr[16];
        unsigned prefix;

        if (rl2_ovr_addr_parse(target, &family, addr, &prefix) == 0) {
            return rl2_ovr_addr_key(kind, family, addr, prefix);
        }
    }
    m[0] = (char)kind;
    m[1] = (char)target_kind;
    memcpy(m + 2, target, n);
    return rl2_digest(m, n + 2);
}

int
rl2_ovr_addr_parse(const char *target, int *family, uint8_t addr[16],
                   unsigned *prefix)
{
    rl2_cidr_t net;
    rl2_err_t  err;

    if (rl2_cidr_parse(target, &net, &err) != RL2_OK) {
        return -1;
    }
    *family = net.family;
    memcpy(addr, net.addr, 16);
    *prefix = net.prefix;
    /* A request from ::ffff:a.b.c.d counts as a.b.c.d (identity.c), so
     * a target written so is that IPv4 address or network: else it is an
     * entry no request ever matches. */
    if (net.family == AF_INET6 && net.prefix >= 96
        && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)net.addr)) {
        *family = AF_INET;
        memset(addr, 0, 16);
        memcpy(addr, net.addr + 12, 4);
        *prefix = net.prefix - 96;
    }
    rl2_ovr_mask(*family, addr, *prefix);
    return 0;
}

static rl2_status_t
rl2_ovr_target_addr(const char *text, rl2_override_t *o, rl2_err_t *err)
{
    int      family;
    uint8_t  addr[16];
    unsigned prefix;
    char     buf[INET6_ADDRSTRLEN];

    if (rl2_ovr_addr_parse(text, &family, addr, &prefix) != 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "\"%s\" is not an address, a network "
                           "(192.0.2.0/24), user:NAME or key:APIKEY",
                           text);
    }
    inet_ntop(family, addr, buf, sizeof(buf));
    o->target_kind = RL2_OVT_ADDR;
    if (prefix == (family == AF_INET ? 32u : 128u)) {
        snprintf(o->target, sizeof(o->target), "%s", buf);
    }
    else {
        snprintf(o->target, sizeof(o->target), "%s/%u", buf, prefix);
    }
    return RL2_OK;
}

/* A name as it may appear in a target: no control byte (the state file
 * is lines of tab-separated fields), else anything.  A user name is what
 * the web server authenticated ("Mallory X", "josé"): a target that took
 * printable ASCII only could not name such a user, whom no ban, an
 * operator's or an automatic one, then ever reached. */
static int
rl2_ovr_name_ok(const char *s, size_t max)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] < ' ' || (unsigned char)s[n] == 0x7f) {
            return 0;
        }
    }
    return n > 0 && n <= max;
}

static int
rl2_ovr_policy_has_rule(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        if (strcmp(p->rules[i].name, name) == 0) {
            return 1;
        }
    }
    return p->default_rule != NULL && strcmp(p->default_rule->name, name) == 0;
}

static int
rl2_ovr_policy_has_tier(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_tiers; i++) {
        if (strcmp(p->tiers[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* "rule:NAME", "tier:NAME" (checked against the policy), "user:NAME",
 * "key:KEY" (hashed). */
static rl2_status_t
rl2_ovr_target_named(const rl2_policy_t *policy, const char *text,
                     rl2_override_t *o, rl2_err_t *err)
{
    const char *name = text + strcspn(text, ":#") + 1;
    char        h[17];

    if (!rl2_ovr_name_ok(name, RL2_OVR_TARGET_MAX - 6)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "\"%.100s\": the name after ':' must be 1 to %d "
                           "bytes without control characters",
                           text, RL2_OVR_TARGET_MAX - 6);
    }
    if (strncmp(text, "user:", 5) == 0) {
        o->target_kind = RL2_OVT_USER;
    }
    else if (strncmp(text, "key#", 4) == 0) {
        if (strlen(name) != 16 || strspn(name, "0123456789abcdef") != 16) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "\"%.100s\": key# takes the 16 hex digits "
                               "of a key's hash, as listed",
                               text);
        }
        o->target_kind = RL2_OVT_KEY;
    }
    else if (strncmp(text, "key:", 4) == 0) {
        if (policy == NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "key: targets need the policy (its secret "
                               "hashes the key)");
        }
        rl2_hash_id(&policy->hash_key, name, h);
        o->target_kind = RL2_OVT_KEY;
        snprintf(o->target, sizeof(o->target), "key#%s", h);
        return RL2_OK;
    }
    else if (strncmp(text, "rule:", 5) == 0) {
        if (policy != NULL && !rl2_ovr_policy_has_rule(policy, name)) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "the policy has no rule \"%s\"", name);
        }
        o->target_kind = RL2_OVT_RULE;
    }
    else if (strncmp(text, "tier:", 5) == 0) {
        if (policy != NULL && !rl2_ovr_policy_has_tier(policy, name)) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "the policy has no tier \"%s\"", name);
        }
        o->target_kind = RL2_OVT_TIER;
    }
    else {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "\"%.100s\": expected user:, key:, key#, rule: or "
                           "tier: before the name",
                           text);
    }
    snprintf(o->target, sizeof(o->target), "%s", text);
    return RL2_OK;
}

rl2_status_t
rl2_override_target(const rl2_policy_t *policy, rl2_ovr_kind_t kind,
                    const char *text, rl2_override_t *o, rl2_err_t *err)
{
    rl2_status_t st;

    if (text == NULL || text[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_INVALID, "no target");
    }
    if (strcmp(text, "*") == 0) {
        o->target_kind = RL2_OVT_ALL;
        snprintf(o->target, sizeof(o->target), "*");
        st = RL2_OK;
    }
    else if (strncmp(text, "user:", 5) == 0 || strncmp(text, "key:", 4) == 0
             || strncmp(text, "key#", 4) == 0 || strncmp(text, "rule:", 5) == 0
             || strncmp(text, "tier:", 5) == 0) {
        /* No address starts so: an IPv6 address has no letters past f. */
        st = rl2_ovr_target_named(policy, text, o, err);
    }
    else {
        st = rl2_ovr_target_addr(text, o, err);
    }
    if (st != RL2_OK) {
        return st;
    }
    if (!rl2_ovr_takes(kind, o->target_kind)) {
        return rl2_err_set(
            err, RL2_ERR_INVALID, "%s does not take the target \"%.100s\"",
            rl2_ovr_kind_name(kind) ? rl2_ovr_kind_name(kind) : "this override",
            text);
    }
    o->kind = kind;
    return RL2_OK;
}

/* ---- values ---------------------------------------------------------------
 */

rl2_status_t
rl2_ovr_factor_parse(const char *text, uint32_t *ppm, rl2_err_t *err)
{
    const char *p = text != NULL && text[0] == 'x' ? text + 1 : text;
    uint64_t    v = 0, scale = RL2_OVR_FACTOR_ONE;
    int         digits = 0;

    /* Digits past what fits only make it larger: it stays out of range,
     * and is said so. */
    for (; p != NULL && isdigit((unsigned char)*p); p++, digits++) {
        v = v <= UINT32_MAX ? v * 10 + (uint64_t)(*p - '0') : v;
    }
    v *= RL2_OVR_FACTOR_ONE;
    if (p != NULL && *p == '.' && digits > 0) {
        p++;
        digits = isdigit((unsigned char)*p) ? digits : 0;
        for (; isdigit((unsigned char)*p) && scale > 1; p++) {
            scale /= 10;
            v += (uint64_t)(*p - '0') * scale;
        }
    }
    if (p == NULL || digits == 0 || *p != '\0') {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "factor \"%.40s\": expected a number such as 2, "
                           "0.5 or 1.25 (at most 6 decimals)",
                           text != NULL ? text : "");
    }
    if (v < RL2_OVR_FACTOR_MIN || v > RL2_OVR_FACTOR_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "factor \"%.40s\" out of range: 0.001 to 1000",
                           text);
    }
    *ppm = (uint32_t)v;
    return RL2_OK;
}

void
rl2_ovr_factor_format(uint32_t ppm, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%" PRIu32 ".%06" PRIu32,
                     ppm / RL2_OVR_FACTOR_ONE, ppm % RL2_OVR_FACTOR_ONE);

    /* The shortest decimal: "2.500000" is "2.5", "2.000000" is "2". */
    if (n > 0 && (size_t)n < size) {
        while (buf[n - 1] == '0') {
            buf[--n] = '\0';
        }
        if (buf[n - 1] == '.') {
            buf[n - 1] = '\0';
        }
    }
}

size_t
rl2_factors_format(const uint32_t *ppm, char *buf, size_t size)
{
    size_t at = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < RL2_FACTOR_N; i++) {
        char num[24];
        int  n;

        if (ppm[i] == 0) {
            continue;
        }
        rl2_ovr_factor_format(ppm[i], num, sizeof(num));
        n = snprintf(buf + at, size - at, "%s%s=%s", at > 0 ? ";" : "",
                     rl2_factor_names[i], num);
        if (n < 0 || (size_t)n >= size - at) {
            buf[at] = '\0'; /* whole items only */
            break;
        }
        at += (size_t)n;
    }
    return at;
}

static const char *const mode_words[] = { [RL2_MODE_ENFORCE] = "enforce",
                                          [RL2_MODE_DRY_RUN] = "dry_run",
                                          [RL2_MODE_OFF] = "off" };

void
rl2_ovr_value_text(const rl2_override_t *o, char *buf, size_t size)
{
    char f[32];

    switch (o->kind) {
    case RL2_OVR_BAN:
        snprintf(buf, size, "banned");
        break;
    case RL2_OVR_ALLOW:
        snprintf(buf, size, "allowed");
        break;
    case RL2_OVR_TIER:
        snprintf(buf, size, "%s", o->tier);
        break;
    case RL2_OVR_BOOST:
    case RL2_OVR_EMERGENCY:
        if (o->factor_ppm == 0) {
            snprintf(buf, size, "allow-list-only");
            break;
        }
        rl2_ovr_factor_format(o->factor_ppm, f, sizeof(f));
        snprintf(buf, size, "x%s", f);
        break;
    case RL2_OVR_MODE:
        snprintf(buf, size, "%s",
                 o->mode >= RL2_MODE_ENFORCE && o->mode <= RL2_MODE_OFF
                     ? mode_words[o->mode]
                     : "?");
        break;
    default:
        snprintf(buf, size, "-");
    }
}

rl2_status_t
rl2_ovr_value_parse_text(rl2_override_t *o, const char *text, rl2_err_t *err)
{
    rl2_mode_t mode;

    switch (o->kind) {
    case RL2_OVR_BAN:
    case RL2_OVR_ALLOW:
        return strcmp(text, rl2_ovr_kind_name(o->kind)) == 0
                       || strcmp(text,
                                 o->kind == RL2_OVR_BAN ? "banned" : "allowed")
                              == 0
                   ? RL2_OK
                   : rl2_err_set(err, RL2_ERR_INVALID, "value \"%.40s\" for %s",
                                 text, rl2_ovr_kind_name(o->kind));
    case RL2_OVR_TIER:
        /* A tier's name, as the policy's are: no spaces. */
        if (!rl2_ovr_name_ok(text, RL2_OVR_NAME_MAX - 1)
            || strchr(text, ' ') != NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "tier \"%.40s\": 1 to %d printable "
                               "characters without spaces",
                               text, RL2_OVR_NAME_MAX - 1);
        }
        snprintf(o->tier, sizeof(o->tier), "%s", text);
        return RL2_OK;
    case RL2_OVR_EMERGENCY:
        if (strcmp(text, "allow-list-only") == 0) {
            o->factor_ppm = 0;
            return RL2_OK;
        }
        return rl2_ovr_factor_parse(text, &o->factor_ppm, err);
    case RL2_OVR_BOOST:
        return rl2_ovr_factor_parse(text, &o->factor_ppm, err);
    case RL2_OVR_MODE:
        if (rl2_mode_parse(text, &mode, err) != RL2_OK
            || mode == RL2_MODE_INHERIT) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "mode \"%.40s\": enforce, dry_run or off", text);
        }
        o->mode = mode;
        return RL2_OK;
    default:
        return rl2_err_set(err, RL2_ERR_INVALID, "unknown override kind");
    }
}

int
rl2_override_cmp(const void *a, const void *b)
{
    const rl2_override_t *x = a, *y = b;

    if (x->kind != y->kind) {
        return x->kind < y->kind ? -1 : 1;
    }
    return strcmp(x->target, y->target);
}
