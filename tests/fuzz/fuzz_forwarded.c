/*
 * fuzz_forwarded.c -- libFuzzer target: who the client is.  Any bytes
 * become a peer address, an X-Forwarded-For and a Forwarded header; the
 * Forwarded parser and the client resolution of common/identity.c must
 * never crash, and must keep their promises:
 *   - headers from a peer that is not a trusted proxy change nothing;
 *   - a client taken from a header is a real address, and its key is
 *     that address in its usual spelling (no zone id, no IPv4-mapped
 *     form, no upper case), so one client has one key;
 *   - every hop and address is NUL-terminated inside its buffer.
 *
 * Input: one flag byte (bit 0: X-Forwarded-For present, bit 1: Forwarded
 * present, bit 2: the policy that keys IPv6 by whole address, /128), then
 * the peer, the X-Forwarded-For value and the Forwarded value separated
 * by NUL bytes.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decide/decide_internal.h"
#include "decide/forwarded.h"
#include "ratelimit2/config.h"
#include "policy/policy_internal.h"

static const char *const policy_texts[2] = {
    "trusted_proxies = [ \"127.0.0.1\", \"10.0.0.0/8\", \"::1\",\n"
    "                    \"2001:db8::/32\", \"192.0.2.0/24\" ];\n"
    "default = { limits = ( { rate = \"10/min\"; } ); };\n",
    "trusted_proxies = [ \"0.0.0.0/1\", \"fe80::/10\" ];\n"
    "ipv6_prefix = 128;\n"
    "whitelist = { addresses = [ \"198.51.100.0/24\" ]; };\n"
    "default = { limits = ( { rate = \"10/min\"; } ); };\n",
};
static rl2_policy_t *policies[2];

typedef struct {
    const char *xff;
    const char *fwd;
} hdrs_t;

static const char *
header(void *ctx, const char *name)
{
    const hdrs_t *h = ctx;

    if (strcasecmp(name, "X-Forwarded-For") == 0) {
        return h->xff;
    }
    if (strcasecmp(name, "Forwarded") == 0) {
        return h->fwd;
    }
    return NULL;
}

static void
setup(void)
{
    rl2_err_t err;

    for (int i = 0; i < 2; i++) {
        if (rl2_config_load_string(policy_texts[i], "fuzz-policy", NULL,
                                   &policies[i], &err)
            != RL2_OK) {
            fprintf(stderr, "fuzz setup: %s\n", err.msg);
            abort();
        }
    }
}

static int
trusted(const rl2_policy_t *p, const rl2_verdict_t *v)
{
    for (size_t i = 0; i < p->n_trusted; i++) {
        if (rl2_cidr_match(&p->trusted[i], v->addr_family, v->addr)) {
            return 1;
        }
    }
    return 0;
}

/* The key of a client named by a header ("ADDR" or "ADDR/PREFIX"): an
 * address in its usual spelling, or, for a hop a trusted proxy wrote that
 * is no address, "unknown" or "unknown:TEXT" with TEXT printable and
 * without spaces. */
static void
check_canonical(const char *group)
{
    uint8_t a[16];
    char    ip[48], back[48];

    if (strncmp(group, "unknown", 7) == 0) {
        if (group[7] != '\0' && group[7] != ':') {
            abort();
        }
        for (const char *s = group + 7; *s != '\0'; s++) {
            if (*s <= ' ' || *s >= 0x7f) {
                abort();
            }
        }
        return;
    }

    snprintf(ip, sizeof(ip), "%s", group);
    ip[strcspn(ip, "/")] = '\0';
    if (inet_pton(AF_INET, ip, a) == 1) {
        return;
    }
    if (inet_pton(AF_INET6, ip, a) != 1
        || IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)
        || inet_ntop(AF_INET6, a, back, sizeof(back)) == NULL
        || strcmp(back, ip) != 0) {
        abort();
    }
}

static void
resolve(const rl2_policy_t *p, const char *peer, const hdrs_t *h,
        rl2_verdict_t *v, char group[48])
{
    rl2_request_t req = { 0 };
    rl2_ctx_t    *c = malloc(sizeof(*c));

    req.method = "GET";
    req.path = "/";
    req.peer_ip = peer;
    req.header = header;
    req.header_ctx = (void *)h;
    rl2_verdict_init(v);
    rl2_ctx_init(c, p, &req, RL2_PHASE_ALL, v);
    if (strnlen(v->client_ip, sizeof(v->client_ip)) >= sizeof(v->client_ip)
        || strnlen(c->group_ip, 48) >= 48
        || strlen(c->group_ip) != c->group_len) {
        abort();
    }
    memcpy(group, c->group_ip, c->group_len + 1);
    rl2_ctx_fini(c);
    free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int     ready;
    char          *text, *f[3];
    size_t         k = 0;
    unsigned       flags;
    hdrs_t         none = { NULL, NULL }, h;
    rl2_fwd_hops_t hops;
    rl2_verdict_t  v0, v1;
    char           g0[48], g1[48];

    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1) {
        return 0;
    }
    flags = data[0];
    text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    f[k++] = text;
    for (size_t i = 0; i + 1 < size && k < 3; i++) {
        if (text[i] == '\0') {
            f[k++] = text + i + 1;
        }
    }
    while (k < 3) {
        f[k++] = text + size - 1;
    }
    h.xff = (flags & 1) ? f[1] : NULL;
    h.fwd = (flags & 2) ? f[2] : NULL;

    rl2_forwarded_parse(h.fwd, &hops);
    if (hops.n > RL2_FWD_HOPS_MAX) {
        abort();
    }
    for (size_t i = 0; i < hops.n; i++) {
        if (strnlen(hops.hop[i], RL2_FWD_HOP_MAX) >= RL2_FWD_HOP_MAX) {
            abort();
        }
    }

    const rl2_policy_t *p = policies[(flags >> 2) & 1];

    resolve(p, f[0], &none, &v0, g0);
    resolve(p, f[0], &h, &v1, g1);
    if (v0.addr_family == 0 || !trusted(p, &v0)) {
        /* Not from a trusted proxy: the headers changed nothing. */
        if (strcmp(v0.client_ip, v1.client_ip) != 0 || strcmp(g0, g1) != 0) {
            abort();
        }
    }
    else if (strcmp(v0.client_ip, v1.client_ip) != 0) {
        check_canonical(g1);
    }
    free(text);
    return 0;
}
