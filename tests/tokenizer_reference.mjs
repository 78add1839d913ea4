// Writes the expected ids and texts of the tokenizer corpus with the JavaScript port of Hugging
// Face's tokenizers (@lenml/tokenizers, transformers.js's tokenizers.js), from the same
// tokenizer.json and tokenizer_config.json files the C test reads.
//
//   tests/tokenizer_fetch.sh node tests/tokenizer_reference.mjs tests/data/tokenizer
//
// For every NAME.inp in the folder and every tokenizer it writes NAME.TOKENIZER.out, a JSON
// object:
//   ids           encode(text), with the special tokens the tokenizer adds (BOS for Llama 2)
//   ids_plain     encode(text, {add_special_tokens: false})
//   decoded       decode(ids) with the special tokens kept
//   decoded_skip  decode(ids, {skip_special_tokens: true})
//   lossless      decoded_skip is the input text itself
// Decoding never applies clean_up_tokenization_spaces (transformers' "don 't" -> "don't" pass,
// on by default for Llama 3): the C decoder streams text and never rewrites it.
//
// It also writes random_ids.TOKENIZER.out: 300 seeded random id sequences (many of them byte
// tokens that cut characters, special tokens, ids at both ends of the vocabulary) with their
// decoded text, kept and skipping specials, as hex of the UTF-8 bytes (a decoded text may hold
// U+0000, which cJSON cannot read back from a JSON string).
//
// The corpus leaves out the characters where PCRE2 and JavaScript's regexes disagree
// (tokenizer.h): U+0085, U+180E and U+FEFF, and letters newer than Unicode 14.
//
// The .inp files are bytes. They are read as UTF-8 by TextDecoder with the WHATWG replacement
// rule (each maximal invalid subsequence becomes U+FFFD) and the byte order mark kept, which is
// what rn_tokenizer_encode does with invalid UTF-8.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const args = process.argv.slice(2);
let dataDir = null;
const dirs = {};
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--llama2" || args[i] === "--llama3") dirs[args[i].slice(2)] = args[++i];
  else dataDir = args[i];
}
if (!dataDir || !dirs.llama2 || !dirs.llama3) {
  console.error("usage: node tokenizer_reference.mjs DATA_DIR --llama2 DIR --llama3 DIR");
  process.exit(2);
}

// @lenml/tokenizers sits in the node_modules above the tokenizer packages' own folders
const require = createRequire(join(dirs.llama2, "..", "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");

const readJSON = (path) => JSON.parse(readFileSync(path, "utf8"));
const tokenizers = Object.entries(dirs).map(([name, dir]) => [
  name,
  TokenizerLoader.fromPreTrained({
    tokenizerJSON: readJSON(join(dir, "tokenizer.json")),
    tokenizerConfig: readJSON(join(dir, "tokenizer_config.json")),
  }),
]);

const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const decode = (tok, ids, skip) =>
  ids.length === 0
    ? "" // transformers.js refuses an empty list
    : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });

const inputs = readdirSync(dataDir).filter((f) => f.endsWith(".inp")).sort();
for (const file of inputs) {
  const text = decoder.decode(readFileSync(join(dataDir, file)));
  for (const [name, tok] of tokenizers) {
    const ids = tok.encode(text);
    const ids_plain = tok.encode(text, { add_special_tokens: false });
    const decoded = decode(tok, ids, false);
    const decoded_skip = decode(tok, ids, true);
    const out = { ids, ids_plain, decoded, decoded_skip, lossless: decoded_skip === text };
    const path = join(dataDir, file.replace(/\.inp$/, `.${name}.out`));
    writeFileSync(path, JSON.stringify(out) + "\n");
  }
  console.log(file);
}

let seed = 20240131;
const random = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) / 16777216;
};
const hex = (text) => Buffer.from(text, "utf8").toString("hex");
for (const [name, tok] of tokenizers) {
  const size = tok.model.vocab.length;
  // the first ids hold the byte tokens (Llama 2) or the single bytes (Llama 3); the last hold
  // the special tokens (Llama 3)
  const cases = [];
  for (let i = 0; i < 300; i++) {
    const ids = [];
    for (let n = 1 + Math.floor(random() * 12); n > 0; n--) {
      const r = random();
      ids.push(Math.floor(r < 0.6 ? random() * 300 : r < 0.7 ? size - 1 - random() * 300 : random() * size));
    }
    cases.push({ ids, decoded: hex(decode(tok, ids, false)), decoded_skip: hex(decode(tok, ids, true)) });
  }
  writeFileSync(join(dataDir, `random_ids.${name}.out`), JSON.stringify(cases) + "\n");
}
