/*
 * init.c -- ratelimit2ctl init --type TYPE [-o FILE]: write a commented
 * starter policy for one kind of site (api, auth, upload, database).
 *
 * The templates are conf/init/TYPE.conf, compiled in (the Makefile turns
 * them into init_templates.h), so the installed tool needs no file of
 * its own.  Each is loaded by the core before it is written: a template
 * the loader refuses is a bug of this build, reported, never written.
 * An existing FILE is not overwritten: it may be the site's policy.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ratelimit2/config.h"

#include "ctl.h"
#include "init_templates.h" /* rl2_ctl_templates[]: name, text */

static const char *
rl2_ctl_template(const char *type)
{
    for (size_t i = 0; i < RL2_CTL_N_TEMPLATES; i++) {
        if (strcmp(rl2_ctl_templates[i].name, type) == 0) {
            return rl2_ctl_templates[i].text;
        }
    }
    return NULL;
}

/* "api, auth, ..." for messages. */
static void
rl2_ctl_template_names(char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < RL2_CTL_N_TEMPLATES && n < len; i++) {
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "|" : "",
                              rl2_ctl_templates[i].name);
    }
}

/* Write all of text to fd; 0, or -1 with errno. */
static int
rl2_ctl_write_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, text, len);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        text += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The text into a file of a random name beside path (mkstemp), synced,
 * then linked as path: link() never replaces a file, even one created
 * since a check, and path appears whole or not at all.  A failure
 * removes only the random name, never whatever is at path. */
static int
rl2_ctl_init_write(const char *path, const char *text)
{
    size_t len = strlen(text);
    char   tmp[PATH_MAX];
    int    fd, e = 0;
    mode_t mask;

    if (path == NULL) {
        return rl2_ctl_write_all(STDOUT_FILENO, text, len) == 0
                   ? RL2_CTL_OK
                   : rl2_ctl_fail(RL2_CTL_FAIL, "stdout: %s", strerror(errno));
    }
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: %s", path,
                            strerror(ENAMETOOLONG));
    }
    if ((fd = mkstemp(tmp)) < 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: %s", path, strerror(errno));
    }
    /* mkstemp makes it 0600: 0644 under the umask, as open() would */
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0644 & ~mask) != 0 || rl2_ctl_write_all(fd, text, len) != 0
        || fsync(fd) != 0) {
        e = errno;
    }
    if (close(fd) != 0 && e == 0) {
        e = errno;
    }
    if (e == 0 && link(tmp, path) != 0) {
        e = errno;
    }
    unlink(tmp);
    if (e != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: %s%s", path, strerror(e),
                            e == EEXIST ? " (not overwritten)" : "");
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_init(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    char          names[128], name[64];
    const char   *text;
    rl2_policy_t *policy;
    rl2_err_t     err;

    (void)argv;
    rl2_ctl_template_names(names, sizeof(names));
    if (argc != 0 || o->init_type == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: init --type %s [-o FILE]",
                            names);
    }
    if ((text = rl2_ctl_template(o->init_type)) == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "--type: \"%s\" is not one of %s",
                            o->init_type, names);
    }
    snprintf(name, sizeof(name), "template %s", o->init_type);
    if (rl2_config_load_string(text, name, NULL, &policy, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    rl2_policy_free(policy);
    return rl2_ctl_init_write(o->output, text);
}
