/*
 * json_guard.h: the checks that make cJSON safe and strict for the models layer's JSON
 * (config.json, the safetensors header).
 *
 * cJSON 1.7.15 as Debian builds it recurses up to 1000 levels, truncates numbers at 63
 * characters, accepts invalid UTF-8, raw control characters and "\u0000" (which cuts its
 * NUL-terminated strings short), and keeps every copy of a repeated key while its getters
 * return the first. rn_json_prescan runs on the text before cJSON sees it; rn_json_duplicate_key
 * runs on an object after the parse.
 *
 * Messages name no file: the caller adds its own with rn_error_prefix.
 */
#ifndef RN_JSON_GUARD_H
#define RN_JSON_GUARD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "rn_common.h"

typedef struct rn_json_limits {
    size_t max_depth;          /* '{' and '[' open at once */
    size_t max_number_chars;   /* longest run of number characters outside strings */
    size_t base_offset;        /* where text[0] sits in its file, so messages give file offsets */
} rn_json_limits;

/* RN_ERR_JSON, with the byte offset, for: invalid UTF-8 (overlong forms, surrogates, code
 * points above U+10FFFF, cut sequences), a NUL byte, a raw control character inside a string or
 * one outside strings other than JSON whitespace, a "\u0000" escape, nesting deeper than
 * max_depth, a number literal longer than max_number_chars. Syntax is left to cJSON. */
rn_status rn_json_prescan(const char *text, size_t len, const rn_json_limits *limits,
                          rn_error *err);

/* Sets *duplicate to the first key, in sorted order, that `object` holds twice, or to NULL when
 * its keys are distinct. RN_ERR_OUT_OF_HOST_MEMORY when the keys cannot be sorted. */
rn_status rn_json_duplicate_key(const cJSON *object, const char **duplicate, rn_error *err);

#endif /* RN_JSON_GUARD_H */
