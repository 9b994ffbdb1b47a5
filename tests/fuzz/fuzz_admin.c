/*
 * fuzz_admin.c -- libFuzzer target: the HTTP admin interface's body.
 * Any bytes are POSTed as application/json to rl2_admin_http() (admin.c,
 * admin_json.c) on a real override table and audit file, as a client of
 * ratelimit2-admin or of ratelimit2-fcgi's admin path sends them.  No
 * body may make that code read or write out of bounds (ASan), loop
 * (libFuzzer's timeout) or leak; and:
 *   - the status is one of those admin.h names, the answer one line of
 *     JSON ending in "}\n", with no control byte in it;
 *   - every entry a body put in the table formats as one line of the
 *     state file: seven tab-separated fields, no newline (a target,
 *     author or reason that added a field or a line would be read back
 *     as another entry);
 *   - the audit file the changes wrote reads back whole (rl2_audit_read
 *     stops at a line that does not read, as ratelimit2ctl audit would).
 * Every 256 inputs that file is read and emptied, and so is the table,
 * so that a full table does not turn every later change into a 503.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/admin.h"
#include "ratelimit2/config.h"
#include "base/shm_obj_internal.h"
#include "control/control_internal.h"

static const char policy_text[] =
    "hash_secret = \"fuzz-secret\";\n"
    "tiers = [ \"free\", \"pro\" ];\n"
    "default_tier = \"free\";\n"
    "rules = ( { name = \"login\"; paths = [ \"/login\" ];\n"
    "            limits = ( { rate = \"5/min\"; } ); } );\n"
    "default = { key = \"ip\"; limits = ( { rate = \"600/min\"; } ); };\n";

static rl2_policy_t    *policy;
static rl2_overrides_t *table;
static rl2_audit_t     *audit;
static char             zone[64], shm_name[80], audit_path[64];
static char             answer[64 * 1024];
static rl2_override_t   all[4096];
static unsigned long    runs;

static void
cleanup(void)
{
    rl2_audit_close(audit);
    rl2_overrides_close(table);
    rl2_shm_obj_unlink(shm_name, NULL);
    unlink(audit_path);
    rl2_policy_free(policy);
}

static void
init(void)
{
    rl2_audit_conf_t conf;
    rl2_err_t        err;

    snprintf(zone, sizeof(zone), "/rl2fuzz-%ld-admin", (long)getpid());
    snprintf(shm_name, sizeof(shm_name), "%s.overrides", zone);
    snprintf(audit_path, sizeof(audit_path), "/tmp/rl2fuzz-%ld.audit",
             (long)getpid());
    if (rl2_config_load_string(policy_text, "fuzz.conf", NULL, &policy, &err)
            != RL2_OK
        || rl2_overrides_open(zone, NULL, 0600, &table, &err) != RL2_OK) {
        fprintf(stderr, "fuzz_admin: %s\n", err.msg);
        abort();
    }
    rl2_audit_conf_default(&conf);
    conf.path = audit_path;
    conf.syslog_socket = NULL;
    if (rl2_audit_open(&conf, &audit, &err) != RL2_OK) {
        fprintf(stderr, "fuzz_admin: audit: %s\n", err.msg);
        abort();
    }
    atexit(cleanup);
}

/* Every entry as a state file line: 7 fields, one line. */
static void
check_table(const rl2_clock_t *now, int empty)
{
    char   line[2048];
    size_t n = rl2_overrides_list(table, 0, now, all, 4096);
    int    len;

    n = n > 4096 ? 4096 : n;
    for (size_t i = 0; i < n; i++) {
        rl2_override_t before;
        rl2_err_t      err;
        size_t         tabs = 0;

        len = rl2_ovr_line_format(&all[i], line, sizeof(line));
        if (len < 0) {
            abort();
        }
        for (int j = 0; j < len; j++) {
            if (line[j] == '\n' || line[j] == '\r' || line[j] == '\0') {
                abort();
            }
            tabs += line[j] == '\t';
        }
        if (tabs != 6) {
            abort();
        }
        if (empty) {
            rl2_overrides_remove(table, all[i].kind, all[i].target_kind,
                                 all[i].target, now, &before, &err);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rl2_admin_t admin;
    rl2_clock_t now;
    size_t      len;
    int         status;

    if (policy == NULL) {
        init();
    }
    memset(&admin, 0, sizeof(admin));
    admin.policy = policy;
    admin.table = table;
    admin.audit = audit;
    admin.author = "fuzz";
    admin.origin = RL2_AUDIT_ADMIN;
    rl2_clock_now(&now);
    status =
        rl2_admin_http(&admin, "POST", "application/json", (const char *)data,
                       size, &now, answer, sizeof(answer));
    if (status != 200 && status != 400 && status != 500 && status != 503) {
        abort();
    }
    len = strnlen(answer, sizeof(answer));
    if (len == sizeof(answer) || len < 3 || answer[0] != '{'
        || strcmp(answer + len - 2, "}\n") != 0) {
        abort();
    }
    for (size_t i = 0; i + 1 < len; i++) {
        if ((unsigned char)answer[i] < 0x20 || answer[i] == 0x7f) {
            abort();
        }
    }
    if (++runs % 256 == 0) {
        rl2_err_t err;
        size_t    n;

        if (rl2_audit_read(audit_path, NULL, NULL, &n, &err) != RL2_OK) {
            fprintf(stderr, "fuzz_admin: audit: %s\n", err.msg);
            abort();
        }
        if (truncate(audit_path, 0) != 0) {
            abort();
        }
    }
    check_table(&now, runs % 256 == 0);
    return 0;
}
