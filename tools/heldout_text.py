#!/usr/bin/python3
"""Write held-out KJV chapters of the demo model, in the training script's document format.

tools/train_demo.py trains examples/kjv-retnet on the KJV, one document per chapter
(`<|endoftext|>` + the chapter's verses, one a line + "\\n"), and keeps every chapter of index
25 mod 50 (24 of 1189) out of the training tokens for its validation loss. This script writes
the first --chapters of those held-out chapters, concatenated in book order, exactly as the
training script formed them, for `retnet perplexity`:

  apt-get install -y bible-kjv bible-kjv-text
  /usr/bin/python3 tools/heldout_text.py --chapters 6 > examples/kjv-retnet/heldout.txt

The text reader (read_kjv) and the <|endoftext|> string are imported from train_demo.py. Its
module imports torch and numpy, which reading the text does not use: when they are not
installed, empty stand-ins are put in their place for the import. The document format and the
held-out rule are two expressions inside train_demo.main(); they are repeated below (DOC and
HELD_OUT) and checked against that file's source, so a change there fails here loudly.
"""

import argparse
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))

# The two expressions of train_demo.main() this script repeats, verbatim.
DOC = 'docs = [EOS + "\\n".join(ch) + "\\n" for ch in chapters]'
HELD_OUT = "val_idx = {i for i in range(len(docs)) if i % 50 == 25}"


def import_train_demo():
    sys.path.insert(0, HERE)
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        # Stand-ins for what train_demo's module level touches: nn.Module as a base class and
        # torch.no_grad() as a decorator. Nothing here calls into them.
        torch = types.ModuleType("torch")
        torch.no_grad = lambda: (lambda f: f)
        nn = types.ModuleType("torch.nn")
        nn.Module = object
        functional = types.ModuleType("torch.nn.functional")
        torch.nn, nn.functional = nn, functional
        for name, mod in (("torch", torch), ("torch.nn", nn), ("torch.nn.functional", functional),
                          ("numpy", types.ModuleType("numpy"))):
            sys.modules.setdefault(name, mod)
    import train_demo
    with open(train_demo.__file__, encoding="utf-8") as f:
        source = f.read()
    for expr in (DOC, HELD_OUT):
        if expr not in source:
            raise SystemExit("tools/train_demo.py no longer contains %r: update this script" % expr)
    return train_demo


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chapters", type=int, default=6, help="how many held-out chapters (of 24)")
    ap.add_argument("--bible", default="bible", help="the BRS reader from Debian's bible-kjv")
    ap.add_argument("--list", action="store_true", help="name the chapters on standard error")
    args = ap.parse_args()

    td = import_train_demo()
    chapters = td.read_kjv(args.bible)
    if len(chapters) != 1189 or sum(len(ch) for ch in chapters) != 31102:
        raise SystemExit("expected 1189 chapters and 31102 verses from `bible`")
    EOS = td.EOS  # noqa: N806 (the name DOC uses)
    docs = [EOS + "\n".join(ch) + "\n" for ch in chapters]
    val_idx = {i for i in range(len(docs)) if i % 50 == 25}
    chosen = sorted(val_idx)[:args.chapters]
    if args.list:
        sys.stderr.write("held-out chapter indices: %s\n" % chosen)
    sys.stdout.write("".join(docs[i] for i in chosen))


if __name__ == "__main__":
    main()
