/*
 * test_usage_out.c -- the renderers of `ratelimit2ctl usage`
 * (ctl/usage_out.c, ctl/usage_html.c, ctl/escape.c) on usage built in
 * memory: a row's period figures folded from its points; the CSV byte for
 * byte, a rule name with a comma and quotes quoted as RFC 4180 says; the
 * JSON read back by Python's parser with hostile names intact; the HTML
 * with every hostile name escaped and nothing that loads from outside;
 * the text with control bytes escaped.
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

/* The renderers are ratelimit2ctl's, not the core's: compiled in here. */
#include "../../ctl/escape.c"
#include "../../ctl/usage_html.c"
#include "../../ctl/usage_out.c"

/* 2026-12-06T14:00:00Z, a minute's start. */
#define T_START_S 1796565600LL

#define T_HOSTILE_RULE   "<script>alert(\"r\")</script>&amp;"
#define T_HOSTILE_CLIENT "user:<img src=x onerror=alert(1)>\"'"

typedef struct {
    rl2_usage_point_t   points[2][3];
    rl2_ctl_usage_row_t rows[2];
    rl2_usage_client_t  top[1];
    rl2_ctl_usage_t     u;
} t_usage_t;

static void
t_point(rl2_usage_point_t *p, uint64_t admitted, uint64_t refused,
        uint32_t clients, uint32_t peak_ppm)
{
    p->requests = admitted + refused;
    p->admitted = admitted;
    p->refused = refused;
    p->clients = clients;
    p->peak_ppm = peak_ppm;
}

/* Two cells over three minutes; rule 0 is named rule0. */
static void
t_usage(t_usage_t *t, const char *rule0, const char *client)
{
    memset(t, 0, sizeof(*t));
    t_point(&t->points[0][0], 4, 0, 2, 400000);
    t_point(&t->points[0][1], 0, 0, 0, 0);
    t_point(&t->points[0][2], 3, 2, 2, 1000000);
    t_point(&t->points[1][0], 0, 0, 0, 0);
    t_point(&t->points[1][1], 7, 0, 5, 0);
    t_point(&t->points[1][2], 1, 0, 1, 0);
    snprintf(t->rows[0].cell.rule, sizeof(t->rows[0].cell.rule), "%s", rule0);
    snprintf(t->rows[0].cell.tier, sizeof(t->rows[0].cell.tier), "free");
    t->rows[0].cell.requests = 20;
    snprintf(t->rows[1].cell.rule, sizeof(t->rows[1].cell.rule), "%s",
             RL2_USAGE_UNMATCHED);
    snprintf(t->rows[1].cell.tier, sizeof(t->rows[1].cell.tier), "(none)");
    for (int r = 0; r < 2; r++) {
        t->rows[r].points = t->points[r];
        rl2_ctl_usage_fold(&t->rows[r], 3);
    }
    snprintf(t->top[0].client, sizeof(t->top[0].client), "%s", client);
    snprintf(t->top[0].rule, sizeof(t->top[0].rule), "%s", rule0);
    t->top[0].requests = 32;
    t->top[0].error = 16;
    t->top[0].peak_ppm = 1000000;
    t->top[0].last_wall_s = T_START_S + 150;
    snprintf(t->u.metrics, sizeof(t->u.metrics), "/z.metrics");
    t->u.now_s = T_START_S + 150;
    t->u.since_s = 180;
    t->u.step = RL2_USAGE_STEP_MINUTE;
    t->u.first_start_s = T_START_S;
    t->u.n_points = 3;
    t->u.rows = t->rows;
    t->u.n_rows = 2;
    t->u.top = t->top;
    t->u.n_top = 1;
}

/* What a renderer writes, as a string (free it). */
typedef enum { T_TEXT, T_JSON, T_CSV, T_HTML } t_format_t;

static char *
t_render(const rl2_ctl_usage_t *u, t_format_t format)
{
    char  *buf = NULL;
    size_t size = 0;
    FILE  *f = open_memstream(&buf, &size);

    assert_non_null(f);
    switch (format) {
    case T_TEXT:
        rl2_ctl_usage_text(f, u, 10);
        break;
    case T_JSON:
        rl2_ctl_usage_json(f, u);
        break;
    case T_CSV:
        rl2_ctl_usage_csv(f, u);
        break;
    case T_HTML:
        rl2_ctl_usage_html(f, u, 10);
        break;
    }
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void
test_fold(void **state)
{
    t_usage_t t;

    (void)state;
    t_usage(&t, "api", "203.0.113.7");
    assert_int_equal(t.rows[0].requests, 9);
    assert_int_equal(t.rows[0].admitted, 7);
    assert_int_equal(t.rows[0].refused, 2);
    /* Two intervals of 2 clients: the latest is named. */
    assert_int_equal(t.rows[0].clients_max, 2);
    assert_int_equal(t.rows[0].clients_at, 2);
    assert_int_equal(t.rows[0].peak_ppm, 1000000);
    assert_int_equal(t.rows[0].peak_at, 2);
    assert_int_equal(t.rows[1].requests, 8);
    assert_int_equal(t.rows[1].clients_max, 5);
    assert_int_equal(t.rows[1].clients_at, 1);
    assert_int_equal(t.rows[1].peak_ppm, 0);
    assert_int_equal(rl2_ctl_usage_start(&t.u, 2), T_START_S + 120);
    assert_true(rl2_ctl_usage_share(0, 0) == 0);
}

static void
test_csv_quoting(void **state)
{
    t_usage_t t;
    char     *csv;

    (void)state;
    t_usage(&t, "a,\"b\" c", "203.0.113.7");
    csv = t_render(&t.u, T_CSV);
    assert_string_equal(
        csv, "interval_start,step_s,rule,tier,requests,admitted,refused,"
             "clients,peak_ppm\r\n"
             "2026-12-06T14:00:00Z,60,\"a,\"\"b\"\" c\",free,4,4,0,2,400000\r\n"
             "2026-12-06T14:01:00Z,60,\"a,\"\"b\"\" c\",free,0,0,0,0,0\r\n"
             "2026-12-06T14:02:00Z,60,\"a,\"\"b\"\" c\",free,5,3,2,2,"
             "1000000\r\n"
             "2026-12-06T14:00:00Z,60,(unmatched),(none),0,0,0,0,0\r\n"
             "2026-12-06T14:01:00Z,60,(unmatched),(none),7,7,0,5,0\r\n"
             "2026-12-06T14:02:00Z,60,(unmatched),(none),1,1,0,1,0\r\n");
    free(csv);
}

static void
test_csv_line_break(void **state)
{
    FILE  *f;
    char  *buf = NULL;
    size_t size = 0;

    (void)state;
    f = open_memstream(&buf, &size);
    assert_non_null(f);
    rl2_ctl_csv_field(f, "x\r\ny");
    fputc('|', f);
    rl2_ctl_csv_field(f, "plain name");
    assert_int_equal(fclose(f), 0);
    assert_string_equal(buf, "\"x\r\ny\"|plain name");
    free(buf);
}

/* Python's json module reads path back; check (Python code, reading the
 * parsed document d) must hold.  0 when it parses and holds. */
static int
t_python_json(const char *json, const char *check)
{
    char  path[] = "/tmp/test_usage_out.XXXXXX";
    char  cmd[1024];
    int   fd = mkstemp(path);
    FILE *f;
    int   rc;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(json, f);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
             "sys.exit(0 if (%s) else 1)' %s",
             check, path);
    rc = system(cmd);
    unlink(path);
    return rc;
}

static void
test_json_parses(void **state)
{
    t_usage_t t;
    char     *json;

    (void)state;
    /* A quote, a backslash and control bytes in the names. */
    t_usage(&t, "r\"q\\b\x01\t", "user:a\"\\\n");
    json = t_render(&t.u, T_JSON);
    assert_int_equal(
        t_python_json(json,
                      "d[\"cells\"][0][\"rule\"] == \"r\\\"q\\\\b\\x01\\t\""
                      " and d[\"top_clients\"][0][\"client\"] == "
                      "\"user:a\\\"\\\\\\n\""),
        0);
    assert_int_equal(
        t_python_json(json,
                      "d[\"cells\"][0][\"requests\"] == 9 and "
                      "d[\"cells\"][0][\"refused\"] == 2 and "
                      "d[\"cells\"][0][\"total\"][\"requests\"] == 20 and "
                      "d[\"cells\"][0][\"series\"][\"refused\"] == [0,0,2] and "
                      "d[\"cells\"][1][\"series\"][\"clients\"] == [0,5,1] and "
                      "d[\"cells\"][1][\"rule\"] == \"(unmatched)\" and "
                      "d[\"cells\"][0][\"clients_max_start\"] == 1796565720 "
                      "and d[\"intervals\"] == 3 and d[\"step_s\"] == 60"),
        0);
    free(json);
}

static void
test_html_escapes(void **state)
{
    t_usage_t t;
    char     *html;

    (void)state;
    t_usage(&t, T_HOSTILE_RULE, T_HOSTILE_CLIENT);
    html = t_render(&t.u, T_HTML);
    /* No hostile byte unescaped, nothing that loads. */
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<img"));
    assert_null(strstr(html, "href="));
    assert_null(strstr(html, "://"));
    assert_null(strstr(html, "url("));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&quot;r&quot;)&lt;"
                                 "/script&gt;&amp;amp;"));
    assert_non_null(strstr(html, "<td>user:&lt;img src=x onerror=alert(1)"
                                 "&gt;&quot;'</td>"));
    /* A chart per cell, each with its three lines. */
    assert_non_null(strstr(html, "<svg class=\"chart\" id=\"cell-0\""));
    assert_non_null(strstr(html, "<svg class=\"chart\" id=\"cell-1\""));
    assert_null(strstr(html, "id=\"cell-2\""));
    assert_non_null(strstr(html, "<polyline class=\"ref\" points=\"60.0,"
                                 "160.0 380.0,160.0 700.0,105.6\"/>"));
    free(html);
}

static void
test_text_escapes(void **state)
{
    t_usage_t t;
    char     *text;

    (void)state;
    t_usage(&t, "api\x1b[2J", "203.0.113.7\r");
    text = t_render(&t.u, T_TEXT);
    assert_null(strchr(text, '\x1b'));
    assert_null(strchr(text, '\r'));
    assert_non_null(strstr(text, "api\\x1b[2J "));
    assert_non_null(strstr(text, "203.0.113.7\\x0d "));
    /* The row: requests, admitted, refused, share, clients and their
     * minute, peak and room. */
    assert_non_null(strstr(text, "         9          7          2    22.2%"
                                 "        2 2026-12-06 14:02  100.0%"
                                 "    0.0%\n"));
    free(text);
}

/* Bytes above 0x7f a terminal may act on: U+009B (CSI) written as UTF-8
 * and a lone 0x9b (CSI where 8-bit controls are on) come out as \xNN
 * like the C0 controls; well-formed UTF-8 text stays as it is, and the
 * columns stay aligned on what is written. */
static void
test_text_escapes_c1(void **state)
{
    t_usage_t t;
    char     *text;

    (void)state;
    t_usage(&t,
            "caf\xc3\xa9\xc2\x9b"
            "2J",
            "10.0.0.1\x9b"
            "31m");
    text = t_render(&t.u, T_TEXT);
    assert_null(strstr(text, "\xc2\x9b"));
    assert_null(strchr(text, '\x9b'));
    assert_non_null(strstr(text, "caf\xc3\xa9\\xc2\\x9b2J "));
    assert_non_null(strstr(text, "  10.0.0.1\\x9b31m "));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_line_break),
        cmocka_unit_test(test_json_parses),
        cmocka_unit_test(test_html_escapes),
        cmocka_unit_test(test_text_escapes),
        cmocka_unit_test(test_text_escapes_c1),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
