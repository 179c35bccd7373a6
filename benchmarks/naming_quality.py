"""Naming quality of a concept model on held-out photos: old names vs. new vocabulary side by side.

The held-out photos are those marked ``heldout`` in ``resources/demo-photos/photos.csv``, fetched
by ``scripts/fetch_demo_photos.py`` into its cache (photo cut-outs with transparency are laid on
mid-grey). For every photo the model's 10 strongest concepts (pooled max activation) are
taken once; only their *names* change between the columns, so the comparison isolates naming:

* **precision@10** — share of those 10 names consistent with the photo's written content: the
  name (or its WordNet lemma) is a word of the description, or a WordNet relation links it to
  the label (same synset, hypernym/hyponym at any depth below the abstract top, or siblings);
* **concreteness** — share of all m concept names in the concrete-word list (``visual.txt``,
  compared by WordNet lemma, so "churches" counts as "church");
* **duplicate names** — share of concepts whose name another concept also has.

Columns: the names in the bundle (old vocabulary); the same names with the duplicate rule
applied to their stored candidates; the concepts renamed with ``visual.txt`` as the build
would (same method, vanilla or hierarchy-aware); and that plus the hubness (CSLS) correction.
The visual vocabulary is embedded with the model's backbone (cached after the first run: on 2
CPU cores the demo backbone needs about 10 minutes for it).

    .venv/bin/python benchmarks/naming_quality.py [--model resources/models/demo-concepts.zip]
        [--photos ~/.cache/insight-desktop/demo-photos] [--wordnet DIR] [--hubness-k 10]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_demo_photos import MANIFEST, default_cache  # noqa: E402
from wordnet_lite import WordNet  # noqa: E402

from insight_desktop.core.concepts.name_choice import ALTERNATIVE_MARGIN, HUBNESS_K, distinct_names  # noqa: E402
from insight_desktop.core.concepts.naming import embed_vocabulary, load_vocabulary, name_model  # noqa: E402
from insight_desktop.core.engine import Analyzer  # noqa: E402
from insight_desktop.core.paths import resource_path  # noqa: E402

TOP = 10
SAMPLE_FILES = {"astronaut.png", "camera.png", "chelsea.png", "china.jpg", "coffee.png", "flower.jpg", "rocket.jpg"}
_SUFFIX = re.compile(r" \(\d+\)$")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")
STOP = frozenset("a an the of on in with and at to its by from for into over under".split())


def load_photo(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
        bg.alpha_composite(im)
        return np.asarray(bg.convert("RGB"))


def base(name: str) -> str:
    return _SUFFIX.sub("", name).strip().lower()


class Judge:
    """Decides whether a concept name fits a photo (label + description) and whether it is concrete."""

    def __init__(self, wn: WordNet, concrete: set[str]):
        self.wn, self.concrete = wn, concrete
        self._memo: dict[tuple[str, str], bool] = {}

    def words(self, text: str) -> set[str]:
        toks = {t for t in _WORD.findall(text.lower()) if t not in STOP}
        return toks | {lem for t in toks if (lem := self.wn.lemma(t))}

    def fits(self, name: str, label: str, desc_words: set[str]) -> bool:
        n = base(name)
        lem = self.wn.lemma(n) or n
        if n in desc_words or lem in desc_words or n == label:
            return True
        key = (lem, label)
        if key not in self._memo:
            self._memo[key] = self.wn.related(lem, label, max_up=1) and self._specific(lem)
        return self._memo[key]

    def _specific(self, lemma: str) -> bool:
        """A name high up the hierarchy ("object", "organism", "whole") relates to everything."""
        senses = self.wn.senses(lemma)
        return bool(senses) and _depth(self.wn, senses[0].offset) >= 5

    def is_concrete(self, name: str) -> bool:
        n = base(name)
        return n in self.concrete or (self.wn.lemma(n) or "") in self.concrete


def _depth(wn: WordNet, offset: str) -> int:
    frontier, d, seen = {offset}, 0, {offset}
    while frontier and all(wn.synsets[o].hypernyms for o in frontier):
        frontier = {h for o in frontier for h in wn.synsets[o].hypernyms} - seen
        seen |= frontier
        d += 1
    return d


def duplicate_rate(names) -> float:
    keys = [n.casefold() for n in names]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return sum(1 for k in keys if counts[k] > 1) / max(len(keys), 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(resource_path("models", "demo-concepts.zip")))
    p.add_argument("--photos", type=Path, default=default_cache(), help="cache folder of fetch_demo_photos.py")
    p.add_argument("--wordnet", type=Path, help="WordNet 3.0 dict folder (default: from the photo cache)")
    p.add_argument("--vocab", type=Path, default=ROOT / "resources" / "vocab" / "visual.txt")
    p.add_argument("--hubness-k", type=int, default=HUBNESS_K)
    p.add_argument("--margin", type=float, default=ALTERNATIVE_MARGIN, help="duplicate rule: relative margin")
    p.add_argument("--device", default="cpu")
    p.add_argument("--show", type=int, default=6, help="print the top names of this many photos")
    args = p.parse_args(argv)
    t0 = time.monotonic()

    from build_visual_vocab import wordnet_dir

    wn = WordNet(args.wordnet or wordnet_dir(args.photos))
    vocab = load_vocabulary(args.vocab)
    judge = Judge(wn, {t.lower() for t in vocab.terms})
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    held = [r for r in manifest if r["split"] == "heldout"]
    # the photos the bundled demo model was trained on (its resources/samples): names there show
    # what the naming does on concepts that mean something, whatever the model's generalisation
    samples = [r for r in manifest if Path(r["path"]).name in SAMPLE_FILES]
    paths = {r["id"]: next(iter(sorted((args.photos / "photos" / r["split"]).glob(r["id"] + ".*"))), None)
             for r in held + samples}
    missing = [i for i, q in paths.items() if q is None]
    if missing:
        print(f"{len(missing)} photos are not in {args.photos}: run scripts/fetch_demo_photos.py first")
        return 2

    analyzer = Analyzer(args.model, device=args.device)
    model = analyzer.model
    old = model.names
    top_ids, fvus = [], []
    for r in held + samples:
        a = analyzer.analyze(load_photo(paths[r["id"]]), classify=False)
        top_ids.append([c.concept for c in a.concepts[:TOP]])
        fvus.append(a.faithfulness.fvu)
    t_an = time.monotonic() - t0
    sample_ids, top_ids = top_ids[len(held):], top_ids[:len(held)]
    sample_fvu, fvus = fvus[len(held):], fvus[:len(held)]

    t1 = time.monotonic()
    emb = embed_vocabulary(analyzer.backbone, vocab)
    t_emb = time.monotonic() - t1
    sae, rel = model.sae, model.relations
    hier = old.method == "hierarchy"
    kw = dict(d_hat=rel.d_hat if hier else None, mu=rel.mu if hier else None, tau=rel.tau)
    W, b = sae.W_dec.detach().cpu().numpy(), sae.b_dec.detach().cpu().numpy()
    t2 = time.monotonic()
    new = name_model(W, b, [(emb, vocab)], margin=args.margin, **kw)
    t_name = time.monotonic() - t2
    new_hub = name_model(W, b, [(emb, vocab)], hubness_k=args.hubness_k, margin=args.margin, **kw)
    columns = {
        "old (bundle)": old.names,
        "old + distinct": tuple(distinct_names([[(c.term, c.score) for c in cs] or [(n, 0.0)]
                                                for n, cs in zip(old.names, old.candidates)], args.margin)),
        "visual": new.names,
        f"visual + CSLS k={args.hubness_k}": new_hub.names,
    }

    def precision(names, photos=held, ids_per_photo=top_ids) -> float:
        hits = [sum(judge.fits(names[j], r["label"], judge.words(r["description"] + " " + r["label"]))
                    for j in ids) / max(len(ids), 1) for r, ids in zip(photos, ids_per_photo)]
        return float(np.mean(hits))

    rows = [("name precision@10 (held-out)", [precision(n) for n in columns.values()]),
            (f"  … on the {len(samples)} training samples",
             [precision(n, samples, sample_ids) for n in columns.values()]),
            ("concreteness (all concepts)", [np.mean([judge.is_concrete(x) for x in n]) for n in columns.values()]),
            ("duplicate-name rate", [duplicate_rate(n) for n in columns.values()])]
    width = max(len(c) for c in columns) + 2
    print(f"model: {args.model} ({model.n_concepts} concepts, {old.method} naming); "
          f"{len(held)} held-out photos; vocabulary {vocab.name} ({len(vocab)} terms)\n")
    print(f"{'':<32}" + "".join(f"{c:>{width}}" for c in columns))
    for label, vals in rows:
        print(f"{label:<32}" + "".join(f"{v:>{width}.3f}" for v in vals))
    ref = rows[0][1][0]
    print(f"{'precision ratio vs old':<32}" + "".join(f"{(v / ref if ref else float('nan')):>{width}.2f}×"
                                                       for v in rows[0][1]))
    print(f"\nFVU of this model: held-out {np.mean(fvus):.3f}, training samples {np.mean(sample_fvu):.3f} "
          "(mean per photo; the same for every column)")
    print(f"time: analysis {t_an:.0f} s, vocabulary embedding {t_emb:.0f} s (cached after the first run), "
          f"naming {t_name:.1f} s")
    for r, ids in list(zip(held, top_ids))[:args.show] + list(zip(samples, sample_ids)):
        print(f"\n{r['id']} [{r['label']}] {r['description'][:70]}")
        for c, names in columns.items():
            print(f"  {c:<22} " + ", ".join(names[j] for j in ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
