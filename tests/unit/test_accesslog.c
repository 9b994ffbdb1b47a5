/*
 * test_accesslog.c -- ratelimit2ctl's access-log reader (ctl/accesslog.c):
 * one line of each format a server writes by default read field by field
 * (Apache common and combined, nginx combined with its \xHH escapes,
 * lighttpd with the Host), hostile lines each refused with a reason, and
 * the file reader: gzip, a line past 64 KiB, a last line without its
 * newline, a line of another shape in an auto-detected file, and the
 * skipped lines' numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* The reader is ratelimit2ctl's, not the core's: compiled in here. */
#include "../../ctl/accesslog.c"

/* 2026-12-06T11:25:48Z */
#define T_UTC_S 1796556348LL

/* Parse text (copied: the parser writes into its line). */
static int
parse(const char *text, rl2_alog_format_t format, rl2_alog_entry_t *e,
      rl2_alog_format_t *found, const char **why, char *buf, size_t size)
{
    size_t n = strlen(text);

    assert_true(n < size);
    memcpy(buf, text, n + 1);
    *why = NULL;
    return rl2_alog_parse(buf, n, format, e, found, why);
}

static void
test_apache_combined(void **state)
{
    char              buf[1024];
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why;

    (void)state;
    assert_int_equal(
        parse("203.0.113.7 - alice [06/Dec/2026:12:25:48 +0100] \"GET "
              "/api/v2/items/42?x=%41&y=\\\"q\\\" HTTP/1.1\" 200 5120 "
              "\"https://example.com/a\\\\b\" \"curl/8.4 \\\"x\\\"\"",
              RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf)),
        0);
    assert_int_equal(found, RL2_ALOG_COMBINED);
    assert_int_equal(e.time_us, T_UTC_S * 1000000);
    assert_string_equal(e.client, "203.0.113.7");
    assert_string_equal(e.user, "alice");
    assert_string_equal(e.method, "GET");
    assert_string_equal(e.target, "/api/v2/items/42?x=%41&y=\"q\"");
    assert_string_equal(e.protocol, "HTTP/1.1");
    assert_int_equal(e.status, 200);
    assert_int_equal(e.bytes, 5120);
    assert_string_equal(e.referer, "https://example.com/a\\b");
    assert_string_equal(e.agent, "curl/8.4 \"x\"");
    assert_null(e.host);
}

static void
test_apache_common(void **state)
{
    char              buf[1024];
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why;

    (void)state;
    assert_int_equal(parse("2001:db8::1 - - [06/Dec/2026:03:25:48 -0800] "
                           "\"POST /auth/login HTTP/1.0\" 401 -",
                           RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf)),
                     0);
    assert_int_equal(found, RL2_ALOG_COMMON);
    assert_int_equal(e.time_us, T_UTC_S * 1000000);
    assert_string_equal(e.client, "2001:db8::1");
    assert_null(e.user);
    assert_string_equal(e.method, "POST");
    assert_string_equal(e.target, "/auth/login");
    assert_int_equal(e.status, 401);
    assert_int_equal(e.bytes, -1);
    assert_null(e.referer);
    assert_null(e.agent);
    /* The same line is not combined, and a combined line not common. */
    assert_int_equal(parse("2001:db8::1 - - [06/Dec/2026:03:25:48 -0800] "
                           "\"POST /auth/login HTTP/1.0\" 401 -",
                           RL2_ALOG_COMBINED, &e, &found, &why, buf,
                           sizeof(buf)),
                     -1);
    assert_non_null(why);
    assert_int_equal(parse("192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] "
                           "\"GET / HTTP/1.1\" 200 1 \"-\" \"-\"",
                           RL2_ALOG_COMMON, &e, &found, &why, buf, sizeof(buf)),
                     -1);
    assert_non_null(why);
}

/* nginx writes '"' and '\' and every byte outside printable ASCII as
 * \xHH (escape=default), and 0 bytes as "0". */
static void
test_nginx_combined(void **state)
{
    char              buf[1024];
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why;

    (void)state;
    assert_int_equal(parse("192.0.2.9 - - [06/Dec/2026:11:25:48 +0000] "
                           "\"GET /caf\\xC3\\xA9?q=\\x22 HTTP/2.0\" 304 0 "
                           "\"-\" \"Mozilla/5.0 \\x22x\\x5C\"",
                           RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf)),
                     0);
    assert_int_equal(found, RL2_ALOG_COMBINED);
    assert_string_equal(e.target, "/caf\xc3\xa9?q=\"");
    assert_string_equal(e.protocol, "HTTP/2.0");
    assert_int_equal(e.status, 304);
    assert_int_equal(e.bytes, 0);
    assert_null(e.referer);
    assert_string_equal(e.agent, "Mozilla/5.0 \"x\\");
}

/* lighttpd 1.4's default: "%h %V %u %t \"%r\" %>s %b \"%{Referer}i\"
 * \"%{User-Agent}i\"". */
static void
test_lighttpd(void **state)
{
    char              buf[1024];
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why;

    (void)state;
    assert_int_equal(parse("198.51.100.4 api.example.com bob "
                           "[06/Dec/2026:11:25:48 +0000] \"DELETE "
                           "/projects/7 HTTP/1.1\" 204 - \"-\" \"lwp\"",
                           RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf)),
                     0);
    assert_int_equal(found, RL2_ALOG_LIGHTTPD);
    assert_string_equal(e.host, "api.example.com");
    assert_string_equal(e.user, "bob");
    assert_string_equal(e.method, "DELETE");
    assert_string_equal(e.agent, "lwp");
    /* Named, a "-" Host is no Host; Apache's identd field is never one. */
    assert_int_equal(parse("198.51.100.4 - - [06/Dec/2026:11:25:48 +0000] "
                           "\"GET / HTTP/1.1\" 200 1 \"-\" \"-\"",
                           RL2_ALOG_LIGHTTPD, &e, &found, &why, buf,
                           sizeof(buf)),
                     0);
    assert_null(e.host);
    assert_int_equal(parse("198.51.100.4 ident - [06/Dec/2026:11:25:48 "
                           "+0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"",
                           RL2_ALOG_COMBINED, &e, &found, &why, buf,
                           sizeof(buf)),
                     0);
    assert_null(e.host);
}

static void
test_hostile_lines(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "garbage",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000]",
        /* times */
        "192.0.2.1 - - [32/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [29/Feb/2023:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Foo/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:24:25:48 +0000] \"GET / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 0000] \"GET / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000 \"GET / HTTP/1.1\" 200 1",
        /* quoting and escapes */
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /\\q HTTP/1.1\" 200 "
        "1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /\\x4 HTTP/1.1\" 200 "
        "1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /\\x00 HTTP/1.1\" "
        "200 "
        "1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /\\",
        /* request lines */
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"-\" 408 0",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"\" 400 0",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"\\x16\\x03\\x01\" 400 0",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET * HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET http://x/ HTTP/1.1\" "
        "200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /a b HTTP/1.1\" 400 "
        "1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /a\\x0aX HTTP/1.1\" "
        "400 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / FTP/1.0\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"G(T / HTTP/1.1\" 200 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] "
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\" 200 1",
        /* status and bytes */
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 20 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 099 1",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1x",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 "
        "1234567890123456789",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200",
        /* what follows */
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1 "
        "\"-\"",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1 "
        "\"-\" \"ua\" extra",
        "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1 "
        "\"-\"  \"ua\"",
        "192.0.2.1  - - [06/Dec/2026:11:25:48 +0000] \"GET / HTTP/1.1\" 200 1",
    };
    char              buf[1024];
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf))
            != -1) {
            fail_msg("line %zu was read: %s", i, bad[i]);
        }
        assert_non_null(why);
    }
    /* A NUL byte inside the line (strlen would stop at it). */
    memcpy(buf,
           "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /\0 "
           "HTTP/1.1\" 200 1",
           66);
    assert_int_equal(rl2_alog_parse(buf, 65, RL2_ALOG_AUTO, &e, &found, &why),
                     -1);
    /* Good edge cases: a leap day, a CRLF ending, HTTP/0.9. */
    assert_int_equal(parse("192.0.2.1 - - [29/Feb/2024:00:00:00 +0000] \"GET "
                           "/x\" 200 1\r",
                           RL2_ALOG_AUTO, &e, &found, &why, buf, sizeof(buf)),
                     0);
    assert_null(e.protocol);
    assert_int_equal(e.time_us, 1709164800LL * 1000000);
}

/* A file of lines as the reader meets them, gzip-compressed. */
static void
write_gz(const char *path, const char *text, size_t n)
{
    gzFile gz = gzopen(path, "wb");

    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, text, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

static void
test_reader_gzip(void **state)
{
    const char *ok = "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /a "
                     "HTTP/1.1\" 200 1 \"-\" \"ua\"\n";
    const char *common = "192.0.2.1 - - [06/Dec/2026:11:25:48 +0000] \"GET /b "
                         "HTTP/1.1\" 200 1\n";
    char        path[64], errbuf[256];
    size_t      big = 70 * 1024, n = 0;
    char       *text = malloc(big + 1024);
    rl2_alog_t *r;
    rl2_alog_entry_t        e;
    const rl2_alog_stats_t *st;
    int                     got = 0, rc;

    (void)state;
    assert_non_null(text);
    snprintf(path, sizeof(path), "/tmp/rl2-alog-%d.gz", (int)getpid());
    /* 1 ok, 2 too long, 3 garbage, 4 ok, 5 common in a combined file,
     * 6 ok without its newline */
    n += (size_t)sprintf(text + n, "%s", ok);
    memset(text + n, 'x', big);
    n += big;
    text[n++] = '\n';
    n += (size_t)sprintf(text + n, "not a log line\n%s%s", ok, common);
    memcpy(text + n, ok, strlen(ok) - 1);
    n += strlen(ok) - 1;
    write_gz(path, text, n);
    assert_int_equal(
        rl2_alog_open(path, RL2_ALOG_AUTO, &r, errbuf, sizeof(errbuf)), 0);
    while ((rc = rl2_alog_next(r, &e, errbuf, sizeof(errbuf))) == 1) {
        assert_string_equal(e.target, "/a");
        got++;
    }
    assert_int_equal(rc, 0);
    st = rl2_alog_stats(r);
    assert_int_equal(got, 3);
    assert_int_equal(st->lines, 6);
    assert_int_equal(st->entries, 3);
    assert_int_equal(st->skipped, 3);
    assert_int_equal(st->too_long, 1);
    assert_int_equal(st->format, RL2_ALOG_COMBINED);
    assert_int_equal(st->n_bad, 3);
    assert_int_equal(st->bad_line[0], 2);
    assert_int_equal(st->bad_line[1], 3);
    assert_int_equal(st->bad_line[2], 5);
    rl2_alog_close(r);
    /* A gzip file cut short is an error, after the lines it held. */
    {
        FILE *f = fopen(path, "r+");
        long  size;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        fclose(f);
        assert_int_equal(truncate(path, size - 12), 0);
    }
    assert_int_equal(
        rl2_alog_open(path, RL2_ALOG_AUTO, &r, errbuf, sizeof(errbuf)), 0);
    while ((rc = rl2_alog_next(r, &e, errbuf, sizeof(errbuf))) == 1) {
    }
    assert_int_equal(rc, -1);
    rl2_alog_close(r);
    unlink(path);
    /* A file that is not there. */
    assert_int_equal(rl2_alog_open("/nonexistent/x.log", RL2_ALOG_AUTO, &r,
                                   errbuf, sizeof(errbuf)),
                     -1);
    assert_non_null(strstr(errbuf, "/nonexistent/x.log"));
    free(text);
}

static void
test_format_names(void **state)
{
    (void)state;
    assert_int_equal(rl2_alog_format_parse("nginx"), RL2_ALOG_COMBINED);
    assert_int_equal(rl2_alog_format_parse("apache"), RL2_ALOG_COMBINED);
    assert_int_equal(rl2_alog_format_parse("lighttpd"), RL2_ALOG_LIGHTTPD);
    assert_int_equal(rl2_alog_format_parse("common"), RL2_ALOG_COMMON);
    assert_int_equal(rl2_alog_format_parse("auto"), RL2_ALOG_AUTO);
    assert_int_equal(rl2_alog_format_parse("json"), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apache_combined),
        cmocka_unit_test(test_apache_common),
        cmocka_unit_test(test_nginx_combined),
        cmocka_unit_test(test_lighttpd),
        cmocka_unit_test(test_hostile_lines),
        cmocka_unit_test(test_reader_gzip),
        cmocka_unit_test(test_format_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
