/*
 * once.c -- one answer per client request, however often the web server
 * asks for it.
 *
 * nginx runs auth_request again after an internal redirect (try_files to
 * /index.php, an index file, error_page): the same client request would
 * be counted twice, and refused by the second count.  The shipped snippet
 * passes nginx's $request_id, which an internal redirect keeps, as
 * RATELIMIT2_REQUEST_ID.  The answer given to an id is kept for a short
 * while and sent again, unchanged, when the same request asks again.
 *
 * A fixed table, direct-mapped by a hash of the id, one lock: nothing is
 * allocated, and memory is bounded whatever the server sends.  An answer
 * pushed out by another id before its request asks again costs one more
 * count, never a missed one.
 */
#include <pthread.h>
#include <string.h>

#include "fcgi.h"

#define RL2_ONCE_SLOTS  512
#define RL2_ONCE_TTL_US (30 * RL2_US_PER_S) /* longer than any redirect */

typedef struct {
    char    id[RL2_ONCE_ID_MAX + 1]; /* "" for an empty slot */
    int64_t at_us;                   /* when answered, monotonic */
    size_t  len;
    char    answer[RL2_CGI_RESPONSE_MAX];
} rl2_once_slot_t;

static pthread_mutex_t rl2_once_lock = PTHREAD_MUTEX_INITIALIZER;
static rl2_once_slot_t rl2_once_slots[RL2_ONCE_SLOTS];

/* FNV-1a: the ids are the server's, not chosen to collide. */
static rl2_once_slot_t *
rl2_once_slot(const char *id)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return &rl2_once_slots[h % RL2_ONCE_SLOTS];
}

size_t
rl2_once_find(const char *id, int64_t now_us, char *out, size_t size)
{
    rl2_once_slot_t *s;
    size_t           len = 0;

    if (id == NULL || id[0] == '\0' || strlen(id) > RL2_ONCE_ID_MAX) {
        return 0;
    }
    s = rl2_once_slot(id);
    pthread_mutex_lock(&rl2_once_lock);
    if (strcmp(s->id, id) == 0 && now_us - s->at_us < RL2_ONCE_TTL_US
        && s->len <= size) {
        memcpy(out, s->answer, s->len);
        len = s->len;
    }
    pthread_mutex_unlock(&rl2_once_lock);
    return len;
}

void
rl2_once_keep(const char *id, int64_t now_us, const char *answer, size_t len)
{
    rl2_once_slot_t *s;

    if (id == NULL || id[0] == '\0' || strlen(id) > RL2_ONCE_ID_MAX || len == 0
        || len > sizeof(s->answer)) {
        return;
    }
    s = rl2_once_slot(id);
    pthread_mutex_lock(&rl2_once_lock);
    memcpy(s->id, id, strlen(id) + 1);
    s->at_us = now_us;
    memcpy(s->answer, answer, len);
    s->len = len;
    pthread_mutex_unlock(&rl2_once_lock);
}
