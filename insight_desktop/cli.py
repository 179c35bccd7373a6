"""The ``insight`` command: a thin argparse layer over the core.

Long work shows a progress bar with ETA; the first Ctrl+C stops cleanly at the next safe point
(a shard or a checkpoint is committed), and running the same command again resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Iterator, Sequence

from . import __version__


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


class StopFlag:
    """Set by the first Ctrl+C; a second Ctrl+C interrupts at once."""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self) -> bool:
        return self.stopped


@contextlib.contextmanager
def graceful_interrupt() -> Iterator[StopFlag]:
    flag = StopFlag()

    def handler(signum, frame):  # noqa: ARG001 — signal handler signature
        if flag.stopped:
            raise KeyboardInterrupt
        flag.stopped = True
        print("\nstopping at the next safe point… (Ctrl+C again to abort now)", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# -- backbone options shared by subcommands ---------------------------------------------------
def add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", default="clip-dinoiser", help="registered backbone name (default: clip-dinoiser)")
    g.add_argument("--model", default="ViT-B-16", help="open_clip model name or model-config JSON file")
    g.add_argument("--pretrained", default="laion2b_s34b_b88k",
                   help="open_clip pretrained tag (from the local cache) or a local checkpoint file")
    g.add_argument("--dinoiser", default=None, metavar="LAST_PT",
                   help="CLIP-DINOiser last.pt; without it the backbone runs as plain MaskCLIP")
    add_device_arg(g)


def add_device_arg(p) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")


def backbone_from_args(args):
    from .core.backbones import create_backbone

    options = {"model": args.model, "pretrained": args.pretrained, "dinoiser": args.dinoiser}
    return create_backbone(args.backbone, device=args.device, **options)


def print_notices(backbone) -> None:
    for notice in getattr(backbone, "notices", ()):
        print(f"note: {notice}", file=sys.stderr)


# -- subcommands ------------------------------------------------------------------------------
def cmd_features(args) -> int:
    import shutil

    from tqdm import tqdm

    from .core.features import extract_features, estimate_store_bytes
    from .core.images import find_images

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CLIError(f"'{folder}' is not a folder")
    n = len(find_images(folder))
    if n == 0:
        raise CLIError(f"no images found under '{folder}'")
    backbone = backbone_from_args(args)
    print_notices(backbone)
    print(f"backbone {backbone.id} on {backbone.device}", file=sys.stderr)
    size = args.size or backbone.preprocessing.crop_size
    if args.mode == "crop":
        per_image = (size // backbone.preprocessing.patch_size) ** 2
        need = estimate_store_bytes(n, per_image, backbone.feature_dim, args.dtype)
        out_parent = Path(args.out).resolve().parent
        out_parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out_parent).free
        if need > free:
            raise CLIError(f"the store needs about {need / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB are free "
                           f"on the disk of '{out_parent}'")
    with graceful_interrupt() as stop, tqdm(total=n, unit="img", desc="features", disable=args.quiet) as bar:
        def progress(p):
            bar.n = p.done
            bar.set_postfix(tokens=f"{p.tokens:,}", failed=p.failed, refresh=False)
            bar.refresh()

        summary = extract_features(folder, args.out, backbone, mode=args.mode, size=args.size, dtype=args.dtype,
                                   batch_size=args.batch_size, on_progress=progress, should_stop=stop)
    for key, reason in summary.failed:
        print(f"unreadable: {key}: {reason}", file=sys.stderr)
    print(f"{summary.images} images, {summary.tokens:,} tokens in {summary.store}"
          + (f" ({summary.skipped_existing} already there)" if summary.skipped_existing else ""))
    if summary.stopped_early:
        print("stopped: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def parse_levels(text: str | None) -> tuple[float, ...]:
    """``--levels``: a number of levels (sizes doubling, like the reference) or comma-separated fractions."""
    from .core.sae import REFERENCE_GROUP_FRACTIONS

    if not text:
        return REFERENCE_GROUP_FRACTIONS
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            weights = [2.0**i for i in range(n)]
            return tuple(w / sum(weights) for w in weights)
        fractions = tuple(float(f) for f in text.split(","))
    except ValueError:
        raise CLIError(f"--levels must be a number of levels or comma-separated fractions, not {text!r}") from None
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-3:
        raise CLIError(f"--levels fractions must be positive and add up to 1 (they add up to {sum(fractions):.4f})")
    return fractions


def add_schedule_args(p) -> None:
    """--dead-tokens and --threshold-start (train-sae, build-model): default "auto", scaled to the run."""
    p.add_argument("--dead-tokens", type=int, default=None,
                   help="a concept is dead after not firing for this many tokens (default: auto, the reference "
                        "10 M for long runs, scaled down to an eighth of the run's tokens for short ones)")
    p.add_argument("--threshold-start", type=int, default=None,
                   help="the inference threshold EMA runs after this step (default: auto, the reference 1000 for "
                        "long runs, after 90%% of the steps for short ones)")


def cmd_train_sae(args) -> int:
    from tqdm import tqdm

    from .core.features import TokenStore
    from .core.sae import SAEConfig, TrainConfig, group_sizes_from_fractions, save_sae, train_sae

    store = TokenStore(args.store)
    m = args.concepts or store.d * args.expansion
    try:
        sae_config = SAEConfig(d_in=store.d, n_concepts=m, k=args.k,
                               group_sizes=group_sizes_from_fractions(m, parse_levels(args.levels)))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    train_config = TrainConfig(lr=args.lr, batch_tokens=args.batch_tokens, epochs=args.epochs,
                               dead_tokens=args.dead_tokens, seed=args.seed,
                               threshold_start_step=args.threshold_start)
    out = Path(args.out)
    ckpt = Path(str(out) + ".ckpt")
    print(f"{store.n_tokens:,} tokens (d = {store.d}) → {m} concepts, k = {args.k}, "
          f"groups {list(sae_config.group_sizes)}", file=sys.stderr)

    def announce(plan):  # the values the run uses: given, or scaled to its length
        tqdm.write(plan.describe(), file=sys.stderr)

    with graceful_interrupt() as stop, tqdm(unit="step", desc="train-sae", disable=args.quiet) as bar:
        def progress(p):
            bar.total = p.total_steps
            bar.n = p.step
            bar.set_postfix(loss=f"{p.loss:.4g}", fvu=f"{p.fvu:.3f}", l0=f"{p.l0:.1f}",
                            dead=f"{p.dead_fraction:.0%}", refresh=False)
            bar.refresh()

        result = train_sae(store, sae_config, train_config, device=args.device, checkpoint_dir=ckpt,
                           resume=not args.restart, on_progress=progress, should_stop=stop, on_plan=announce)
    if result.stopped_early:
        print(f"stopped at step {result.steps}; checkpoint in {ckpt}: run the same command again to resume",
              file=sys.stderr)
        return 130
    from .core.inspect import training_lines

    save_sae(result.sae, out)
    print(f"saved {out}  ({m} concepts; final {_format_metrics(result.metrics)})")
    print("\n".join(training_lines(float(result.sae.threshold), result.sae.training_info)))
    return 0


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def cmd_info(args) -> int:
    from .core.inspect import describe

    print(describe(Path(args.file)))
    return 0


def cmd_demo(args) -> int:
    from .core.demo import run_demo

    run_demo(image=args.image, device=args.device, quiet=args.quiet, tiny=args.tiny)
    return 0


# -- wiring -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insight", description="Insight Desktop: concepts of a vision-language encoder")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("features", help="dense features of every image in a folder into a token store")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="token store folder (re-run to resume)")
    p.add_argument("--mode", choices=("crop", "full"), default="crop",
                   help="crop: short side to SIZE, centre crop (default, for SAE training); full: whole image")
    p.add_argument("--size", type=int, default=None, help="crop size / longest side (default: the model's size)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("-q", "--quiet", action="store_true")
    add_backbone_args(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train-sae", help="train a Matryoshka BatchTopK SAE on a token store")
    p.add_argument("store")
    p.add_argument("--out", required=True, help="SAE file (.safetensors); checkpoints go to OUT.ckpt/")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--concepts", type=int, default=None, help="number of concepts m (default: 16·d)")
    size.add_argument("--expansion", type=int, default=16, help="m = expansion·d (default 16)")
    p.add_argument("--k", type=int, default=12, help="active concepts per token (default 12)")
    p.add_argument("--levels", default=None,
                   help="number of Matryoshka levels or comma-separated group fractions (default: the reference 6)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-tokens", type=int, default=16384)
    p.add_argument("--lr", type=float, default=1e-4)
    add_schedule_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_train_sae)

    from .cli_analyze import add_parsers as add_analyze_parsers
    from .cli_model import add_parsers as add_model_parsers
    from .cli_models import add_parsers as add_models_parsers

    add_model_parsers(sub)
    add_analyze_parsers(sub)
    add_models_parsers(sub)

    p = sub.add_parser("info", help="describe a concept model, token store, SAE, checkpoint or image")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="a short demonstration on a tiny model it builds (no downloads)")
    p.add_argument("--image", default=None, help="image to analyse (default: a bundled sample)")
    p.add_argument("--tiny", action="store_true",
                   help="build and use a tiny random model instead of the bundled demo model")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in model provenance
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    except CLIError as exc:
        print(f"insight: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 — known failures become one clear line
        if not _is_user_facing(exc) or os.environ.get("INSIGHT_DEBUG"):
            raise
        print(f"insight {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _is_user_facing(exc: BaseException) -> bool:
    """Errors with messages written for users (bad files, devices, full disks), not bugs."""
    from .core.backbones import BackboneError
    from .core.bundle import BundleError
    from .core.devices import DeviceError
    from .core.features import FeatureStoreError
    from .core.images import ImageLoadError
    from .core.naming import NamingError
    from .core.relations import RelationsError
    from .core.sae import SAEError

    kinds = (BackboneError, BundleError, DeviceError, FeatureStoreError, ImageLoadError, NamingError, RelationsError,
             SAEError, OSError, ValueError)
    return isinstance(exc, kinds)


if __name__ == "__main__":
    sys.exit(main())
