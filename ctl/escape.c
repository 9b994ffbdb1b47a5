/*
 * escape.c -- text from a zone, a log or a policy written into the
 * formats of ratelimit2ctl: JSON strings, HTML text and attributes, CSV
 * fields (RFC 4180) and a terminal.  Every byte is the client's until
 * proven otherwise: nothing here trusts the text it is given.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong form, no surrogate, nothing above U+10FFFF), 0 if there is
 * none. */
static size_t
rl2_ctl_utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t        n;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    }
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    }
    else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    }
    else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

void
rl2_ctl_escape(FILE *f, const char *s, int json)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        size_t        n;

        if (json && c >= 0x80) {
            /* JSON is UTF-8 (RFC 8259): a byte that starts no well-formed
             * sequence (from a log, a header, a file name) is written as
             * the text \xHH, as the terminal output shows it. */
            if ((n = rl2_ctl_utf8_len((const unsigned char *)s)) == 0) {
                fprintf(f, "\\\\x%02x", c);
                continue;
            }
            fwrite(s, 1, n, f);
            s += n - 1;
        }
        else if (json && (c == '"' || c == '\\')) {
            fprintf(f, "\\%c", c);
        }
        else if (json && c < 0x20) {
            fprintf(f, "\\u%04x", c);
        }
        else if (!json && c == '<') {
            fputs("&lt;", f);
        }
        else if (!json && c == '>') {
            fputs("&gt;", f);
        }
        else if (!json && c == '&') {
            fputs("&amp;", f);
        }
        else if (!json && c == '"') {
            fputs("&quot;", f);
        }
        else {
            fputc(c, f);
        }
    }
}

void
rl2_ctl_json_str(FILE *f, const char *before, const char *name,
                 const char *value)
{
    fprintf(f, "%s\"%s\":\"", before, name);
    rl2_ctl_escape(f, value, 1);
    fputc('"', f);
}

void
rl2_ctl_csv_field(FILE *f, const char *s)
{
    /* RFC 4180, 2.6 and 2.7: a field holding a comma, a quote or a line
     * break is quoted, its quotes doubled; any other is written as is. */
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"') {
            fputc('"', f);
        }
        fputc(*s, f);
    }
    fputc('"', f);
}

/* The bytes at s a terminal shows as text: a well-formed UTF-8
 * sequence, or a printable ASCII byte other than '\\'; 0 for a byte
 * written as \xNN: a C0 control or DEL (it would move the cursor or
 * rewrite the terminal's title), a C1 control in UTF-8 (U+0080 to
 * U+009F: xterm acts on U+009B as on ESC [), a byte of no well-formed
 * sequence (0x9b alone is CSI where 8-bit controls are on). */
static size_t
rl2_ctl_text_run(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;

    if (u[0] >= 0x80) {
        return u[0] == 0xc2 && u[1] < 0xa0 ? 0 : rl2_ctl_utf8_len(u);
    }
    return u[0] < 0x20 || u[0] == 0x7f || u[0] == '\\' ? 0 : 1;
}

void
rl2_ctl_text_safe(FILE *f, const char *s)
{
    while (*s != '\0') {
        size_t n = rl2_ctl_text_run(s);

        if (n == 0) {
            fprintf(f, "\\x%02x", (unsigned char)*s++);
            continue;
        }
        fwrite(s, 1, n, f);
        s += n;
    }
}

size_t
rl2_ctl_text_safe_len(const char *s)
{
    size_t len = 0;

    while (*s != '\0') {
        size_t n = rl2_ctl_text_run(s);

        len += n == 0 ? 4 : n;
        s += n == 0 ? 1 : n;
    }
    return len;
}
