"""Write the class-prompt embeddings the demo backbone ships with (deterministic, offline, ~10 s).

The app's default classes and its presets, encoded with the default ``demo-effnet-minilm``
backbone and CLIP's 80 templates, go into ``resources/models/demo-prompts.safetensors``
(:mod:`insight_desktop.core.tasks.prompt_cache` reads it). With it, the first analysis after a
fresh install needs no text tower: loading MiniLM (sentence-transformers) costs seconds.
The file is keyed by the backbone's id (which hashes the EfficientNet weights, MiniLM and the
bridge), so after a refit of the bridge it is simply not used until rebuilt with this script.

Usage: ``python scripts/build_demo_prompts.py [--out resources/models/demo-prompts.safetensors]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from installed packages

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "resources" / "models" / "demo-prompts.safetensors"


def demo_classes() -> list[str]:
    """The default class list and every preset's classes, once each, in order of first use."""
    from insight_desktop.gui.document import CLASS_PRESETS, DEFAULT_CLASSES

    names = list(DEFAULT_CLASSES) + [c for preset in CLASS_PRESETS.values() for c in preset]
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    from insight_desktop.core.backbones import create_backbone
    from insight_desktop.core.tasks.prompt_cache import templates_digest, write_seed_file
    from insight_desktop.core.tasks.prompts import class_text_embeddings, prompt_templates

    backbone = create_backbone("demo-effnet-minilm", device="cpu")
    names = demo_classes()
    emb = class_text_embeddings(backbone, names)
    write_seed_file(args.out, backbone.id, templates_digest(prompt_templates()), names, emb)
    print(f"wrote {len(names)} class prompts for {backbone.id} to {args.out}")


if __name__ == "__main__":
    main()
