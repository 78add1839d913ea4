/* cli_tokenize.c: `retnet tokenize`: text to token ids (a JSON array) or ids to text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rn_common.h"
#include "tokenizer.h"

int cmd_tokenize(const options *o) {
    if (!o->model) return cli_usage_error("--model DIR is required%s", "");
    if (!!o->text + !!o->text_file + !!o->decode != 1)
        return cli_usage_error("give one of --text, --file or --decode%s", "");
    rn_error err = {{0}};
    rn_tokenizer *t = NULL;
    rn_status st = rn_tokenizer_load(o->model, &t, &err);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), err.message);
        return 1;
    }
    int rc = 0;
    if (o->decode) {
        int32_t *ids;
        size_t n;
        char *text = NULL;
        size_t len = 0;
        if (!cli_parse_tokens(o->decode, &ids, &n)) {
            rc = cli_usage_error("--decode must be comma-separated non-negative ids, not '%s'", o->decode);
        } else {
            st = rn_tokenizer_decode(t, ids, n, false, &text, &len, &err);
            if (st == RN_OK) fwrite(text, 1, len, stdout), fputc('\n', stdout);
            free(ids);
            free(text);
        }
    } else {
        char *file_text = NULL;
        size_t len = o->text ? strlen(o->text) : 0;
        if (o->text_file) rc = cli_read_text(o->text_file, &file_text, &len);
        int32_t *ids = NULL;
        size_t n = 0;
        if (rc == 0) st = rn_tokenizer_encode(t, o->text ? o->text : file_text, len, true, &ids, &n, &err);
        if (rc == 0 && st == RN_OK) {
            fputc('[', stdout);
            for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
            fputs("]\n", stdout);
        }
        free(ids);
        free(file_text);
    }
    if (rc == 0 && st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), err.message);
        rc = 1;
    }
    rn_tokenizer_free(t);
    return rc;
}
