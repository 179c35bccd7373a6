"""``insight models``: list, get, import, import-release, verify and remove items of the model store.

A thin layer over :class:`insight_desktop.core.store.ModelStore`; every store, catalogue or
download failure becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.fileio import format_size
from .common import CLIError, graceful_interrupt


def _store():
    from ..core.store import ModelStore

    return ModelStore()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def cmd_list(args) -> int:
    store = _store()
    items = store.installed()
    rows = [["ID", "KIND", "SIZE", "LICENCE", "PATH"]]
    for i in items:
        where = str(i.path) + ("  [BROKEN: files missing]" if i.broken else "") + ("" if i.removable else "  (bundled)")
        rows.append([i.id, i.kind, format_size(i.size_bytes), i.licence, where])
    print(_table(rows))
    if args.available:
        installed = {i.id: i for i in items}
        rows = [["ID", "KIND", "SIZE", "LICENCE", "SHA256", "STATUS / TITLE"]]
        unpinned = []
        for e in store.known_models():
            held = installed.get(e.id)
            status = ("broken" if held.broken else "installed") if held else ("import only" if e.import_only
                                                                              else "not installed")
            pin = "pinned" if e.pinned else ("-" if e.import_only else "UNPINNED")
            if pin == "UNPINNED":
                unpinned.append(f"  {e.id}: {e.unpinned or 'the catalogue gives no sha256'}")
            rows.append([e.id, e.kind, format_size(e.size_bytes, approximate=e.sha256 is None), e.licence, pin,
                         f"{status}: {e.title}"])
        print("\navailable (catalogue):")
        print(_table(rows))
        if unpinned:
            print("\nUNPINNED: no sha256 is known in advance, so the first download is trusted; its hash is "
                  "recorded and checked afterwards (`insight models verify`):")
            print("\n".join(unpinned))
    return 0


def cmd_get(args) -> int:
    from tqdm import tqdm

    from ..core.store.download import DownloadCancelled

    store = _store()
    bar = None  # made on the first progress report: nothing is drawn when no download happens

    def progress(p):
        nonlocal bar
        if bar is None:
            bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=args.id, disable=args.quiet)
        if p.total and bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        with graceful_interrupt() as stop:
            item = store.get(args.id, progress=progress, should_stop=stop)
    except DownloadCancelled as exc:
        print(f"\nstopped: {exc}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(f"{item.id}: {item.title}\n  {item.path}  "
          f"({format_size(item.size_bytes)}, sha256 {(item.sha256 or '?')[:16]}…)")
    return 0


def cmd_import(args) -> int:
    item = _store().import_file(Path(args.path), args.kind, title=args.title, entry_id=args.id)
    print(f"imported {item.id} ({item.kind}): {item.path}")
    return 0


def cmd_import_release(args) -> int:
    dinoiser = None if args.no_dinoiser else f"store:{args.dinoiser}"
    item = _store().import_release(Path(args.sae), Path(args.names), Path(args.d) if args.d else None,
                                   title=args.title, entry_id=args.id, dinoiser=dinoiser)
    print(f"imported {item.id} (concept model): {item.path}")
    return 0


def cmd_verify(args) -> int:
    item = _store().verify(args.id)
    print(f"{item.id}: ok" + (f" (sha256 {item.sha256[:16]}…)" if item.sha256 else ""))
    return 0


def cmd_remove(args) -> int:
    store = _store()
    item = store.find(args.id)
    if item is not None and item.removable and not args.yes:
        if not sys.stdin.isatty():
            raise CLIError(f"removing {args.id} deletes {format_size(item.size_bytes)} of files: add --yes to confirm")
        answer = input(f"remove {item.title} ({format_size(item.size_bytes)}, {item.path})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    store.remove(args.id)
    print(f"removed {args.id}")
    return 0


def _guarded(func):
    """Store, catalogue and download errors are the user's to fix: one line, no traceback."""

    def run(args) -> int:
        from ..core.store import StoreError
        from ..core.store.download import DownloadError
        from ..core.store.known_models import KnownModelsError

        try:
            return func(args)
        except (StoreError, DownloadError, KnownModelsError) as exc:
            raise CLIError(str(exc)) from None

    return run


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="the model store: reference weights and concept models, kept for offline use")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    q = msub.add_parser("list", help="installed models (and, with --available, the catalogue)")
    q.add_argument("--available", action="store_true", help="also list what the catalogue offers")
    q.set_defaults(func=_guarded(cmd_list))

    q = msub.add_parser("get", help="download a catalogue model once (Ctrl+C stops; run again to resume)")
    q.add_argument("id", help="catalogue id (see `insight models list --available`)")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=_guarded(cmd_get))

    q = msub.add_parser("import", help="copy a weights file or concept model into the store (validated first)")
    q.add_argument("path", help="a .safetensors/.bin/.pt/.pth file, a concept model .zip or folder")
    q.add_argument("--kind", choices=("openclip", "dinoiser", "bundle"), default=None,
                   help="what the file is (default: guessed from its contents)")
    q.add_argument("--title", default=None)
    q.add_argument("--id", default=None, help="install as this catalogue id (e.g. clip-dinoiser)")
    q.set_defaults(func=_guarded(cmd_import))

    q = msub.add_parser("import-release", help="the authors' release (SAE, names, D) as a concept model")
    q.add_argument("--sae", required=True, help="dictionary_learning MatryoshkaBatchTopKSAE state dict")
    q.add_argument("--names", required=True, help="concept names: text (one per line) or JSON")
    q.add_argument("--d", default=None, help="dense D matrix (.pt, .npy or .safetensors)")
    q.add_argument("--title", default=None)
    q.add_argument("--id", default=None)
    q.add_argument("--dinoiser", default="clip-dinoiser", metavar="ID",
                   help="store id of the CLIP-DINOiser weights the model uses (default: clip-dinoiser)")
    q.add_argument("--no-dinoiser", action="store_true", help="plain MaskCLIP features (no DINOiser pooling)")
    q.set_defaults(func=_guarded(cmd_import_release))

    q = msub.add_parser("verify", help="check an installed model's files against their recorded sha256")
    q.add_argument("id")
    q.set_defaults(func=_guarded(cmd_verify))

    q = msub.add_parser("remove", help="delete an installed model's files")
    q.add_argument("id")
    q.add_argument("--yes", action="store_true", help="do not ask")
    q.set_defaults(func=_guarded(cmd_remove))
