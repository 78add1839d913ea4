/*
 * json_guard.c: the byte scan before cJSON and the duplicate-key check after it (json_guard.h).
 */
#include "json_guard.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (at most `left` bytes), or 0 when it is invalid:
 * overlong forms, surrogates (U+D800..DFFF) and code points above U+10FFFF are refused. */
static size_t utf8_sequence(const unsigned char *p, size_t left) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;   /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;          /* overlong below U+0800 */
        if (c == 0xed) hi = 0x9f;          /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;          /* overlong below U+10000 */
        if (c == 0xf4) hi = 0x8f;          /* above U+10FFFF */
    } else {
        return 0;                          /* continuation byte, C0/C1 overlong, F5..FF */
    }
    if (left < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return len;
}

static bool is_json_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_number_char(unsigned char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

rn_status rn_json_prescan(const char *text, size_t len, const rn_json_limits *limits,
                          rn_error *err) {
    const unsigned char *s = (const unsigned char *)text;
    bool in_string = false;
    size_t depth = 0, number_run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        size_t at = limits->base_offset + i;
        if (c == 0) return rn_fail(err, RN_ERR_JSON, "NUL byte at offset %zu", at);
        if (c >= 0x80) {
            size_t n = utf8_sequence(s + i, len - i);
            if (n == 0) return rn_fail(err, RN_ERR_JSON, "invalid UTF-8 at offset %zu", at);
            i += n - 1;
            number_run = 0;
            continue;
        }
        if (in_string) {
            /* cJSON copies raw control characters into strings; JSON does not allow them */
            if (c < 0x20)
                return rn_fail(err, RN_ERR_JSON,
                               "raw control character 0x%02x in a string at offset %zu", c, at);
            if (c == '"') {
                in_string = false;
            } else if (c == '\\' && i + 1 < len) {
                /* cJSON stores strings NUL-terminated, so "\u0000" would silently cut a string
                 * short and could make two different keys collide. */
                if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
                    return rn_fail(err, RN_ERR_JSON, "\\u0000 escape at offset %zu", at);
                /* skip the escaped byte, so that \" does not end the string; a multi-byte
                 * character after the backslash is left for the UTF-8 check */
                if (s[i + 1] < 0x80) i++;
            }
            continue;
        }
        /* cJSON skips every byte up to 0x20 as whitespace; JSON allows four of them */
        if (c < 0x20 && !is_json_space(c))
            return rn_fail(err, RN_ERR_JSON, "control character 0x%02x at offset %zu", c, at);
        if (is_number_char(c)) {
            if (++number_run > limits->max_number_chars)
                return rn_fail(err, RN_ERR_JSON,
                               "number literal longer than %zu characters at offset %zu",
                               limits->max_number_chars, at);
            continue;
        }
        number_run = 0;
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > limits->max_depth)
                return rn_fail(err, RN_ERR_JSON, "nested deeper than %zu at offset %zu",
                               limits->max_depth, at);
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return RN_OK;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

rn_status rn_json_duplicate_key(const cJSON *object, const char **duplicate, rn_error *err) {
    *duplicate = NULL;
    size_t count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, object) count++;
    if (count < 2) return RN_OK;
    const char **keys = malloc(count * sizeof *keys);
    if (!keys) return rn_fail(err, RN_ERR_OUT_OF_HOST_MEMORY, "no memory to sort %zu keys", count);
    size_t i = 0;
    cJSON_ArrayForEach(item, object) keys[i++] = item->string;
    qsort(keys, count, sizeof *keys, compare_strings);
    for (i = 1; i < count; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            *duplicate = keys[i];   /* points into `object`, not into the freed array */
            break;
        }
    }
    free(keys);
    return RN_OK;
}
