/*
 * metrics.c -- what ratelimit2-fcgi shows in the responder role: the
 * health path (JSON, 200 or 503, the same document as the Apache
 * module's ratelimit2-health) and the metrics path (the Prometheus
 * exposition, as the Apache module's ratelimit2-metrics), and the -E
 * and -T options behind them.
 *
 * The metrics path is off unless -m names it.  With -T FILE, a scrape
 * must carry "Authorization: Bearer <the first line of FILE>" (Prometheus
 * `authorization: { credentials_file: ... }`); the token is read once at
 * start, compared in constant time, and never logged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <fcgiapp.h>

#include "fcgi.h"

#define RL2_TOKEN_MAX 256

/* "limited=S,ban=N/S,evictions=N,anomaly=N,zone_full=W/C" (each also
 * "off"), as
 * the Apache directive RateLimit2Events takes them. */
int
rl2_fcgi_events(rl2_metrics_conf_t *mc, const char *text, rl2_err_t *err)
{
    char      buf[256], *save = NULL, *item;
    long long n, w;
    char      tail;

    if (snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf)) {
        rl2_err_set(err, RL2_ERR_CONFIG, "events: too long");
        return -1;
    }
    for (item = strtok_r(buf, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        if (strcmp(item, "limited=off") == 0) {
            mc->limited_interval_ms = 0;
        }
        else if (sscanf(item, "limited=%lld%c", &n, &tail) == 1 && n >= 0
                 && n <= 86400) {
            mc->limited_interval_ms = n * 1000;
        }
        else if (strcmp(item, "ban=off") == 0) {
            mc->ban_count = 0;
        }
        else if (sscanf(item, "ban=%lld/%lld%c", &n, &w, &tail) == 2 && n > 0
                 && n <= 1000000 && w > 0 && w <= 86400) {
            mc->ban_count = (uint32_t)n;
            mc->ban_window_ms = w * 1000;
        }
        else if (strcmp(item, "evictions=off") == 0) {
            mc->eviction_alert = 0;
        }
        else if (sscanf(item, "evictions=%lld%c", &n, &tail) == 1 && n >= 0
                 && n <= 1000000000) {
            mc->eviction_alert = (uint32_t)n;
        }
        else if (strcmp(item, "anomaly=off") == 0) {
            mc->anomaly_min = 0;
        }
        else if (sscanf(item, "anomaly=%lld%c", &n, &tail) == 1 && n >= 1
                 && n <= 1000000000) {
            mc->anomaly_min = (uint32_t)n;
        }
        else if (strncmp(item, "zone_full=", 10) == 0) {
            if (rl2_metrics_zone_full_parse(item + 10, mc, err) != RL2_OK) {
                return -1;
            }
        }
        else {
            rl2_err_set(err, RL2_ERR_CONFIG,
                        "events: bad item \"%.60s\" "
                        "(expected limited=S|off, ban=N/S|off, "
                        "evictions=N|off, anomaly=N|off, "
                        "zone_full=WARNING[/CRITICAL]|off)",
                        item);
            return -1;
        }
    }
    return 0;
}

/* The first line of path, without its newline. */
int
rl2_fcgi_token_read(const char *path, char **out, rl2_err_t *err)
{
    char   buf[RL2_TOKEN_MAX + 2];
    FILE  *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        rl2_err_set(err, RL2_ERR_SYS, "-T %s: cannot open", path);
        return -1;
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    if (n == 0 || n > RL2_TOKEN_MAX) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "-T %s: the first line must be a "
                    "token of 1 to %d bytes",
                    path, RL2_TOKEN_MAX);
        return -1;
    }
    *out = strdup(buf);
    return *out != NULL ? 0 : -1;
}

static int
rl2_token_ok(const char *want, const char *auth)
{
    static const char bearer[] = "Bearer ";
    size_t            n = strlen(want), i;
    unsigned char     diff = 0;

    if (auth == NULL || strncmp(auth, bearer, sizeof(bearer) - 1) != 0
        || strlen(auth + sizeof(bearer) - 1) != n) {
        return 0;
    }
    auth += sizeof(bearer) - 1;
    for (i = 0; i < n; i++) {
        diff |= (unsigned char)(want[i] ^ auth[i]);
    }
    return diff == 0;
}

static void
rl2_env_of(rl2_server_t *srv, rl2_gen_t *gen, rl2_metrics_env_t *env)
{
    rl2_clock_t now;

    rl2_clock_now(&now);
    rl2_backend_env(gen->zone->backend, env);
    env->overrides = gen->policy->overrides; /* NULL: turned off */
    env->factors_on = gen->policy->factors_on;
    env->generation = gen->number;
    env->uptime_s = (now.mono_us - srv->started_us) / RL2_US_PER_S;
}

static void
rl2_put(FCGX_Request *req, const char *s, size_t n)
{
    if (FCGX_PutStr(s, (int)n, req->out) < 0) {
        rl2_log_request(RL2_LOG_ERROR, LOG_WARNING,
                        "could not send an "
                        "answer: the web server closed the connection");
    }
}

void
rl2_fcgi_health(rl2_server_t *srv, rl2_gen_t *gen, FCGX_Request *req)
{
    char              body[1024], out[2048];
    rl2_metrics_env_t env;
    int               code;

    rl2_env_of(srv, gen, &env);
    code = rl2_metrics_health(&env, body, sizeof(body));
    rl2_put(req, out,
            rl2_cgi_response(out, sizeof(out),
                             code == 200 ? "200 OK" : "503 Service Unavailable",
                             NULL, 0, NULL, "application/json", body));
}

static void
rl2_fcgi_out(void *ctx, const char *s, size_t n)
{
    FCGX_PutStr(s, (int)n, ((FCGX_Request *)ctx)->out);
}

void
rl2_fcgi_metrics(rl2_server_t *srv, rl2_gen_t *gen, FCGX_Request *req)
{
    static const char head[] = "Status: 200 OK\r\n"
                               "Content-Type: text/plain; version=0.0.4; "
                               "charset=utf-8\r\n"
                               "Cache-Control: no-store\r\n\r\n";
    rl2_metrics_env_t env;
    char              out[512];

    if (srv->metrics_token != NULL
        && !rl2_token_ok(srv->metrics_token,
                         FCGX_GetParam("HTTP_AUTHORIZATION", req->envp))) {
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "metrics path: a "
                        "request without the token was refused");
        rl2_put(
            req, out,
            rl2_cgi_error(out, sizeof(out), 403, "a bearer token is required"));
        return;
    }
    rl2_env_of(srv, gen, &env);
    rl2_put(req, head, sizeof(head) - 1);
    rl2_metrics_prom(rl2_backend_metrics(gen->zone->backend), &env,
                     rl2_fcgi_out, req);
}
