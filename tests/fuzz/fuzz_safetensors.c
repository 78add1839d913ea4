/*
 * fuzz_safetensors: st_open on arbitrary bytes (header length, JSON header, data buffer).
 *
 * A file st_open accepts must keep its promises: every tensor found by index is found by
 * name, its byte count is its element count times the dtype size, and its data can be read
 * from first to last byte inside the mapping (a wrong offset check would fault here). A
 * refused file must come with a message.
 */
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_write(data, size);
    rn_error err;
    err.message[0] = '\0';
    st_file *file = NULL;
    rn_status st = st_open(path, &file, &err);
    if (st != RN_OK) {
        fuzz_check(file == NULL, "st_open failed with %s but returned a file", rn_status_str(st));
        fuzz_check(err.message[0] != '\0', "st_open failed with %s and no message", rn_status_str(st));
        return 0;
    }
    fuzz_check(file != NULL, "st_open succeeded without a file");
    size_t n = st_count(file);
    float values[64];
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(file, i);
        fuzz_check(t && t->name, "st_at(%zu) is NULL", i);
        fuzz_check(st_find(file, t->name) == t, "tensor '%s' not found by its name", t->name);
        fuzz_check(t->rank >= 0 && t->rank <= ST_MAX_RANK, "tensor '%s' rank %d", t->name, t->rank);
        uint64_t elements = 1;
        for (int d = 0; d < t->rank; d++) elements *= t->shape[d];  /* st_open checked the product */
        fuzz_check(elements == t->elements, "tensor '%s' elements", t->name);
        fuzz_check(t->nbytes == t->elements * st_dtype_size(t->dtype), "tensor '%s' nbytes", t->name);
        fuzz_check(st_dtype_name(t->dtype) != NULL, "tensor '%s' dtype name", t->name);
        if (t->elements == 0) continue;
        fuzz_check(t->data != NULL, "tensor '%s' has no data", t->name);
        /* The first elements and the last one: both ends of the range must be mapped. */
        uint64_t head = t->elements < 64 ? t->elements : 64;
        st_to_f32(t->dtype, t->data, head, values);
        const unsigned char *last = (const unsigned char *)t->data + t->nbytes - st_dtype_size(t->dtype);
        st_to_f32(t->dtype, last, 1, values);
    }
    fuzz_check(st_find(file, "\x01no such tensor") == NULL, "a tensor that is not there was found");
    st_close(file);
    return 0;
}
