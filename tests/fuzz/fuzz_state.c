/*
 * fuzz_state: rn_session_load's validation of a saved session state.
 *
 * Loading a state needs a session, and a session needs an OpenCL device: the tiny model is
 * written and loaded once per process on the default device (PoCL in CI; $RETNET_DEVICE
 * chooses another). With no device every input is a no-op, so the target still runs.
 *
 * Each input is loaded twice: as it is, and with its last 8 bytes replaced by the FNV-1a of
 * the rest (the file's checksum), so that mutations get past the checksum to the checks
 * behind it. A state that loads must leave the session consistent (recent tokens inside the
 * vocabulary); the session is reset after it.
 *
 * RN_FUZZ_STATE_SEEDS=dir makes the initialisation write valid states of the tiny model into
 * dir (the seed corpus; the model, hence the fingerprint, is the same on every run).
 */
#include <string.h>

#include "fuzz_tiny_model.h"
#include "rn_common.h"

static rn_context *ctx;
static rn_model *model;
static rn_session *session;
static uint8_t *scratch;
static size_t scratch_size;

static void release(void) {
    rn_session_free(session);
    rn_model_free(model);
    rn_context_free(ctx);
    free(scratch);
    session = NULL;
    model = NULL;
    ctx = NULL;
    scratch = NULL;
}

static void write_seeds(const char *dir) {
    int32_t tokens[300];
    for (int i = 0; i < 300; i++) tokens[i] = (int32_t)((i * 7 + 3) % 32);
    const size_t lengths[3] = {0, 3, 300};
    char path[512];
    for (int i = 0; i < 3; i++) {
        rn_status st = rn_session_reset(session);
        if (st == RN_OK && lengths[i]) st = rn_session_prefill(session, tokens, lengths[i], RN_MODE_CHUNKWISE, 0, NULL);
        snprintf(path, sizeof path, "%s/valid-%zu-tokens.state", dir, lengths[i]);
        if (st == RN_OK) st = rn_session_save(session, path);
        fuzz_check(st == RN_OK, "writing %s: %s %s", path, rn_status_str(st), rn_context_last_error(ctx));
        fprintf(stderr, "fuzz_state: wrote %s\n", path);
    }
    fuzz_check(rn_session_reset(session) == RN_OK, "reset");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char message[1024] = "";
    rn_status st = rn_context_init(&ctx, NULL, message, sizeof message);
    if (st != RN_OK) {
        fprintf(stderr, "fuzz_state: no OpenCL device (%s: %s); every input is skipped\n", rn_status_str(st),
                message);
        ctx = NULL;
        return 0;
    }
    const char *dir = fuzz_tiny_model_write(0);
    st = rn_model_load(ctx, dir, NULL, &model);
    fuzz_check(st == RN_OK, "loading the tiny model: %s %s", rn_status_str(st), rn_context_last_error(ctx));
    st = rn_session_init(model, &session);
    fuzz_check(st == RN_OK, "session: %s %s", rn_status_str(st), rn_context_last_error(ctx));
    fuzz_model_dir_remove();  /* the weights are on the device now */
    atexit(release);
    const char *seeds = getenv("RN_FUZZ_STATE_SEEDS");
    if (seeds && *seeds) write_seeds(seeds);
    return 0;
}

static void load_one(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_write(data, size);
    rn_status st = rn_session_load(session, path);
    if (st != RN_OK) {
        fuzz_check(st == RN_ERR_STATE_FILE || st == RN_ERR_IO, "rn_session_load gave %s: %s", rn_status_str(st),
                   rn_context_last_error(ctx));
        return;
    }
    int32_t recent[512];
    size_t n = rn_session_recent(session, recent, 512);
    fuzz_check(n <= rn_session_position(session), "%zu recent tokens at position %llu", n,
               (unsigned long long)rn_session_position(session));
    for (size_t i = 0; i < n; i++) fuzz_check(recent[i] >= 0 && recent[i] < 32, "recent token %d", recent[i]);
    fuzz_check(rn_session_logits(session) != NULL, "no logits");
    fuzz_check(rn_session_reset(session) == RN_OK, "reset after a load");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!session) return 0;
    load_one(data, size);
    if (size < sizeof(uint64_t)) return 0;
    if (size > scratch_size) {
        uint8_t *grown = realloc(scratch, size);
        fuzz_check(grown != NULL, "realloc");
        scratch = grown;
        scratch_size = size;
    }
    memcpy(scratch, data, size);
    uint64_t sum = rn_fnv1a(RN_FNV_OFFSET, scratch, size - sizeof sum);
    memcpy(scratch + size - sizeof sum, &sum, sizeof sum);
    load_one(scratch, size);
    return 0;
}
