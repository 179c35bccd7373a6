"""``insight`` subcommands that make a whole concept model: build-model (every stage), import-cfm."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import (
    CLIError,
    add_backbone_args,
    add_schedule_args,
    add_vocab_args,
    backbone_from_args,
    graceful_interrupt,
    parse_levels,
    print_notices,
)


def _command_line(args) -> str:
    return " ".join(shlex.quote(a) for a in ["insight", *args.argv])


def cmd_build_model(args) -> int:
    from ..core.build import BuildOptions

    if not Path(args.folder).is_dir():
        raise CLIError(f"'{args.folder}' is not a folder")
    train = {"epochs": args.epochs, "batch_tokens": args.batch_tokens, "lr": args.lr, "dead_tokens": args.dead_tokens,
             "threshold_start_step": args.threshold_start, "seed": args.seed}
    options = BuildOptions(mode=args.mode, size=args.size, n_concepts=args.concepts, expansion=args.expansion, k=args.k,
                           level_fractions=parse_levels(args.levels) if args.levels else None, train=train,
                           tau=args.tau, vocabularies=tuple(args.vocab), default_vocabularies=not args.no_default_vocab,
                           naming=args.naming, thumbnails_per_concept=args.thumbnails)
    ctx = _process_group(args)
    try:
        return _build(args, options, ctx)
    finally:
        if ctx.distributed:
            from ..core.dist import shutdown

            shutdown()


def _process_group(args):
    """Under torchrun (or srun + torchrun) join its process group: one GPU per process
    (``cuda:LOCAL_RANK``) when CUDA is used. A plain run: the single-process context."""
    from ..core.dist import SINGLE, DistError, from_environment, launched_by_torchrun

    if not launched_by_torchrun():
        return SINGLE
    from ..core.devices import resolve_device

    device_type = resolve_device(args.device).type
    try:
        ctx = from_environment(device_type)
    except DistError as exc:
        raise CLIError(str(exc)) from None
    if device_type == "cuda":
        import torch

        torch.cuda.set_device(ctx.local_rank)
        args.device = f"cuda:{ctx.local_rank}"
    return ctx


def _build(args, options, ctx) -> int:
    from tqdm import tqdm

    from ..core.build import BuildStopped
    from ..core.distributed_build import build_model_distributed

    backbone = backbone_from_args(args)
    if ctx.is_main:
        print_notices(backbone)
    bar_format = "{desc:<11} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"
    quiet = args.quiet or not ctx.is_main  # one progress display: rank 0's
    with graceful_interrupt() as stop, tqdm(total=1.0, disable=quiet, unit="", bar_format=bar_format) as bar:
        current = {"stage": None}

        def progress(p):
            if p.note:
                bar.write(p.note, file=sys.stderr)
            if p.stage != current["stage"]:
                current["stage"] = p.stage
                bar.reset(total=max(float(p.total), 1e-9))
                bar.set_description(p.stage)
            bar.total = max(float(p.total), 1e-9)
            bar.n = float(p.done)
            bar.set_postfix_str(p.detail, refresh=False)
            bar.refresh()

        try:
            # one process (SINGLE): exactly build_model
            out = build_model_distributed(args.folder, args.out, backbone, options, ctx, device=args.device,
                                          command=_command_line(args), keep_work=args.keep_work,
                                          on_progress=progress if ctx.is_main else None, should_stop=stop)
        except BuildStopped as exc:
            if ctx.is_main:
                print(str(exc), file=sys.stderr)
            return 130
    if not ctx.is_main:
        return 0  # rank 0 writes the bundle and reports it
    from ..core.concepts.bundle import ConceptModel
    from ..core.inspect import training_lines

    model = ConceptModel.load(out)
    print(model.summary())
    print("\n".join(training_lines(float(model.sae.threshold), model.sae.training_info)))
    return 0


def cmd_import_cfm(args) -> int:
    from ..core.concepts.bundle import ConceptModel
    from ..core.import_cfm import import_release, reference_backbone

    spec = reference_backbone(_release_dinoiser(args.dinoiser))
    out = import_release(args.sae, args.names, args.out, relations_file=args.relations, backbone=spec, tau=args.tau,
                         min_share=args.min_share, command=_command_line(args))
    print(ConceptModel.load(out).summary())
    return 0


def _release_dinoiser(value: str) -> str | None:
    """The ``dinoiser`` option of an imported release's backbone, checked now and explained.

    The authors trained their SAE on F⁺ (CLIP-DINOiser features), so the default is the store's
    ``last.pt``; a local file is validated before anything is written; ``none`` is allowed, loudly.
    """
    from ..core.store import ModelStore, StoreError
    from ..core.store.files import validate

    if value.lower() == "none":
        print("warning: no CLIP-DINOiser weights: the bundle will run on plain MaskCLIP features, not the F⁺ "
              "features the authors' SAE was trained on; its concepts will fire less faithfully", file=sys.stderr)
        return None
    if value.startswith("store:"):
        try:
            if ModelStore().find(value.removeprefix("store:")) is None:
                print(f"note: {value} is not in the model store yet; the bundle needs it to analyse images. "
                      f"Fetch it once with `insight models get {value.removeprefix('store:')}` or import last.pt "
                      "with `insight models import last.pt` (or pass --dinoiser /path/to/last.pt)", file=sys.stderr)
        except StoreError:
            pass  # a damaged store index must not stop an import; analysing will say what is wrong
        return value
    path = Path(value).expanduser()
    try:
        validate(path, "dinoiser")
    except StoreError as exc:
        raise CLIError(f"--dinoiser: {exc}") from None
    return str(path.resolve())


def add_parsers(sub) -> None:
    p = sub.add_parser("build-model", help="folder of images → complete concept model (resumable)")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="bundle folder, or a .zip file")
    p.add_argument("--mode", choices=("crop", "full"), default="crop")
    p.add_argument("--size", type=int, default=None)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--concepts", type=int, default=None, help="number of concepts (default 16·d)")
    size.add_argument("--expansion", type=int, default=16)
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--levels", default=None, help="number of levels or comma-separated group fractions")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-tokens", type=int, default=16384)
    p.add_argument("--lr", type=float, default=1e-4)
    add_schedule_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau", type=float, default=0.75, help="parent threshold on D̂ (default 0.75)")
    add_vocab_args(p)
    p.add_argument("--thumbnails", type=int, default=8, help="top patches per concept thumbnail (0: none)")
    p.add_argument("--keep-work", action="store_true", help="keep BUNDLE.work/ (token store, checkpoints)")
    p.add_argument("-q", "--quiet", action="store_true")
    add_backbone_args(p)
    p.set_defaults(func=cmd_build_model)

    p = sub.add_parser("import-cfm", help="turn the authors' released SAE, names and D matrix into a bundle")
    p.add_argument("--sae", required=True, help="dictionary_learning MatryoshkaBatchTopKSAE state dict")
    p.add_argument("--names", required=True, help="concept names: text (one per line) or JSON")
    p.add_argument("--relations", default=None, help="dense D matrix (.pt, .npy or .safetensors)")
    p.add_argument("--out", required=True)
    p.add_argument("--tau", type=float, default=0.75)
    p.add_argument("--min-share", type=float, default=0.01, help="drop D entries below this share of D_ii")
    p.add_argument("--dinoiser", default="store:clip-dinoiser",
                   help="CLIP-DINOiser last.pt the SAE's features came from: a file, or store:<id> "
                        "(default store:clip-dinoiser); 'none' for plain MaskCLIP features")
    p.set_defaults(func=cmd_import_cfm)
