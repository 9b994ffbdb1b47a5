/*
 * fcgi.h -- what the FastCGI daemon (ratelimit2-fcgi) and the CGI wrapper
 * (ratelimit2-cgi) share, private to fcgi/.
 *
 * Both front ends read the same CGI meta-variables (REMOTE_ADDR,
 * REQUEST_URI, HTTP_*): FastCGI passes them as params, CGI as the
 * environment.  request.c turns them into an rl2_request_t, response.c
 * turns a verdict into a CGI-style response (Status line, headers, body)
 * and into the RATELIMIT_* variables of an allowed request.  The daemon's
 * own parts (generations of the policy, sockets, workers) are declared
 * below them.
 */
#ifndef RL2_FCGI_H
#define RL2_FCGI_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/headers.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"
#include "ratelimit2/store_opts.h"

#define RL2_FCGI_DEFAULT_ZONE    "/ratelimit2"
#define RL2_FCGI_DEFAULT_ENTRIES 100000u

/* ---- request.c: CGI meta-variables -> rl2_request_t ---- */

/* Bounds on what a request may carry.  The path bound is the core's
 * normalisation buffer (decide_internal.h RL2_PATH_MAX): a longer path
 * could not be normalised and would meet only the default rule, so it is
 * refused rather than let past the rules written for it. */
#define RL2_CGI_PATH_MAX   2048 /* bytes of the path, NUL included */
#define RL2_CGI_URI_MAX    8192 /* path + '?' + query, NUL included */
#define RL2_CGI_METHOD_MAX 32
#define RL2_CGI_HOST_MAX   256
#define RL2_CGI_ADDR_MAX   48 /* INET6_ADDRSTRLEN-sized */
#define RL2_CGI_USER_MAX   1024
#define RL2_CGI_HNAME_MAX  128 /* "HTTP_" + a header name */

/* Look up one meta-variable (FCGX_GetParam, getenv); NULL when absent. */
typedef const char *(*rl2_param_fn)(void *ctx, const char *name);

/* One request, described from its meta-variables.  Values are copied
 * (FCGX_GetParam strings die at the next accept); headers are looked up
 * on demand through `param` while the request is being decided. */
typedef struct {
    rl2_request_t req;
    rl2_param_fn  param;
    void         *param_ctx;
    char          method[RL2_CGI_METHOD_MAX];
    char          uri[RL2_CGI_URI_MAX]; /* path, NUL, query */
    char          host[RL2_CGI_HOST_MAX];
    char          addr[RL2_CGI_ADDR_MAX];
    char          user[RL2_CGI_USER_MAX];
    char          tier[RL2_NAME_MAX + 1];
    char          country[4]; /* two letters; longer is no country */
    char          hname[RL2_CGI_HNAME_MAX]; /* header lookup scratch */
} rl2_cgi_req_t;

/* Why a request could not be described: the HTTP status to answer and
 * a message for the log. */
typedef struct {
    int         status; /* 400, 414, 500, ... */
    const char *reason; /* static text */
} rl2_cgi_error_t;

/* Fill `out` from the meta-variables; returns 0, or -1 with *e set. */
int rl2_cgi_describe(const rl2_policy_t *policy, rl2_param_fn param,
                     void *param_ctx, rl2_cgi_req_t *out, rl2_cgi_error_t *e);

/* ---- response.c: verdict -> CGI response and RATELIMIT_* ---- */

#define RL2_CGI_MAX_FIELDS 16

typedef struct {
    const char *name;
    const char *value;
} rl2_field_t;

/* The rate-limit header fields of a verdict, rendered once, and the
 * numbers of the RATELIMIT_LIMIT, _REMAINING and _RESET variables (sent
 * to the application whether or not the client gets X-RateLimit-*). */
typedef struct {
    rl2_field_t f[RL2_CGI_MAX_FIELDS];
    size_t      n;
    char        buf[RL2_HEADERS_MAX];
    char        numbers[3][24];
} rl2_cgi_fields_t;

void rl2_cgi_fields(const rl2_policy_t *policy, const rl2_verdict_t *v,
                    const rl2_clock_t *now, rl2_cgi_fields_t *out);

/* The RATELIMIT_* values of a verdict (names without the prefix: LIMIT,
 * REMAINING, RESET, RULE, TIER); returns how many were written to
 * out[5].  None when no limit is shown (bypass, nothing applied). */
size_t rl2_cgi_vars(const rl2_policy_t *policy, const rl2_verdict_t *v,
                    const rl2_cgi_fields_t *fields, rl2_field_t out[5]);

#define RL2_CGI_RESPONSE_MAX (RL2_HEADERS_MAX + RL2_BODY_MAX + 1024)

/* A complete CGI response into buf (NUL-terminated): "Status: <status>"
 * first (lighttpd keeps nothing else from an authorizer until it sees a
 * status other than 200), then each of vars as "Variable-RATELIMIT_X",
 * the fields, and, when body is not NULL, its content type and the body.
 * Returns the length, or 0 when it did not fit. */
size_t rl2_cgi_response(char *buf, size_t len, const char *status,
                        const rl2_field_t *vars, size_t n_vars,
                        const rl2_cgi_fields_t *fields,
                        const char *content_type, const char *body);

/* The status line of a refusal: a limit's 429, a runtime ban's
 * policy->ban_status (429 or 403), the emergency allow-list's 503; in
 * the responder role 403 whatever refused (nginx's auth_request takes
 * no other refusal; the shipped snippet answers the status that
 * rl2_cgi_deny names in X-RateLimit2-Status). */
const char *rl2_cgi_refusal_status(const rl2_policy_t  *policy,
                                   const rl2_verdict_t *v, int responder);

/* The answer of a denied request, with the status above; in the
 * responder role also X-RateLimit2-Status, the status line the client
 * should get ("503 Service Unavailable"), which the nginx snippet
 * answers with. */
size_t rl2_cgi_deny(char *buf, size_t len, const char *status, int responder,
                    const rl2_policy_t *policy, const rl2_verdict_t *v,
                    const rl2_clock_t *now);

/* The answer while the store refuses (failover closed, Redis down):
 * "Status: 503" first, Retry-After (at least 1) and a line of text. */
size_t rl2_cgi_unavailable(char *buf, size_t len, int64_t retry_after_s);

/* A plain-text error answer: "Status: N ..." and one line of text. */
size_t rl2_cgi_error(char *buf, size_t len, int status, const char *text);

/* ---- policy.c: loading a policy for a front end that never sees a
 * request end ---- */

/* The concurrency limit of a policy, or NULL. */
const rl2_limit_t *rl2_cgi_concurrency(const rl2_policy_t *policy);

/* rl2_config_load, refusing a policy with a concurrency limit (neither
 * the authorizer nor the CGI wrapper could release its slots) with the
 * limit's file:line.  0, or -1 with err set and *out NULL. */
int rl2_cgi_policy_load(const char *path, rl2_policy_t **out, rl2_err_t *err);

/* ---- log.c: syslog and stderr ---- */

void rl2_log_open(const char *ident);
void rl2_log(int prio, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Lines about single requests, by kind: at most a burst per window and
 * kind, then one line saying how many were suppressed. */
enum {
    RL2_LOG_REFUSAL = 0, /* limited, dry run */
    RL2_LOG_INPUT,       /* malformed requests */
    RL2_LOG_ERROR,       /* store, accept, write failures */
    RL2_LOG_KINDS
};
void rl2_log_request(int kind, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- generation.c: policy generations and the store ---- */

/* A backend (zone, and Redis behind its circuit when configured), shared
 * by the generations whose entries fit its zone. */
typedef struct {
    rl2_backend_t *backend;
    rl2_zone_t    *zone;  /* its local zone */
    rl2_store_t   *store; /* what decide() talks to */
    unsigned       gens;  /* generations using it */
} rl2_gen_zone_t;

/* One loaded policy.  In-flight requests hold a reference; the holder
 * holds one while it is current.  Freed when the last one is dropped. */
typedef struct {
    rl2_policy_t       *policy;
    rl2_gen_zone_t     *zone;
    unsigned long       number;  /* 1 for the policy loaded at start */
    rl2_metrics_bind_t *metrics; /* its rules' metric slots, or NULL */
    unsigned            refs;    /* under rl2_gens_t.lock */
} rl2_gen_t;

typedef struct {
    pthread_mutex_t    lock;
    rl2_gen_t         *current;
    const char        *policy_path;
    const char        *zone_name;
    rl2_backend_conf_t backend; /* state_size set per backend opened */
    unsigned long      loaded;  /* generations loaded so far */
    /* The runtime override table, opened once and kept across reloads
     * (backends come and go with the zone's geometry; what an operator
     * set does not); NULL while no policy enabled it or it could not be
     * opened.  Its state file, to say when a reload names another. */
    rl2_overrides_t *overrides;
    char             overrides_state[4096];
} rl2_gens_t;

/* The first generation, of policy (loaded from policy_path by the
 * caller, with rl2_cgi_policy_load; owned from here on, freed on
 * failure), and its backend (conf is copied); "file:line: message" in err
 * on failure.  SIGHUP reloads policy_path (rl2_gens_reload). */
int rl2_gens_init(rl2_gens_t *g, const char *policy_path, rl2_policy_t *policy,
                  const rl2_backend_conf_t *conf, rl2_err_t *err);
/* Load the policy file again and make it current; on failure the current
 * generation stays and err says why. */
int        rl2_gens_reload(rl2_gens_t *g, rl2_err_t *err);
rl2_gen_t *rl2_gens_acquire(rl2_gens_t *g);
void       rl2_gens_release(rl2_gens_t *g, rl2_gen_t *gen);
/* At exit, once no request runs. */
void rl2_gens_destroy(rl2_gens_t *g);

/* ---- listen.c: the listening socket ---- */

/* The socket systemd (LISTEN_FDS) or spawn-fcgi (fd 0) handed us, or -1
 * when there is none; -2 with err set when what was handed is unusable. */
int rl2_listen_inherited(rl2_err_t *err);
/* Open "host:port", "[v6]:port" or a unix socket path ("/..." or
 * "./..."); -1 with err set on failure. */
int rl2_listen_open(const char *addr, rl2_err_t *err);
int rl2_listen_is_unix(const char *addr);
/* Make a listening socket ready for the workers (non-blocking accept). */
int rl2_listen_prepare(int fd, rl2_err_t *err);

/* ---- vet.c: a request looked at before libfcgi parses it ---- */

/* The most a request's params (its CGI variables, headers included) may
 * weigh; web servers send a few kilobytes. */
#define RL2_PARAMS_MAX (64 * 1024)

enum { RL2_VET_OK, RL2_VET_CLOSED, RL2_VET_BAD, RL2_VET_AGAIN };

/* The most params a request answered without libfcgi may have (fast.c);
 * one with more goes to libfcgi, which takes any number. */
#define RL2_FAST_PARAMS_MAX 512

typedef struct {
    unsigned char peek[RL2_PARAMS_MAX + 4096]; /* records, headers too */
    unsigned char params[RL2_PARAMS_MAX];      /* the params stream */
    size_t        params_len;
    unsigned      request_id;
    unsigned      role;  /* of the BEGIN_REQUEST */
    unsigned      flags; /* of the BEGIN_REQUEST: FCGI_KEEP_CONN */
    /* Bytes of the request up to and with an empty STDIN record right
     * after the params, all received; 0 when it has a body or is not
     * all here yet. */
    size_t      request_len;
    const char *why; /* RL2_VET_BAD: static */
    /* fast.c: the params as "NAME=VALUE" strings, FCGI_ROLE first, as
     * libfcgi builds its envp. */
    char  env[RL2_PARAMS_MAX + 32];
    char *envp[RL2_FAST_PARAMS_MAX + 2];
} rl2_vet_t;

/* Wait (at most timeout_ms) until fd holds a whole BEGIN_REQUEST and
 * params that libfcgi can parse safely.  RL2_VET_CLOSED: the peer left
 * without sending anything; RL2_VET_BAD: v->why says what was wrong (a
 * request too large has been answered 431).  With timeout_ms 0 it never
 * waits: RL2_VET_AGAIN when the request is not all there yet. */
int rl2_vet(rl2_vet_t *v, int fd, int timeout_ms);

/* ---- fast.c: the common request answered without libfcgi ---- */

/* One request being answered: its params, and where its answer goes:
 * libfcgi's streams, or straight to the connection (fast.c, or as HTTP
 * by http_conn.c). */
typedef struct {
    char               **envp;
    struct FCGX_Request *fcgx;       /* NULL: answered by fast.c */
    int                  fd;         /* fast.c: the connection */
    unsigned             request_id; /* fast.c */
    int                  timeout_ms; /* fast.c: to send the answer */
    int                  failed;     /* fast.c: not all of it was sent */
    int                  http;       /* answered as HTTP/1.1 (-H) */
    int                  keep;       /* http: the connection stays open */
    int                  http10;     /* http: the request was HTTP/1.0 */
} rl2_fcgi_io_t;

/* A vetted request libfcgi need not read: of the responder or authorizer
 * role, without a body, all of it received, with at most
 * RL2_FAST_PARAMS_MAX params.  Fills v->envp; 0, or -1 when the request
 * is libfcgi's to read. */
int rl2_fast_env(rl2_vet_t *v);

/* The answer buf[0..len) as the request's STDOUT, its end and the
 * END_REQUEST, in one write; 0, or -1 when the connection did not take
 * it within io->timeout_ms. */
int rl2_fast_reply(const rl2_fcgi_io_t *io, const char *buf, size_t len);

/* All of buf on the connection fd (MSG_DONTWAIT, whatever its mode),
 * waiting at most timeout_ms for room; 0, or -1. */
int rl2_fast_send(int fd, const void *buf, size_t len, int timeout_ms);

/* Read the request's v->request_len bytes, still queued (rl2_vet only
 * peeked at them); 0, or -1 on failure. */
int rl2_fast_consume(rl2_vet_t *v, int fd);

/* ---- http.c: a request of the HTTP/1.1 listener (-H) as CGI params,
 * and the answer as HTTP ---- */

/* The most a request head may weigh (431 past it), and the most fields
 * it may have: what the FastCGI path takes (RL2_PARAMS_MAX, and the
 * fast path's params less nginx's own), since nginx passes on every
 * line of a client's head, which may reach 32 KiB with its default
 * large_client_header_buffers (4 8k). */
#define RL2_HTTP_HEAD_MAX   RL2_PARAMS_MAX
#define RL2_HTTP_FIELDS_MAX (RL2_FAST_PARAMS_MAX - 12)
/* FCGI_ROLE, five identity params, the fields, and room to spare. */
#define RL2_HTTP_ENV_MAX (RL2_HTTP_FIELDS_MAX + 8)

enum { RL2_HTTP_OK, RL2_HTTP_MORE, RL2_HTTP_BAD };

/* One request head read.  Every string of env and envp is the parser's
 * copy; target points into the caller's buffer. */
typedef struct {
    size_t      head_len; /* bytes of the head, its blank line included */
    int         keep;     /* the connection may serve another request */
    int         http10;   /* an HTTP/1.0 request */
    int         status;   /* 0, or the status to answer instead */
    const char *why;      /* with status: static text for the log */
    const char *target;   /* the request line's target, not NUL-ended */
    size_t      target_len;
    /* The params, "NAME=VALUE", FCGI_ROLE first, NULL-terminated, as
     * fast.c builds them for rl2_fcgi_handle.  Each field grows by at
     * most four bytes ("HTTP_" and NUL for ": " and CRLF). */
    char  env[RL2_HTTP_HEAD_MAX + 4 * RL2_HTTP_FIELDS_MAX + 64];
    char *envp[RL2_HTTP_ENV_MAX + 1];
} rl2_http_req_t;

/* Read the request head at buf[0..len).  RL2_HTTP_MORE: not all of it
 * is there yet (and it may still fit).  RL2_HTTP_BAD: r->status (400,
 * 431) and r->why say what is wrong; answer and close.  RL2_HTTP_OK:
 * r->head_len bytes are the request; with r->status 0 r->envp is ready
 * for rl2_fcgi_handle, otherwise (an identity field missing, 500, or
 * given twice, 400) answer r->status without deciding. */
int rl2_http_parse(rl2_http_req_t *r, const char *buf, size_t len);

/* Has a whole head come in buf[0..len) (or RL2_HTTP_HEAD_MAX bytes
 * without one, which rl2_http_parse refuses)?  *scanned is how much of
 * buf was looked at before and held no head's end (0 for a new head):
 * only what came since is looked at (from three bytes before it, as a
 * blank line may straddle two reads), and *scanned moves to len.  A head
 * sent a byte at a time then costs time linear in its length; parsed
 * from the start at each byte, a head of bare LFs cost time quadratic
 * in it, seconds of a worker for 64 KiB. */
int rl2_http_head_in(const char *buf, size_t len, size_t *scanned);

/* A CGI answer (cgi[0..len), as rl2_fcgi_handle renders it) as an HTTP
 * response without a body into out[cap]: "Status: 200" becomes 204 No
 * Content, any other status keeps its line and says Content-Length: 0;
 * the header lines follow but Content-Type and Variable-*, and
 * "Connection: close" when the connection is not kept.  Its length, or
 * 0 when cgi is not such an answer or out is too small. */
size_t rl2_http_answer(const char *cgi, size_t len, int keep, int http10,
                       char *out, size_t cap);

/* ---- http_conn.c: the connections of the HTTP/1.1 listener ---- */

/* The connections the workers share: a table by descriptor (a request
 * may arrive in pieces, so each keeps what it has received), and the
 * idle limit.  A connection is either held by the one worker answering
 * it or parked in the listener's epoll set; lock orders those moves
 * against the sweep that closes connections parked too long. */
typedef struct rl2_http_conn rl2_http_conn_t;

typedef struct {
    pthread_mutex_t   lock;
    rl2_http_conn_t **conns; /* by fd; n_conns slots */
    size_t            n_conns;
    size_t            high;          /* above every descriptor opened so far */
    int64_t           idle_us;       /* -k: a request is complete within */
    int64_t           next_sweep_us; /* monotonic; the listener's */
    unsigned long     accepted;      /* connections, by the listener */
} rl2_http_t;

/* The table for descriptors below the process's limit; -1 with err
 * set. */
int  rl2_http_init(rl2_http_t *h, int64_t idle_s, rl2_err_t *err);
void rl2_http_destroy(rl2_http_t *h);

struct rl2_worker;

/* A connection just accepted: 0, or -1 when it could not be taken (it
 * has been closed). */
int rl2_http_open(rl2_http_t *h, int fd);

/* The listener, on a connection the set gave it or it accepted: the
 * connection, held from now on (no longer parked, so the sweep leaves it
 * alone even once another worker listens), or NULL (closed). */
rl2_http_conn_t *rl2_http_take(rl2_http_t *h, int fd);

/* Read what c has, answer the request when its head is whole (one
 * write), then park the connection for its next request or close it
 * (after a malformed head, or one with bytes behind it).  Returns how
 * many requests were answered: 0 or 1. */
unsigned long rl2_http_serve(struct rl2_worker *w, rl2_http_conn_t *c);

/* The listener, now and then: close the connections parked longer than
 * the idle limit since they were accepted or last answered (an idle one,
 * or one whose request stopped arriving). */
void rl2_http_sweep(rl2_http_t *h);

/* rl2_fcgi_send's way for io->http: the answer as HTTP, one write. */
int rl2_http_reply(const rl2_fcgi_io_t *io, const char *buf, size_t len);

/* ---- once.c: one answer per client request ---- */

/* The longest request id kept (nginx's $request_id has 32). */
#define RL2_ONCE_ID_MAX 64

/* The answer kept for request id, copied into out[size]: its length, or
 * 0 when there is none (or it is older than a redirect can be). */
size_t rl2_once_find(const char *id, int64_t now_us, char *out, size_t size);

/* Keep answer[0..len) as the one for request id. */
void rl2_once_keep(const char *id, int64_t now_us, const char *answer,
                   size_t len);

/* ---- admin.c: the admin path's bearer tokens (-K FILE) ---- */

/* A token file: lines "NAME TOKEN".  NAME becomes the author
 * "token:NAME" of a change, which the table keeps in
 * RL2_OVR_AUTHOR_MAX bytes: hence 57, not more. */
#define RL2_ADMIN_NAME_MAX       57
#define RL2_ADMIN_TOKEN_MIN      32
#define RL2_ADMIN_TOKEN_MAX      256
#define RL2_ADMIN_TOKENS_MAX     64
#define RL2_ADMIN_TOKEN_FILE_MAX (64 * 1024)

typedef struct {
    char          name[RL2_ADMIN_NAME_MAX + 1];
    unsigned char token[RL2_ADMIN_TOKEN_MAX]; /* zero-padded */
    size_t        len;
} rl2_admin_token_t;

typedef struct {
    size_t            n;
    rl2_admin_token_t t[RL2_ADMIN_TOKENS_MAX];
} rl2_admin_tokens_t;

/* Read a token file: a regular file, owned by this process's user or by
 * root, neither readable nor writable by others.  0, or -1 with "FILE:
 * what" or "FILE:LINE: what" in err and *out NULL.  *out is freed by
 * rl2_admin_tokens_free (which wipes it). */
int  rl2_admin_tokens_read(const char *path, rl2_admin_tokens_t **out,
                           rl2_err_t *err);
void rl2_admin_tokens_free(rl2_admin_tokens_t *ts);

/* ---- authorizer.c: one FastCGI request ---- */

typedef struct {
    rl2_gens_t  gens;
    const char *health_path;
    const char *metrics_path;  /* -m, or NULL: not answered */
    char       *metrics_token; /* from -T FILE, or NULL: no token */
    int64_t     started_us;    /* monotonic */
    /* The admin path (-a, or NULL: not answered) and its tokens, read
     * from admin_file (-K) at start and on SIGHUP; a worker reads them
     * under admin_lock, the signal thread swaps them under it. */
    const char         *admin_path;
    const char         *admin_file;
    rl2_admin_tokens_t *admin_tokens;
    pthread_mutex_t     admin_lock;
} rl2_server_t;

struct FCGX_Request;

enum { RL2_FCGI_DONE, RL2_FCGI_SLOW };

/* Answer one request.  RL2_FCGI_SLOW (only when io->fcgx is NULL): the
 * request is one only libfcgi's streams can serve (the admin, health and
 * metrics paths); nothing was counted or sent. */
int rl2_fcgi_handle(rl2_server_t *srv, rl2_fcgi_io_t *io);

/* ---- metrics.c: health and metrics paths, -E and -T ---- */

int  rl2_fcgi_events(rl2_metrics_conf_t *mc, const char *text, rl2_err_t *err);
int  rl2_fcgi_token_read(const char *path, char **out, rl2_err_t *err);
void rl2_fcgi_health(rl2_server_t *srv, rl2_gen_t *gen,
                     struct FCGX_Request *req);
void rl2_fcgi_metrics(rl2_server_t *srv, rl2_gen_t *gen,
                      struct FCGX_Request *req);

/* ---- admin.c: the admin path ---- */

/* Read srv->admin_file into srv->admin_tokens (at start); -1 with err
 * set when it cannot be used. */
int rl2_fcgi_admin_init(rl2_server_t *srv, rl2_err_t *err);
/* SIGHUP: read the token file again; on failure the tokens in use stay
 * and the log says why. */
void rl2_fcgi_admin_reload(rl2_server_t *srv);
void rl2_fcgi_admin_destroy(rl2_server_t *srv);
/* A request for the admin path, in either role (the authorizer role is
 * refused: it carries no body). */
void rl2_fcgi_admin(rl2_server_t *srv, rl2_gen_t *gen, struct FCGX_Request *req,
                    int responder);

/* ---- worker.c: one worker thread ---- */

typedef struct rl2_worker {
    rl2_server_t   *srv;
    int             listen_fd;
    int             stop_fd; /* readable once we are stopping */
    pthread_t       tid;
    rl2_vet_t      *vet;         /* its own, 200 KiB */
    int             tcp;         /* listen_fd is TCP: TCP_NODELAY on them */
    int             epoll_fd;    /* rl2_workers_set's, shared, or -1 */
    int             cpus;        /* it may run on, at start */
    int             listening;   /* holds the listener (worker.c) */
    rl2_http_t     *http;        /* -H: the connections, shared; or NULL */
    rl2_http_req_t *http_req;    /* -H: its own, 20 KiB */
    unsigned long   http_served; /* -H: requests answered */
} rl2_worker_t;

void *rl2_worker_main(void *arg);

/* Put a kept connection in the listener's set until its next request
 * (EPOLLONESHOT: out again when it comes); -1 when it cannot be. */
int rl2_worker_keep(const rl2_worker_t *w, int fd);

/* The listener's epoll set, shared by the workers (only the listener
 * waits in it): the listening socket, the stop pipe, and the connections
 * a server keeps open (FCGI_KEEP_CONN) between their requests.  -1 when
 * it cannot be made: the listener polls the socket, and a worker waits on
 * each kept connection itself.  The caller closes it once the workers
 * are joined. */
int rl2_workers_set(int listen_fd, int stop_fd);

#endif /* RL2_FCGI_H */
