/*
 * forwarded.h -- the Forwarded header of RFC 7239 (private to the core):
 * the addresses its elements name in their for= parameters, so that
 * identity.c can walk them right to left like X-Forwarded-For.
 */
#ifndef RL2_FORWARDED_H
#define RL2_FORWARDED_H

#include <stddef.h>

/* The right-most elements kept; a longer chain is cut on the left (the
 * client is then, at worst, the left-most hop kept, a trusted proxy). */
#define RL2_FWD_HOPS_MAX 16
/* A node longer than this is no address (the longest IPv6 text with a
 * zone id fits). */
#define RL2_FWD_HOP_MAX 64

typedef struct {
    size_t n; /* hops, left to right */
    char   hop[RL2_FWD_HOPS_MAX][RL2_FWD_HOP_MAX];
} rl2_fwd_hops_t;

/* Parse a Forwarded header value into the node of each element's for=
 * parameter, without quotes, brackets or port: `for=192.0.2.1:80`,
 * `for="[2001:db8::1]:4711"`.  An element with no for=, with an
 * obfuscated or "unknown" node, or that does not parse, gives an empty
 * hop, which no address parser accepts.  Never fails; never reads past
 * the NUL. */
void rl2_forwarded_parse(const char *value, rl2_fwd_hops_t *out);

/* The address in a node into node[len]: "[v6]" or "[v6]:port" without
 * brackets and port, "v4:port" without port; anything else as it is.
 * -1 when it does not fit or a bracket is not closed. */
int rl2_forwarded_node(const char *val, char *node, size_t len);

#endif /* RL2_FORWARDED_H */
