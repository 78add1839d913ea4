/* cli_tokenize.c: `retnet tokenize`: text to token ids (a JSON array) or ids to text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int tokenizer_failed(rn_status st, const char *what) {
    fprintf(stderr, "retnet: %s failed: %s: %s\n", what, rn_status_str(st), rn_last_error());
    return 1;
}

int cmd_tokenize(const options *o) {
    if (!o->model) return cli_usage_error("--model DIR is required%s", "");
    if (!!o->text + !!o->text_file + !!o->decode != 1)
        return cli_usage_error("give one of --text, -f/--file or --decode%s", "");
    rn_tokenizer *t = NULL;
    rn_status st = rn_tokenizer_load(o->model, &t);
    if (st != RN_OK) return tokenizer_failed(st, "loading the tokenizer");
    int rc = 0;
    if (o->decode) {
        int32_t *ids;
        size_t n;
        if (!cli_parse_tokens(o->decode, &ids, &n)) {
            rc = cli_usage_error("--decode must be comma-separated non-negative ids, not '%s'", o->decode);
        } else {
            char *text = NULL;
            size_t len = 0;
            st = rn_tokenizer_decode(t, ids, n, 0, &text, &len);
            if (st == RN_OK) fwrite(text, 1, len, stdout), fputc('\n', stdout);
            else rc = tokenizer_failed(st, "decoding");
            free(ids);
            rn_free(text);
        }
    } else {
        char *file_text = NULL;
        size_t len = o->text ? strlen(o->text) : 0;
        if (o->text_file) rc = cli_read_text(o->text_file, &file_text, &len);
        int32_t *ids = NULL;
        size_t n = 0;
        if (rc == 0) {
            st = rn_tokenizer_encode(t, o->text ? o->text : file_text, len, 1, &ids, &n);
            if (st != RN_OK) rc = tokenizer_failed(st, "encoding");
        }
        if (rc == 0) {
            fputc('[', stdout);
            for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
            fputs("]\n", stdout);
        }
        rn_free(ids);
        free(file_text);
    }
    rn_tokenizer_free(t);
    return rc;
}
