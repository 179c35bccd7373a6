"""``insight`` subcommands that run one stage of building a concept model: features, train-sae,
relations, name (``insight build-model`` runs them all)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .common import (
    CLIError,
    add_backbone_args,
    add_device_arg,
    add_schedule_args,
    add_vocab_args,
    backbone_from_args,
    format_metrics,
    graceful_interrupt,
    parse_levels,
    print_notices,
)


def cmd_features(args) -> int:
    from tqdm import tqdm

    from ..core.features import estimate_store_bytes, extract_features
    from ..core.images import find_images

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


def cmd_train_sae(args) -> int:
    from tqdm import tqdm

    from ..core.features import TokenStore
    from ..core.sae import SAEConfig, TrainConfig, group_sizes_from_fractions, save_sae, train_sae

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
    from ..core.inspect import training_lines

    save_sae(result.sae, out)
    print(f"saved {out}  ({m} concepts; final {format_metrics(result.metrics)})")
    print("\n".join(training_lines(float(result.sae.threshold), result.sae.training_info)))
    return 0


def cmd_relations(args) -> int:
    from tqdm import tqdm

    from ..core.concepts.compute import compute_relations
    from ..core.devices import resolve_device
    from ..core.features import TokenStore
    from ..core.sae import load_sae

    store, sae = TokenStore(args.store), load_sae(args.sae)
    if sae.config.d_in != store.d:
        raise CLIError(f"the SAE reads {sae.config.d_in}-dim features, the store holds {store.d}-dim ones")
    ckpt = Path(str(args.out) + ".ckpt")
    with graceful_interrupt() as stop, tqdm(total=store.n_tokens, unit="tok", unit_scale=True, disable=args.quiet,
                                            desc="relations") as bar:
        def progress(p):
            bar.n = p.tokens_done
            bar.refresh()

        rel = compute_relations(store, sae, device=resolve_device(args.device), tau=args.tau, checkpoint_dir=ckpt,
                                on_progress=progress, should_stop=stop)
    if rel is None:
        print(f"stopped; progress saved in {ckpt}: run the same command again to resume", file=sys.stderr)
        return 130
    rel.save(args.out)
    print(f"saved {args.out}: {rel.summary()}")
    return 0


def cmd_name(args) -> int:
    from tqdm import tqdm

    from ..core.build import vocabularies_for
    from ..core.concepts.naming import embed_vocabulary, name_model
    from ..core.concepts.relations import Relations
    from ..core.fileio import atomic_write_bytes
    from ..core.sae import load_sae

    sae = load_sae(args.sae)
    rel = Relations.load(args.relations) if args.relations else None
    if args.naming == "hierarchy" and rel is None:
        raise CLIError("hierarchy-aware naming needs --relations (or use --naming vanilla)")
    backbone = backbone_from_args(args)
    if backbone.feature_dim != sae.config.d_in:
        raise CLIError(f"the SAE reads {sae.config.d_in}-dim features; "
                       f"backbone {backbone.id} gives {backbone.feature_dim}")
    embedded = []
    with graceful_interrupt() as stop:
        for vocab in vocabularies_for(args.vocab, not args.no_default_vocab):
            with tqdm(total=len(vocab.terms), desc=f"embed {vocab.name}", unit="word", disable=args.quiet) as bar:
                def progress(done, total):
                    bar.n = done
                    bar.refresh()

                embedded.append((embed_vocabulary(backbone, vocab, on_progress=progress, should_stop=stop), vocab))
    hierarchy = args.naming == "hierarchy"
    names = name_model(sae.W_dec.detach().numpy(), sae.b_dec.detach().numpy(), embedded,
                       d_hat=rel.d_hat if hierarchy else None, mu=rel.mu if hierarchy else None,
                       tau=rel.tau if rel is not None else 0.75)
    atomic_write_bytes(args.out, names.to_json().encode("utf-8"))
    shown = ", ".join(f"{i}: {n}" for i, n in list(enumerate(names.names))[:8])
    print(f"saved {args.out}: {len(names.names)} names ({names.method}); {shown}, …")
    return 0


# -- wiring -----------------------------------------------------------------------------------
def add_parsers(sub) -> None:
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

    p = sub.add_parser("relations", help="co-occurrence hierarchy of an SAE over a token store (resumable)")
    p.add_argument("store")
    p.add_argument("--sae", required=True)
    p.add_argument("--out", required=True, help="relations file (.safetensors)")
    p.add_argument("--tau", type=float, default=0.75)
    p.add_argument("-q", "--quiet", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_relations)

    p = sub.add_parser("name", help="name an SAE's concepts with the text tower")
    p.add_argument("--sae", required=True)
    p.add_argument("--relations", default=None, help="relations file (needed for hierarchy-aware naming)")
    p.add_argument("--out", required=True, help="names.json")
    add_vocab_args(p)
    p.add_argument("-q", "--quiet", action="store_true")
    add_backbone_args(p)
    p.set_defaults(func=cmd_name)
