/* serve_sessions.c: named conversations.
 *
 * A conversation's whole context is its recurrent state (rn_session_state_bytes: a few MiB to
 * tens of MiB whatever its length), so it is parked and resumed whole. Three tiers, newest
 * first: a session on the device (resumed by a device copy), its bytes in host memory, its file
 * in --state-dir. Each tier has a byte budget and gives its least recently used sessions to the
 * next one. With a state directory every commit writes the file first (rn_session_save: a
 * temporary file renamed into place), so a kill -9 never loses a finished turn and the file is
 * always the truth: a cached copy is used only while the file is the one this process last
 * wrote or read (same inode, size and modification time); otherwise another server sharing the
 * directory has moved the conversation on, and the file is read again.
 *
 * Requests on one session run one at a time: a request takes the session in this process (a
 * busy mark) and, with a state directory, an flock on "<id>.lock" there, which is what lets two
 * servers share a directory. Ids are checked names (serve_session_id_valid), never paths. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include "serve.h"

typedef struct entry {
    char id[SERVE_SESSION_ID_MAX + 1];
    rn_session *device;          /* tier 1 */
    void *host;                  /* tier 2: rn_session_save_buffer's bytes */
    uint64_t position;
    uint64_t used;               /* the store's clock at the last checkout or commit */
    int busy;                    /* a request holds it */
    int known;                   /* committed at least once (else only reserved by a request) */
    struct stat file;            /* the file as this process last wrote or read it */
    int has_file;
    struct entry *next;
} entry;

struct serve_sessions {
    pthread_mutex_t lock;
    pthread_cond_t released;
    rn_model *model;
    char *dir;
    serve_limits limits;
    size_t state_bytes;
    entry *entries;
    long on_disk;
    uint64_t clock;
};

static void say(char *err, size_t cap, const char *what, const char *id, const char *detail) {
    snprintf(err, cap, "%s '%s': %s", what, id, detail);
}

serve_sessions *serve_sessions_new(rn_model *model, const char *state_dir, const serve_limits *limits, char *err,
                                   size_t cap) {
    serve_sessions *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->released, NULL);
    s->model = model;
    s->limits = *limits;
    rn_session *probe = NULL;
    if (rn_session_init(model, &probe) == RN_OK) s->state_bytes = rn_session_state_bytes(probe);
    rn_session_free(probe);
    if (state_dir) {
        s->dir = strdup(state_dir);
        DIR *d = opendir(state_dir);
        if (!d) {
            snprintf(err, cap, "--state-dir '%s': %s", state_dir, strerror(errno));
            serve_sessions_free(s);
            return NULL;
        }
        for (struct dirent *e; (e = readdir(d));) {
            size_t n = strlen(e->d_name);
            if (n > 6 && !strcmp(e->d_name + n - 6, ".state")) s->on_disk++;
        }
        closedir(d);
        if (access(state_dir, W_OK | X_OK)) {
            snprintf(err, cap, "--state-dir '%s': %s", state_dir, strerror(errno));
            serve_sessions_free(s);
            return NULL;
        }
    }
    return s;
}

static void entry_free(entry *e) {
    rn_session_free(e->device);
    free(e->host);
    free(e);
}

void serve_sessions_free(serve_sessions *s) {
    if (!s) return;
    while (s->entries) {
        entry *e = s->entries;
        s->entries = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->released);
    free(s->dir);
    free(s);
}

static entry *find(serve_sessions *s, const char *id) {
    for (entry *e = s->entries; e; e = e->next)
        if (!strcmp(e->id, id)) return e;
    return NULL;
}

static entry *find_or_add(serve_sessions *s, const char *id) {
    entry *e = find(s, id);
    if (e) return e;
    e = calloc(1, sizeof *e);
    if (!e) return NULL;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->next = s->entries;
    s->entries = e;
    return e;
}

static void path_of(const serve_sessions *s, const char *id, const char *suffix, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s%s", s->dir, id, suffix);
}

static void enforce_budgets(serve_sessions *s, const entry *keep);

/* ---- one request at a time per session -------------------------------------------------- */

int serve_sessions_lock(serve_sessions *s, const char *id, int timeout_ms, char *err, size_t cap) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    entry *e = find_or_add(s, id);
    while (e && e->busy) {
        if (pthread_cond_timedwait(&s->released, &s->lock, &until) == ETIMEDOUT) break;
        e = find_or_add(s, id);  /* a delete may have freed it meanwhile */
    }
    if (!e || e->busy) {
        pthread_mutex_unlock(&s->lock);
        say(err, cap, "session", id, e ? "busy with another request" : "out of memory");
        return -2;
    }
    e->busy = 1;
    pthread_mutex_unlock(&s->lock);
    if (!s->dir) return -1;

    char path[4096];
    path_of(s, id, ".lock", path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        say(err, cap, "session lock", path, strerror(errno));
        serve_sessions_unlock(s, id, -1);
        return -3;
    }
    /* Another server holds it while it runs a request on this session: wait, in steps. */
    for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited += 10) {
        if (errno != EWOULDBLOCK || waited >= timeout_ms) {
            say(err, cap, "session", id,
                errno == EWOULDBLOCK ? "busy with a request on another server" : strerror(errno));
            close(fd);
            serve_sessions_unlock(s, id, -1);
            return errno == EWOULDBLOCK ? -2 : -3;
        }
        struct timespec step = {0, 10 * 1000000L};
        nanosleep(&step, NULL);
    }
    return fd;
}

void serve_sessions_unlock(serve_sessions *s, const char *id, int fd) {
    if (fd >= 0) close(fd);  /* closing releases the flock */
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    if (e) e->busy = 0;
    enforce_budgets(s, NULL);  /* a session in use is never moved: now it may be */
    pthread_cond_broadcast(&s->released);
    pthread_mutex_unlock(&s->lock);
}

/* ---- the tiers ---------------------------------------------------------------------------- */

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Moves the least recently used sessions down a tier until each tier is within its budget.
 * Without a state directory the host tier is the last: what falls off it is forgotten. */
static void enforce_budgets(serve_sessions *s, const entry *keep) {
    for (;;) {
        uint64_t on_device = 0, in_host = 0;
        entry *oldest_device = NULL, *oldest_host = NULL;
        for (entry *e = s->entries; e; e = e->next) {
            if (e->device) {
                on_device += s->state_bytes;
                if (e != keep && !e->busy && (!oldest_device || e->used < oldest_device->used)) oldest_device = e;
            }
            if (e->host) {
                in_host += s->state_bytes;
                if (e != keep && !e->busy && (!oldest_host || e->used < oldest_host->used)) oldest_host = e;
            }
        }
        if (on_device > s->limits.device_budget && oldest_device) {
            entry *e = oldest_device;
            if (!e->host && (e->host = malloc(s->state_bytes)) &&
                rn_session_save_buffer(e->device, e->host, s->state_bytes) != RN_OK) {
                free(e->host);
                e->host = NULL;
            }
            rn_session_free(e->device);
            e->device = NULL;
            continue;
        }
        if (in_host > s->limits.host_budget && oldest_host) {
            free(oldest_host->host);
            oldest_host->host = NULL;
            continue;
        }
        break;
    }
    /* Sessions in no tier and no file are gone (memory-only servers past their budget). */
    for (entry **p = &s->entries; *p;) {
        entry *e = *p;
        if (!e->busy && !e->device && !e->host && !e->has_file) {
            *p = e->next;
            entry_free(e);
        } else {
            p = &e->next;
        }
    }
}

static int load_file(serve_sessions *s, entry *e, const char *path, const struct stat *st, rn_session **out,
                     char *err, size_t cap) {
    rn_session *fresh = NULL;
    rn_status rc = rn_session_init(s->model, &fresh);
    if (rc == RN_OK) rc = rn_session_load(fresh, path);
    if (rc != RN_OK) {
        say(err, cap, "session file", path, rn_status_str(rc));
        rn_session_free(fresh);
        return 500;
    }
    rn_session_free(e->device);
    e->device = NULL;
    free(e->host);
    e->host = NULL;
    e->file = *st;
    e->has_file = 1;
    e->known = 1;
    *out = fresh;
    return 0;
}

int serve_sessions_checkout(serve_sessions *s, const char *id, rn_session **out, char *err, size_t cap) {
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    int status = 0;
    entry *e = find_or_add(s, id);
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        say(err, cap, "session", id, "out of host memory");
        return 500;
    }
    e->used = ++s->clock;
    struct stat st;
    char path[4096] = "";
    int has_file = 0;
    if (s->dir) {
        path_of(s, id, ".state", path, sizeof path);
        has_file = stat(path, &st) == 0;
    }
    if (s->dir && !has_file && e->has_file) {
        /* Another server deleted it: the conversation starts again, from nothing. */
        rn_session_free(e->device);
        e->device = NULL;
        free(e->host);
        e->host = NULL;
        e->has_file = e->known = 0;
    }
    if (has_file && (!e->has_file || !same_file(&st, &e->file))) {
        status = load_file(s, e, path, &st, out, err, cap);
    } else if (e->device) {
        if (rn_session_copy(e->device, out) != RN_OK) status = 500, say(err, cap, "session", id, "device copy failed");
    } else if (e->host) {
        rn_status rc = rn_session_init(s->model, out);
        if (rc == RN_OK) rc = rn_session_load_buffer(*out, e->host, s->state_bytes);
        if (rc != RN_OK) status = 500, say(err, cap, "session", id, rn_status_str(rc));
    } else if (has_file) {
        status = load_file(s, e, path, &st, out, err, cap);
    } else {
        if (s->dir && s->on_disk >= s->limits.max_sessions) {
            status = 507;
            snprintf(err, cap, "%ld sessions are saved, the limit (--max-sessions); delete some first",
                     s->on_disk);
        } else if (rn_session_init(s->model, out) != RN_OK) {
            status = 500, say(err, cap, "session", id, "no memory for a new session");
        }
    }
    if (status) {
        rn_session_free(*out);
        *out = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return status;
}

int serve_sessions_commit(serve_sessions *s, const char *id, rn_session *session, char *err, size_t cap) {
    pthread_mutex_lock(&s->lock);
    entry *e = find_or_add(s, id);
    int status = 0;
    if (!e) {
        status = 500;
        say(err, cap, "session", id, "out of host memory");
    } else if (s->dir) {
        char path[4096];
        path_of(s, id, ".state", path, sizeof path);
        int existed = access(path, F_OK) == 0;
        rn_status rc = rn_session_save(session, path);
        struct stat st;
        if (rc == RN_OK && stat(path, &st) == 0) {
            e->file = st;
            e->has_file = 1;
            if (!existed) s->on_disk++;
        } else {
            status = 500;
            say(err, cap, "session file", path, rc == RN_OK ? strerror(errno) : rn_status_str(rc));
        }
    }
    if (status == 0) {
        rn_session_free(e->device);
        free(e->host);
        e->host = NULL;
        e->device = session;
        e->position = rn_session_position(session);
        e->used = ++s->clock;
        e->known = 1;
        session = NULL;
        enforce_budgets(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    rn_session_free(session);
    return status;
}

int serve_sessions_describe(serve_sessions *s, const char *id, uint64_t *position, const char **tier) {
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    int known = 0;
    *position = 0;
    *tier = NULL;
    struct stat st;
    char path[4096];
    int on_disk = 0;
    if (s->dir) {
        path_of(s, id, ".state", path, sizeof path);
        on_disk = stat(path, &st) == 0;
    }
    /* With a shared directory the file is the truth: another server may have moved the
     * conversation on (a different file: its length is unknown here) or deleted it. */
    if (e && e->known && (!s->dir || (on_disk && same_file(&st, &e->file)))) {
        known = 1;
        *position = e->position;
        *tier = e->device ? "device" : e->host ? "host" : "disk";
    } else if (on_disk) {
        known = 1;
        *tier = "disk";
    }
    pthread_mutex_unlock(&s->lock);
    return known;
}

int serve_sessions_delete(serve_sessions *s, const char *id) {
    pthread_mutex_lock(&s->lock);
    int found = 0;
    for (entry **p = &s->entries; *p; p = &(*p)->next) {
        entry *e = *p;
        if (strcmp(e->id, id)) continue;
        found = e->known;
        if (e->busy) {
            /* A running request will commit it again; forget the cached copies only. */
            rn_session_free(e->device);
            e->device = NULL;
            free(e->host);
            e->host = NULL;
            e->known = 0;
            e->has_file = 0;
        } else {
            *p = e->next;
            entry_free(e);
        }
        break;
    }
    if (s->dir) {
        char path[4096];
        path_of(s, id, ".state", path, sizeof path);
        if (unlink(path) == 0) {
            found = 1;
            s->on_disk--;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found ? 0 : 404;
}

void serve_sessions_counts(serve_sessions *s, long *device, long *host, long *disk) {
    pthread_mutex_lock(&s->lock);
    *device = *host = 0;
    for (entry *e = s->entries; e; e = e->next) {
        *device += e->device != NULL;
        *host += e->host != NULL;
    }
    *disk = s->on_disk;
    pthread_mutex_unlock(&s->lock);
}
