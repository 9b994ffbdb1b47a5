/*
 * escape.c -- text from a zone, a log or a policy written into the
 * formats of ratelimit2ctl: JSON strings, HTML text and attributes, CSV
 * fields (RFC 4180) and a terminal.  Every byte is the client's until
 * proven otherwise: nothing here trusts the text it is given.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

void
rl2_ctl_escape(FILE *f, const char *s, int json)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (json && (c == '"' || c == '\\')) {
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

void
rl2_ctl_text_safe(FILE *f, const char *s)
{
    /* A control byte would move the cursor or rewrite the terminal's
     * title: written as \xNN, as the violation log writes it. */
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x20 || c == 0x7f || c == '\\') {
            fprintf(f, "\\x%02x", c);
        }
        else {
            fputc(c, f);
        }
    }
}
