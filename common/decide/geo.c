/*
 * geo.c -- the geo factor (the policy's factors.geo, load/config_geo.c):
 * the client's country gives a factor on its limits.
 *
 * The country comes from the first of these that names one:
 *
 *   1. a request variable of the server's own configuration (Apache's
 *      subprocess_env set by mod_setenvif or a GeoIP module; a FastCGI
 *      parameter of nginx or lighttpd), which a client cannot set: the
 *      loader refuses HTTP_* names;
 *   2. a header (CF-IPCountry), believed only when the address that
 *      connected is one of header_from, the upstreams that set it;
 *   3. the client's address (after trusted proxies) in a MaxMind DB
 *      file, `country.iso_code`.
 *
 * A country is exactly two ASCII letters, compared upper-cased; any
 * other value names none and the next source is asked.  What a client
 * sends is never kept: only the index of a valid pair leaves this file.
 *
 * The database is mapped once at load and read without a lock by every
 * thread and process (libmaxminddb does not write to it).  A lookup walks
 * at most 128 nodes of the search tree and decodes one map path; every
 * offset is checked against the file's sections by libmaxminddb, so a
 * damaged or hostile file gives an error, taken as "no country".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <maxminddb.h>

#include "decide_internal.h"
#include "policy/policy_internal.h"

struct rl2_geo_db {
    MMDB_s mmdb;
};

int
rl2_geo_index(const char *text, size_t len)
{
    int a, b;

    if (text == NULL || len != 2) {
        return -1;
    }
    /* ASCII only: no locale's idea of a letter. */
    a = (unsigned char)text[0] & ~0x20;
    b = (unsigned char)text[1] & ~0x20;
    if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z') {
        return -1;
    }
    return (a - 'A') * 26 + (b - 'A');
}

static void
rl2_geo_close(void *data)
{
    struct rl2_geo_db *db = data;

    MMDB_close(&db->mmdb);
}

rl2_status_t
rl2_geo_open(rl2_policy_t *p, const char *path, struct rl2_geo_db **out,
             rl2_err_t *err)
{
    struct rl2_geo_db *db = rl2_policy_alloc(p, sizeof(*db));
    int                rc;

    *out = NULL;
    if (db == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    errno = 0;
    rc = MMDB_open(path, MMDB_MODE_MMAP, &db->mmdb);
    if (rc != MMDB_SUCCESS) {
        if (rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) {
            return rl2_err_set(err, RL2_ERR_CONFIG, "%s (%s)",
                               MMDB_strerror(rc),
                               errno != 0 ? strerror(errno) : "no reason");
        }
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s", MMDB_strerror(rc));
    }
    if (rl2_policy_on_free(p, rl2_geo_close, db, err) != RL2_OK) {
        MMDB_close(&db->mmdb);
        return RL2_ERR_NOMEM;
    }
    *out = db;
    return RL2_OK;
}

int
rl2_geo_lookup(const struct rl2_geo_db *db, int family, const uint8_t *addr)
{
    struct sockaddr_in     sin;
    struct sockaddr_in6    sin6;
    const struct sockaddr *sa;
    MMDB_lookup_result_s   res;
    MMDB_entry_data_s      data;
    int                    rc = MMDB_SUCCESS;

    if (family == AF_INET) {
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, addr, 4);
        sa = (const struct sockaddr *)&sin;
    }
    else if (family == AF_INET6) {
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, addr, 16);
        sa = (const struct sockaddr *)&sin6;
    }
    else {
        return -1;
    }
    res = MMDB_lookup_sockaddr(&db->mmdb, sa, &rc);
    if (rc != MMDB_SUCCESS || !res.found_entry) {
        return -1;
    }
    memset(&data, 0, sizeof(data));
    if (MMDB_get_value(&res.entry, &data, "country", "iso_code", NULL)
            != MMDB_SUCCESS
        || !data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING) {
        return -1;
    }
    return rl2_geo_index(data.utf8_string, data.data_size);
}

/* A value of a variable or header: its country, or -1.  Only its first
 * three bytes are read. */
static int
rl2_geo_text(const char *v)
{
    return v != NULL ? rl2_geo_index(v, strnlen(v, 3)) : -1;
}

int
rl2_geo_country(rl2_ctx_t *c)
{
    const rl2_geo_conf_t *g = &c->policy->geo;
    const rl2_request_t  *r = c->req;
    rl2_ovr_who_t         who;
    int                   i;

    if (g->variable != NULL && (i = rl2_geo_text(r->country_var)) >= 0) {
        return i;
    }
    if (g->header != NULL && r->header != NULL
        && rl2_sent_by(r, g->nets, g->n_nets)
        && (i = rl2_geo_text(r->header(r->header_ctx, g->header))) >= 0) {
        return i;
    }
    if (g->db != NULL) {
        rl2_ctx_who(c, &who); /* the client's address, parsed */
        return rl2_geo_lookup(g->db, who.family, who.addr);
    }
    return -1;
}

uint32_t
rl2_geo_factor(rl2_ctx_t *c)
{
    const rl2_geo_conf_t *g = &c->policy->geo;
    int                   i = rl2_geo_country(c);

    return i >= 0 && g->factor_ppm[i] != 0 ? g->factor_ppm[i] : g->default_ppm;
}
