"""Write the default vocabulary's text embeddings for the demo backbone (offline, 10–25 min on 2 cores).

Every term of the default naming vocabulary (``resources/vocab/visual.txt``) × template family,
encoded with the default ``demo-effnet-minilm`` backbone's MiniLM and stored in the factorised
form of :mod:`insight_desktop.core.backbones.demo_vocab_text` (one 384-d weighted mean per term
and family, float16) in ``resources/models/demo-vocab-text.safetensors``. With it, naming the
concepts of a first demo model needs no text encoding at all (it would take longer than the
build itself). The file is keyed by the MiniLM + bridge part of the backbone id, the vocabulary's
and the templates' hashes: after a change of any of them it is simply not used until rebuilt.

Deterministic: no randomness is involved; the same inputs give the same numbers.

A term's numbers depend only on the term, the templates and the text model, so after an edit of
the vocabulary ``--reuse-vocab OLD.txt`` (the vocabulary the existing ``--out`` file was made
for, e.g. from ``git show HEAD:resources/vocab/visual.txt``) keeps the rows of the terms both
lists share and encodes only the new ones (seconds instead of minutes; the same numbers).

Usage: ``python scripts/build_demo_vocab_text.py [--out resources/models/demo-vocab-text.safetensors]
[--reuse-vocab OLD.txt]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from installed packages

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "resources" / "models" / "demo-vocab-text.safetensors"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--terms-per-batch", type=int, default=40, help="terms encoded per MiniLM call")
    p.add_argument("--reuse-vocab", type=Path, help="the vocabulary the existing --out file was made for: "
                                                    "reuse its rows of the terms that did not change")
    args = p.parse_args(argv)

    import torch

    from insight_desktop.core.backbones import create_backbone
    from insight_desktop.core.backbones.demo_vocab_text import encode_family_means, file_metadata, write_family_means
    from insight_desktop.core.concepts.vocab import FAMILIES, default_vocabularies, family_texts, templates_sha256

    torch.manual_seed(0)  # nothing here is random; set anyway so a future change stays reproducible
    backbone = create_backbone("demo-effnet-minilm", device="cpu")
    (vocab,) = default_vocabularies()
    terms = vocab.terms
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - t0
        print(f"{done}/{total} terms, {elapsed:.0f} s, ~{elapsed / done * (total - done):.0f} s left", flush=True)

    known = reusable_rows(args.out, args.reuse_vocab, backbone) if args.reuse_vocab else {}
    todo = [t for t in terms if t not in known]
    print(f"{len(terms) - len(todo)} terms reused from {args.out}, {len(todo)} to encode", flush=True)
    fresh = encode_family_means(backbone.embed_sentences, backbone.bridge_W, backbone.bridge_b, todo, FAMILIES,
                                family_texts, args.terms_per_batch, progress) if todo else None
    rows = dict(known) | ({} if fresh is None else dict(zip(todo, fresh)))
    means = np.stack([rows[t] for t in terms])
    meta = file_metadata(backbone.text_identity, vocab.name, vocab.sha256, templates_sha256(), FAMILIES, len(terms))
    write_family_means(args.out, means, meta)
    print(f"wrote {len(terms)} terms × {len(FAMILIES)} families for {backbone.text_identity} to {args.out} "
          f"({args.out.stat().st_size / 1e6:.1f} MB)")


def reusable_rows(path: Path, old_vocab: Path, backbone) -> dict[str, np.ndarray]:
    """term → its [families, text_dim] means in ``path``, made for the vocabulary file ``old_vocab``
    by this backbone's text model and today's templates ({} when the file was made for anything else)."""
    from insight_desktop.core.backbones.demo_vocab_text import read_family_means
    from insight_desktop.core.concepts.vocab import FAMILIES, load_vocabulary, templates_sha256

    old = load_vocabulary(old_vocab)
    means = read_family_means(path, backbone.text_identity, old.sha256, templates_sha256(), FAMILIES,
                              len(old.terms), backbone.bridge_W.shape[0])
    if means is None:
        print(f"{path} was not made for {old_vocab} with this text model and these templates: encoding all terms")
        return {}
    return dict(zip(old.terms, means))


if __name__ == "__main__":
    main()
