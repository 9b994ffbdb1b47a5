/*
 * fuzz_accesslog.c -- libFuzzer target: ratelimit2ctl's access-log
 * reader (ctl/accesslog.c).  Any bytes are one line for the parser, in
 * the format the first byte names, and the whole input is a file for
 * the reader (lines split, counted, skipped).  Neither may crash, and
 * the parser must keep its promises:
 *   - every field of an entry lies inside the line, NUL-terminated;
 *   - the method is a token, the target a path without a space or a
 *     control byte, the status three digits from 100;
 *   - a refused line always says why.
 *
 * Input: one byte (bits 0-1: the format; bit 7: the input is also read
 * as a file, which costs a file's open), then the line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../ctl/accesslog.c"

static void
inside(const char *field, const char *buf, size_t size)
{
    if (field == NULL) {
        return;
    }
    if (field < buf || field >= buf + size
        || memchr(field, '\0', (size_t)(buf + size - field)) == NULL) {
        abort();
    }
}

static void
check_entry(const rl2_alog_entry_t *e, const char *buf, size_t size)
{
    const char *fields[] = { e->client,   e->user,    e->method, e->target,
                             e->protocol, e->referer, e->agent,  e->host };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        inside(fields[i], buf, size);
    }
    if (e->client == NULL || e->method == NULL || e->target == NULL
        || e->target[0] != '/' || e->status < 100 || e->status > 999) {
        abort();
    }
    for (const char *p = e->method; *p != '\0'; p++) {
        if (!rl2_alog_token_byte((unsigned char)*p)) {
            abort();
        }
    }
    for (const char *p = e->target; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            abort();
        }
    }
}

/* The whole input as a file, through the reader. */
static void
read_file(const uint8_t *data, size_t size)
{
    static int       fd = -1;
    static char      path[64];
    rl2_alog_t      *r;
    rl2_alog_entry_t e;
    char             errbuf[256];
    uint64_t         n = 0;

    if (fd < 0) {
        if ((fd = memfd_create("fuzz_accesslog", 0)) < 0) {
            abort();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    if (rl2_alog_open(path, RL2_ALOG_AUTO, &r, errbuf, sizeof(errbuf)) != 0) {
        abort();
    }
    while (rl2_alog_next(r, &e, errbuf, sizeof(errbuf)) == 1) {
        n++;
    }
    if (rl2_alog_stats(r)->entries != n
        || rl2_alog_stats(r)->entries + rl2_alog_stats(r)->skipped
               != rl2_alog_stats(r)->lines) {
        abort();
    }
    rl2_alog_close(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rl2_alog_entry_t  e;
    rl2_alog_format_t found;
    const char       *why = NULL;
    char             *buf;

    if (size < 1) {
        return 0;
    }
    /* One more byte: the parser writes a NUL at line[len]. */
    if ((buf = malloc(size)) == NULL) {
        return 0;
    }
    memcpy(buf, data + 1, size - 1);
    if (rl2_alog_parse(buf, size - 1, (rl2_alog_format_t)(data[0] & 3), &e,
                       &found, &why)
        == 0) {
        check_entry(&e, buf, size);
    }
    else if (why == NULL) {
        abort();
    }
    free(buf);
    if (data[0] & 0x80) {
        read_file(data + 1, size - 1);
    }
    return 0;
}
