"""Analysis benchmark at the reference size: where does the time of ``Analyzer.analyze`` go?

The reference architecture with random weights: OpenCLIP ``ViT-B-16`` (``pretrained=None``)
through the clip-dinoiser backbone with a random CLIP-DINOiser ``last.pt`` (obj_proj and FOUND
heads), and a random reference-size SAE (d 512, m 8192, k 12: its threshold is set so that ≈ k
concepts fire per patch, as in a trained one) in a temporary bundle. One image at 448 px
(28×28 patches, one window); per stage the median of ``--runs`` runs after a warm-up:
backbone, SAE encode (+ decode and faithfulness), concept ranking, segmentation (``--classes``
classes, FOUND background, at the image's resolution) and classification (zero-shot).

The overhead is everything beyond the backbone divided by the backbone's time in the same run
(target ≤ 0.15×). Class text embeddings are cached per class list (encoding 80 prompts per class
through the text tower costs more than the image itself), so they are reported on their own line
as a once-per-class-list cost, not per image.

    .venv/bin/python benchmarks/bench_analyze.py                 # ≈ 1 min on 2 CPU cores
    .venv/bin/python benchmarks/bench_analyze.py --device cuda --runs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["sky", "rocket", "tower", "grass", "cloud", "road", "tree", "person", "building", "water"]
STAGES = ("backbone", "sae", "concepts", "segmentation", "classification")


def build(tmp: Path, device: str, d: int, m: int, k: int, size: int):
    """Random ViT-B-16 clip-dinoiser backbone, random SAE in a bundle, one test image."""
    import numpy as np
    import open_clip
    import torch

    from insight_desktop.core.backbones import BackboneSpec
    from insight_desktop.core.backbones.clip_dinoiser import ClipDinoiserBackbone
    from insight_desktop.core.backbones.openclip_loading import OBJ_PROJ_DIM, load_dinoiser_heads
    from insight_desktop.core.concepts.bundle import write_bundle
    from insight_desktop.core.concepts.codes import SparseCodes
    from insight_desktop.core.concepts.compute import compute_relations_from_codes
    from insight_desktop.core.concepts.naming import ConceptNames
    from insight_desktop.core.devices import resolve_device
    from insight_desktop.core.images import load_image
    from insight_desktop.core.paths import sample_images
    from insight_desktop.core.sae import MatryoshkaSAE, SAEConfig

    torch.manual_seed(0)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights are loaded: intended
    clip = open_clip.create_model("ViT-B-16", pretrained=None, device="cpu")
    logging.disable(logging.NOTSET)
    width = int(clip.visual.proj.shape[0])
    g = torch.Generator().manual_seed(1)
    heads = {"obj_proj.weight": 0.02 * torch.randn(OBJ_PROJ_DIM, width, 3, 3, generator=g),
             "obj_proj.bias": torch.zeros(OBJ_PROJ_DIM), "bkg_decoder.weight": torch.randn(1, width, 1, 1, generator=g),
             "bkg_decoder.bias": torch.zeros(1)}
    torch.save({"model": heads}, tmp / "last.pt")
    spec = BackboneSpec("clip-dinoiser", {"model": "ViT-B-16", "pretrained": None, "dinoiser": str(tmp / "last.pt")})
    backbone = ClipDinoiserBackbone(clip, open_clip.get_tokenizer("ViT-B-16"), device=resolve_device(device),
                                    id="bench/ViT-B-16/random", spec=spec,
                                    dinoiser=load_dinoiser_heads(tmp / "last.pt", width))

    from PIL import Image

    rgb = np.asarray(Image.fromarray(load_image(sample_images()[-1])).resize((size, size), Image.BICUBIC))
    with torch.inference_mode():
        x = backbone.dense_features(backbone.preprocessing.to_tensor(rgb, mode="full")[None].to(backbone.device))
        x = x[0].flatten(1).T.float().cpu()
    half = m // 4
    sae = MatryoshkaSAE(SAEConfig(d_in=d, n_concepts=m, k=k, group_sizes=(half, m - half)))
    with torch.no_grad():
        sae.reset_parameters(torch.Generator().manual_seed(2))
        sae.b_dec.copy_(x.mean(0))
        a = sae.pre_activations(x)
        sae.threshold.fill_(float(a.flatten().topk(k * x.shape[0]).values[-1]))  # ≈ k active per patch
        z = sae.encode(x)
    relations = compute_relations_from_codes([(SparseCodes.from_dense(z), np.arange(x.shape[0]))], m,
                                             sae.config.group_ends)
    names = ConceptNames(names=tuple(f"concept {i}" for i in range(m)), candidates=((),) * m, method="vanilla")
    bundle = write_bundle(tmp / "model", backbone={"id": backbone.id, "spec": spec.to_dict(), "feature_dim": d},
                          sae=sae, relations=relations, names=names, provenance={"images": 1, "tokens": x.shape[0]})
    return backbone, bundle, rgb, float((z > 0).sum(1).float().mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up")
    ap.add_argument("--size", type=int, default=448, help="image side in pixels (default 448: one window)")
    ap.add_argument("--classes", type=int, default=5, help="segmentation / classification classes (default 5)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from insight_desktop.core.engine import Analyzer
    from insight_desktop.core.tasks.prompts import class_text_embeddings

    classes = CLASSES[:args.classes]
    with tempfile.TemporaryDirectory() as tmp:
        backbone, bundle, rgb, l0 = build(Path(tmp), args.device, 512, 8192, 12, args.size)
        analyzer = Analyzer(bundle, backbone=backbone, device=args.device)
        t0 = time.perf_counter()
        class_text_embeddings(backbone, classes)
        text_s = time.perf_counter() - t0
        analyzer.analyze(rgb, classes, background=True)  # warm-up (also fills the text cache)
        runs = [analyzer.analyze(rgb, classes, background=True) for _ in range(args.runs)]
    stage = {s: statistics.median(r.timings.get(s, 0.0) for r in runs) for s in STAGES}
    totals = [sum(r.timings.get(s, 0.0) for s in STAGES) for r in runs]
    ratios = [sum(r.timings.get(s, 0.0) for s in STAGES if s != "backbone") / r.timings["backbone"] for r in runs]
    a = runs[-1]
    print(f"analysis benchmark: ViT-B-16 (random) + CLIP-DINOiser heads, SAE d 512 / m 8192 / k 12 "
          f"({l0:.1f} active per patch), image {rgb.shape[1]}×{rgb.shape[0]} → {a.grid[1]}×{a.grid[0]} patches, "
          f"{a.windows} window(s), {len(classes)} classes + background")
    print(f"device {analyzer.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.runs} runs after 1 warm-up")
    print(f"{'stage':<34} {'ms':>9} {'× backbone':>11}")
    for s in STAGES:
        print(f"{s:<34} {1e3 * stage[s]:9.1f} {stage[s] / stage['backbone']:11.3f}")
    print(f"{'total per image':<34} {1e3 * statistics.median(totals):9.1f}")
    print(f"{'overhead beyond the backbone':<34} {'':9} {statistics.median(ratios):11.3f}   (target ≤ 0.15)")
    print(f"{'class prompts (once per class list)':<34} {1e3 * text_s:9.1f}   "
          f"({len(classes)} classes × 80 templates, cached)")
    if args.json:
        print(json.dumps({"stages_s": stage, "overhead": statistics.median(ratios), "text_s": text_s,
                          "device": str(analyzer.device), "grid": list(a.grid)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
