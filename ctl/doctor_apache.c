/*
 * doctor_apache.c -- ratelimit2ctl doctor: the Apache that serves the
 * site, as its own programs describe it: `apache2ctl -M` (the modules
 * loaded, the MPM among them) and `-t -D DUMP_INCLUDES` (the files read,
 * where mod_remoteip's directives are looked for), each a start of Apache
 * that reads its whole configuration; with --apache-config FILE,
 * `apache2 -f FILE` with the same options.
 *
 * The programs run without a shell (fork and execv of a fixed path, the
 * configuration file one argument), with standard input from /dev/null,
 * their output bounded (RL2_DOC_OUT_MAX; more is an error, never a
 * truncated reading) and a deadline (RL2_DOC_RUN_MS: the child is killed
 * after it).  A host without Apache (a FastCGI site) is no error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ratelimit2/clock.h"

#include "ctl.h"

#define RL2_DOC_APACHE2    "/usr/sbin/apache2"
#define RL2_DOC_APACHE2CTL "/usr/sbin/apache2ctl"

enum {
    RL2_DOC_OUT_MAX = 256 * 1024,  /* bytes of a program's output */
    RL2_DOC_RUN_MS = 15000,        /* how long a program may run */
    RL2_DOC_CONF_MAX = 1024 * 1024 /* bytes read of one included file */
};

typedef struct {
    char  *out; /* NUL-terminated, malloc'ed; NULL when it did not run */
    size_t len;
    int    status;   /* exit status; -1: killed, or did not end */
    char   why[160]; /* when out is NULL or status is -1 */
} rl2_doc_run_t;

/* In the child: stdin from /dev/null, stdout and stderr into fd, exec. */
static void
rl2_doc_child(int fd, char *const argv[])
{
    int null = open("/dev/null", O_RDONLY);

    if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
        _exit(126);
    }
    execv(argv[0], argv);
    _exit(errno == ENOENT ? 127 : 126);
}

/* Read the child's output until it closes it, up to the bound and the
 * deadline: 0, or -1 with r->why. */
static int
rl2_doc_read(int fd, rl2_doc_run_t *r)
{
    int64_t end_ms = rl2_mono_us() / 1000 + RL2_DOC_RUN_MS;

    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int64_t       left_ms = end_ms - rl2_mono_us() / 1000;
        ssize_t       n;
        int           rc;

        if (left_ms <= 0) {
            snprintf(r->why, sizeof(r->why), "no answer within %d s",
                     RL2_DOC_RUN_MS / 1000);
            return -1;
        }
        rc = poll(&p, 1, (int)left_ms);
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc < 0) {
            snprintf(r->why, sizeof(r->why), "poll: %s", strerror(errno));
            return -1;
        }
        if (rc == 0) {
            continue;
        }
        if (r->len == RL2_DOC_OUT_MAX) {
            snprintf(r->why, sizeof(r->why), "more than %d bytes of output",
                     RL2_DOC_OUT_MAX);
            return -1;
        }
        n = read(fd, r->out + r->len, RL2_DOC_OUT_MAX - r->len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(r->why, sizeof(r->why), "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            return 0;
        }
        r->len += (size_t)n;
    }
}

/* Run argv (argv[0] a full path); r->out is the caller's to free. */
static void
rl2_doc_run(char *const argv[], rl2_doc_run_t *r)
{
    int   fds[2];
    pid_t pid;
    int   st, ok;

    memset(r, 0, sizeof(*r));
    r->status = -1;
    if ((r->out = malloc(RL2_DOC_OUT_MAX + 1)) == NULL) {
        snprintf(r->why, sizeof(r->why), "out of memory");
        return;
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(r->why, sizeof(r->why), "pipe: %s", strerror(errno));
        free(r->out);
        r->out = NULL;
        return;
    }
    if ((pid = fork()) < 0) {
        snprintf(r->why, sizeof(r->why), "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        free(r->out);
        r->out = NULL;
        return;
    }
    if (pid == 0) {
        rl2_doc_child(fds[1], argv);
    }
    close(fds[1]);
    ok = rl2_doc_read(fds[0], r) == 0;
    close(fds[0]);
    if (!ok) {
        kill(pid, SIGKILL); /* our own child, and only it */
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    r->out[r->len] = '\0';
    if (ok && WIFEXITED(st)) {
        r->status = WEXITSTATUS(st);
    }
    else if (ok) {
        snprintf(r->why, sizeof(r->why), "killed by signal %d",
                 WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
}

/* apache2 -f FILE OPT [ARG], or apache2ctl OPT [ARG]. */
static void
rl2_doc_apache_run(const rl2_ctl_opts_t *o, const char *opt, const char *arg,
                   rl2_doc_run_t *r)
{
    char *argv[7];
    int   n = 0;

    if (o->apache_config != NULL) {
        argv[n++] = (char *)RL2_DOC_APACHE2;
        argv[n++] = (char *)"-f";
        argv[n++] = (char *)o->apache_config;
    }
    else {
        argv[n++] = (char *)RL2_DOC_APACHE2CTL;
    }
    argv[n++] = (char *)opt;
    if (arg != NULL) {
        argv[n++] = (char *)"-D";
        argv[n++] = (char *)arg;
    }
    argv[n] = NULL;
    rl2_doc_run(argv, r);
}

/* Is the module NAME (as -M lists it: " name_module (shared)") loaded? */
static int
rl2_doc_module(const char *modules, const char *name)
{
    size_t      len = strlen(name);
    const char *p = modules;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == modules || p[-1] == ' ' || p[-1] == '\n')
            && strncmp(p + len, " (", 2) == 0) {
            return 1;
        }
        p += len;
    }
    return 0;
}

/* The first line of text, for a message. */
static void
rl2_doc_first_line(const char *text, char *buf, size_t size)
{
    size_t n = strcspn(text, "\n");

    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), text);
}

/* The other limiters Apache may have loaded, each with why it hurts. */
static void
rl2_doc_limiters(const char *modules, rl2_doc_t *d)
{
    static const struct {
        const char *module, *name, *a2, *why;
    } others[] = {
        { "evasive20_module", "mod_evasive", "evasive",
          "it counts the same requests again and answers 403 on its own "
          "(DOSPageCount, DOSSiteCount): a client refused by it has no "
          "RateLimit header and no Retry-After, and the two limiters' "
          "refusals are hard to tell apart" },
        { "qos_module", "mod_qos", "qos",
          "it limits connections and requests by its own rules: the same "
          "requests are counted twice, and its refusals (500 or its own "
          "error page) come without RateLimit headers" },
        { "ratelimit_module", "httpd's mod_ratelimit", "ratelimit",
          "it is a bandwidth limiter (RATE_LIMIT, KiB/s of a response), "
          "not a request limiter: it does not do what mod_ratelimit2 does, "
          "and slows answers that mod_ratelimit2 let through" },
    };
    char fix[RL2_DOC_TEXT_MAX];

    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        if (!rl2_doc_module(modules, others[i].module)) {
            continue;
        }
        snprintf(fix, sizeof(fix),
                 "a2dismod %s (or remove its LoadModule line), then "
                 "apache2ctl graceful",
                 others[i].a2);
        rl2_doc_add(d, "apache", RL2_DOC_WARNING, fix, "%s (%s) is loaded: %s",
                    others[i].name, others[i].module, others[i].why);
    }
}

/* The next included file's path of DUMP_INCLUDES ("  (12) /path"), or
 * NULL; *line moves past it. */
static const char *
rl2_doc_next_include(char **line, char *path, size_t size)
{
    while (**line != '\0') {
        char  *p = *line, *eol = p + strcspn(p, "\n");
        char  *close = memchr(p, ')', (size_t)(eol - p));
        size_t n;

        *line = *eol == '\n' ? eol + 1 : eol;
        if (close == NULL || memchr(p, '(', (size_t)(close - p)) == NULL
            || close[1] != ' ' || close[2] != '/') {
            continue;
        }
        n = (size_t)(eol - (close + 2));
        if (n >= size) {
            continue; /* no path is that long */
        }
        memcpy(path, close + 2, n);
        path[n] = '\0';
        return path;
    }
    return NULL;
}

typedef struct {
    char   header[128]; /* RemoteIPHeader's value, "" when none */
    int    proxies;     /* a RemoteIP*Proxy* directive was met */
    size_t unread;      /* included files that could not be read */
    char   first_unread[256];
} rl2_doc_remoteip_t;

/* One file's mod_remoteip directives (the last RemoteIPHeader wins, as
 * in Apache for one server; a directive in a comment is none). */
static void
rl2_doc_remoteip_file(const char *path, rl2_doc_remoteip_t *ri)
{
    FILE  *f = fopen(path, "r");
    char   line[4096];
    size_t total = 0;

    if (f == NULL) {
        /* Said, not skipped: the directive may be in it. */
        if (ri->unread++ == 0) {
            snprintf(ri->first_unread, sizeof(ri->first_unread),
                     "%.180s: %.60s", path, strerror(errno));
        }
        return;
    }
    while (total < RL2_DOC_CONF_MAX && fgets(line, sizeof(line), f) != NULL) {
        char *p = line + strspn(line, " \t");

        total += strlen(line);
        if (strncasecmp(p, "RemoteIPHeader", 14) == 0
            && (p[14] == ' ' || p[14] == '\t')) {
            p += 14 + strspn(p + 14, " \t");
            snprintf(ri->header, sizeof(ri->header), "%.*s",
                     (int)strcspn(p, " \t\r\n"), p);
        }
        else if (strncasecmp(p, "RemoteIPTrustedProxy", 20) == 0
                 || strncasecmp(p, "RemoteIPInternalProxy", 21) == 0) {
            ri->proxies = 1;
        }
    }
    fclose(f);
}

/* mod_remoteip's header against the policy's X-Forwarded-For. */
static void
rl2_doc_remoteip(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
                 const char *proxies, rl2_doc_t *d)
{
    rl2_doc_remoteip_t ri = { "", 0, 0, "" };
    rl2_doc_run_t      r;
    char               path[4096], fix[RL2_DOC_TEXT_MAX];
    char              *line;

    rl2_doc_apache_run(o, "-t", "DUMP_INCLUDES", &r);
    if (r.out == NULL || r.status != 0) {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING, NULL,
                    "mod_remoteip's RemoteIPHeader not checked: the included "
                    "files could not be listed (-t -D DUMP_INCLUDES: %s)",
                    r.out == NULL || r.status < 0 ? r.why : "failed");
        free(r.out);
        return;
    }
    line = r.out;
    while (rl2_doc_next_include(&line, path, sizeof(path)) != NULL) {
        rl2_doc_remoteip_file(path, &ri);
    }
    free(r.out);
    if (ri.unread > 0) {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING,
                    "run ratelimit2ctl doctor as root",
                    "%zu included files could not be read (%s): mod_remoteip "
                    "may be set up there",
                    ri.unread, ri.first_unread);
    }
    snprintf(fix, sizeof(fix),
             "RemoteIPHeader X-Forwarded-For and RemoteIPInternalProxy %s",
             proxies[0] != '\0' ? proxies : "YOUR-PROXIES");
    if (ri.header[0] == '\0') {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING, fix,
                    "mod_remoteip is loaded without RemoteIPHeader: it "
                    "changes no address");
    }
    else if (policy->n_trusted > 0
             && strcasecmp(ri.header, "X-Forwarded-For") != 0) {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING, fix,
                    "mod_remoteip trusts %s, the policy's trusted_proxies "
                    "X-Forwarded-For (and Forwarded): Apache and the limiter "
                    "may see two different clients",
                    ri.header);
    }
    else if (!ri.proxies) {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING, fix,
                    "mod_remoteip believes X-Forwarded-For from every peer "
                    "(no RemoteIPInternalProxy or RemoteIPTrustedProxy): a "
                    "client can name any address and escape its limits");
    }
    else {
        rl2_doc_add(d, "apache", RL2_DOC_OK, NULL,
                    "mod_remoteip reads %s from its listed proxies", ri.header);
    }
}

/* The MPM, from the module -M lists for it ("mpm_event_module"). */
static void
rl2_doc_mpm(const char *modules, char *mpm, size_t size)
{
    const char *p = strstr(modules, " mpm_");
    size_t      n;

    snprintf(mpm, size, "unknown");
    if (p != NULL && (n = strcspn(p + 5, "_ \n")) > 0
        && strncmp(p + 5 + n, "_module", 7) == 0) {
        snprintf(mpm, size, "%.*s", (int)n, p + 5);
    }
}

/* mod_remoteip against the policy's trusted_proxies. */
static void
rl2_doc_proxy(const rl2_ctl_opts_t *o, const char *modules,
              const rl2_policy_t *policy, rl2_doc_t *d)
{
    char proxies[RL2_DOC_TEXT_MAX / 2], fix[RL2_DOC_TEXT_MAX];

    if (policy == NULL) {
        return;
    }
    rl2_doc_proxies(policy, proxies, sizeof(proxies));
    if (rl2_doc_module(modules, "remoteip_module")) {
        rl2_doc_remoteip(o, policy, proxies, d);
        return;
    }
    if (policy->n_trusted == 0) {
        return;
    }
    snprintf(fix, sizeof(fix),
             "a2enmod remoteip, with RemoteIPHeader X-Forwarded-For and "
             "RemoteIPTrustedProxy %s",
             proxies);
    rl2_doc_add(d, "apache", RL2_DOC_WARNING, fix,
                "the policy trusts proxies (trusted_proxies) but Apache does "
                "not load mod_remoteip: Apache's logs, Require ip and the "
                "application see the proxy's address, not the client's");
}

void
rl2_doc_apache(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
               rl2_doc_t *d)
{
    rl2_doc_run_t r;
    char          mpm[64], first[RL2_DOC_TEXT_MAX / 2];
    const char   *prog =
        o->apache_config != NULL ? RL2_DOC_APACHE2 : RL2_DOC_APACHE2CTL;

    rl2_doc_apache_run(o, "-M", NULL, &r);
    if (r.out == NULL || r.status < 0) {
        rl2_doc_add(d, "apache", RL2_DOC_ERROR, NULL, "%s -M: %s", prog, r.why);
        free(r.out);
        return;
    }
    if (r.status == 127 && o->apache_config == NULL) {
        rl2_doc_add(d, "apache", RL2_DOC_OK, NULL,
                    "no %s here: Apache not inspected (a FastCGI site?)", prog);
        free(r.out);
        return;
    }
    if (r.status != 0) {
        rl2_doc_first_line(r.len > 0 ? r.out : "(no output)", first,
                           sizeof(first));
        rl2_doc_add(d, "apache", RL2_DOC_ERROR,
                    "correct the configuration, then apache2ctl configtest",
                    "%s -M failed (exit %d): %s", prog, r.status, first);
        free(r.out);
        return;
    }
    rl2_doc_mpm(r.out, mpm, sizeof(mpm));
    if (rl2_doc_module(r.out, "ratelimit2_module")) {
        rl2_doc_add(d, "apache", RL2_DOC_OK, NULL,
                    "MPM %s, mod_ratelimit2 loaded", mpm);
    }
    else {
        rl2_doc_add(d, "apache", RL2_DOC_WARNING,
                    "a2enmod ratelimit2, then apache2ctl graceful",
                    "MPM %s, mod_ratelimit2 is not loaded: Apache limits "
                    "nothing",
                    mpm);
    }
    rl2_doc_limiters(r.out, d);
    rl2_doc_proxy(o, r.out, policy, d);
    free(r.out);
}
