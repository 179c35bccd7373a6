"""What the ``insight`` subcommands share: the user-error type, Ctrl+C handling, common options.

Long work shows a progress bar with ETA; the first Ctrl+C stops cleanly at the next safe point
(a shard or a checkpoint is committed), and running the same command again resumes.
The command modules import this one; only :mod:`.command` imports them, so there is no circle.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from typing import Iterator


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
    from ..core.store.open_backbone import open_backbone

    options = {"model": args.model, "pretrained": args.pretrained, "dinoiser": args.dinoiser}
    if args.backbone == "demo-effnet-minilm":  # takes none of the open_clip options (it refuses unknown ones)
        options = {}
    return open_backbone(args.backbone, device=args.device, **options)


def print_notices(backbone) -> None:
    for notice in getattr(backbone, "notices", ()):
        print(f"note: {notice}", file=sys.stderr)


# -- values shared by subcommands ------------------------------------------------------------
def parse_levels(text: str | None) -> tuple[float, ...]:
    """``--levels``: a number of levels (sizes doubling, like the reference) or comma-separated fractions."""
    from ..core.sae import REFERENCE_GROUP_FRACTIONS

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


def add_vocab_args(p) -> None:
    p.add_argument("--vocab", action="append", default=[], metavar="FILE",
                   help="extra vocabulary (one term per line); repeatable")
    p.add_argument("--no-default-vocab", action="store_true", help="use only the --vocab files")
    p.add_argument("--naming", choices=("hierarchy", "vanilla"), default="hierarchy",
                   help="hierarchy-aware (Insight, default) or vanilla naming")


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def is_user_facing(exc: BaseException) -> bool:
    """Errors with messages written for users (bad files, devices, full disks), not bugs."""
    from ..core.backbones import BackboneError
    from ..core.concepts.bundle import BundleError
    from ..core.concepts.naming import NamingError
    from ..core.concepts.relations import RelationsError
    from ..core.devices import DeviceError
    from ..core.features import FeatureStoreError
    from ..core.images import ImageLoadError
    from ..core.sae import SAEError

    kinds = (BackboneError, BundleError, DeviceError, FeatureStoreError, ImageLoadError, NamingError, RelationsError,
             SAEError, OSError, ValueError)
    return isinstance(exc, kinds)


def skip_reason(exc: BaseException) -> str:
    """Why one image of a batch was skipped, in words (a user-facing error's message, else the
    exception's type and text); with ``INSIGHT_DEBUG`` set the error is raised instead."""
    import os

    from ..core.errors import user_message
    from ..core.images import ImageLoadError

    if os.environ.get("INSIGHT_DEBUG"):
        raise exc
    if isinstance(exc, ImageLoadError):
        return exc.reason
    return user_message(exc) if is_user_facing(exc) else f"{type(exc).__name__}: {exc}"


# -- what the subcommands that use a concept model share ----------------------------------------
def open_analyzer(args):
    """The Analyzer of ``--model`` on ``--device``; its notices go to stderr."""
    from ..core.engine import Analyzer

    analyzer = Analyzer(args.model, device=args.device)
    for notice in analyzer.notices:
        print(f"note: {notice}", file=sys.stderr)
    return analyzer


def finite(v):
    """``v``, or None for a NaN or infinite float (JSON has neither)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def atomic_text(path, text: str) -> None:
    from ..core.fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def add_model_args(p) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE", help="concept model (bundle folder or .zip)")
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)


def add_window_args(p, default_mode: str) -> None:
    p.add_argument("--window", type=int, default=448, help="sliding-window size in pixels (default 448)")
    p.add_argument("--stride", type=int, default=224, help="sliding-window stride in pixels (default 224)")
    p.add_argument("--window-mode", choices=("fast", "reference"), default=default_mode,
                   help="how overlapping windows are combined for segmentation: 'reference' encodes each window "
                        "separately and averages class probabilities (as the paper's code), 'fast' averages "
                        f"features and encodes once (default {default_mode})")
