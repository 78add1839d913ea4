/*
 * fuzz_config: rn_config_parse on arbitrary bytes, exactly `size` of them (no terminating NUL,
 * so a read past the length is an AddressSanitizer report). A config that parses must
 * describe a model the runtime can size without overflow: every dimension positive and
 * within the limits of config.h, the heads dividing the dimensions.
 */
#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rn_error err;
    err.message[0] = '\0';
    rn_config cfg;
    rn_status st = rn_config_parse((const char *)data, size, &cfg, &err);
    if (st != RN_OK) {
        fuzz_check(err.message[0] != '\0', "rn_config_parse failed with %s and no message", rn_status_str(st));
        return 0;
    }
    fuzz_check(cfg.embed_dim > 0 && cfg.embed_dim <= RN_MAX_DIM, "embed_dim %lld", (long long)cfg.embed_dim);
    fuzz_check(cfg.value_embed_dim > 0 && cfg.value_embed_dim <= RN_MAX_DIM, "value_embed_dim %lld",
               (long long)cfg.value_embed_dim);
    fuzz_check(cfg.ffn_dim > 0 && cfg.ffn_dim <= RN_MAX_DIM, "ffn_dim %lld", (long long)cfg.ffn_dim);
    fuzz_check(cfg.layers > 0 && cfg.layers <= RN_MAX_LAYERS, "layers %lld", (long long)cfg.layers);
    fuzz_check(cfg.heads > 0 && cfg.heads <= RN_MAX_HEADS, "heads %lld", (long long)cfg.heads);
    fuzz_check(cfg.vocab_size > 0 && cfg.vocab_size <= RN_MAX_VOCAB, "vocab %lld", (long long)cfg.vocab_size);
    fuzz_check(cfg.chunk_size > 0 && cfg.chunk_size <= RN_MAX_CHUNK, "chunk %lld", (long long)cfg.chunk_size);
    fuzz_check(cfg.kv_heads > 0 && cfg.heads % cfg.kv_heads == 0, "kv_heads %lld of %lld", (long long)cfg.kv_heads,
               (long long)cfg.heads);
    fuzz_check(cfg.key_head_dim > 0 && cfg.key_head_dim * cfg.heads == cfg.key_embed_dim, "key head dim");
    fuzz_check(cfg.value_head_dim > 0 && cfg.value_head_dim * cfg.heads == cfg.value_embed_dim, "value head dim");
    fuzz_check(cfg.layernorm_eps == cfg.layernorm_eps, "layernorm_eps is NaN");
    fuzz_check(rn_family_name(cfg.family) != NULL, "family");
    return 0;
}
