/* cli_quantize.c: `retnet quantize`, a checkpoint written back with 8- or 4-bit weights
 * (rn_quantize_checkpoint), which then loads without quantizing again. No device needed. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *quantize_usage =
    "usage: retnet quantize --model DIR --out DIR --weights q8|q4\n"
    "\n"
    "Writes a quantized copy of a checkpoint (any family, sharded or not, F32/F16/BF16) to the\n"
    "output directory (created when missing; not the model's own): model.safetensors, in which\n"
    "every weight matrix (embedding, output, q/k/v/g, out_proj, fc1, gate, fc2) is stored as\n"
    "<name>.qweight (U8, the quants of each row) and <name>.qscale (F16, a scale per block of 32),\n"
    "quantized exactly as `--weights q8|q4` does at load time, the other tensors as they were,\n"
    "and __metadata__ naming the scheme (retnet_cl.quantization: q8_0 or q4_0) and its version\n"
    "(retnet_cl.quantization_version: 1); plus copies of config.json and the tokenizer files.\n"
    "The result loads in its own scheme without quantizing again (the same logits as loading the\n"
    "original with --weights q8|q4); asking it for other --weights is refused. Files are written\n"
    "under temporary names and renamed into place, so a failure leaves no partial model.\n"
    "\n"
    "  --model DIR        the checkpoint to quantize\n"
    "  --out DIR          where to write the quantized checkpoint\n"
    "  --weights W        q8 (Q8_0: 8-bit quants, 8.5 bits a weight) or q4 (Q4_0: 4.5 bits)\n"
    "  -h, --help         this text\n"
    "\n"
    "Every matrix must be whole blocks of 32 weights; a matrix whose rows are not (torchscale-2.7b's\n"
    "4280 columns) is stored with its blocks running across rows, .qweight and .qscale flat. A\n"
    "progress bar goes to standard error when it is a terminal.\n";

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *weights = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(quantize_usage, stdout);
            return 0;
        }
        if (a[0] != '-') return cli_usage_error("quantize: unexpected argument '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("quantize: %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--weights")) weights = v;
        else return cli_usage_error("unknown quantize option '%s'", a);
    }
    if (!model) return cli_usage_error("quantize: --model DIR is required%s", "");
    if (!out) return cli_usage_error("quantize: --out DIR is required%s", "");
    if (!weights) return cli_usage_error("quantize: --weights q8|q4 is required%s", "");
    rn_weights w;
    if (!cli_parse_weights(weights, &w) || (w != RN_WEIGHTS_Q8 && w != RN_WEIGHTS_Q4))
        return cli_usage_error("quantize: --weights must be q8 or q4, not '%s'", weights);

    cli_progress bar;
    cli_progress_start(&bar, "quantizing");
    double start = cli_seconds();
    rn_status st = rn_quantize_checkpoint(model, out, w, cli_progress_update, &bar);
    cli_progress_end(&bar);
    if (st != RN_OK) {
        fprintf(stderr, "retnet: %s: %s\n", rn_status_str(st), rn_last_error());
        return 1;
    }
    fprintf(stderr, "retnet: wrote %s/model.safetensors (%s) in %.1f s\n", out, w == RN_WEIGHTS_Q8 ? "q8_0" : "q4_0",
            cli_seconds() - start);
    return 0;
}
