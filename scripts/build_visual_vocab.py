#!/usr/bin/env python
"""Build ``resources/vocab/visual.txt``: a naming vocabulary of things one can see.

The general 20 k list (``english.txt``) names concepts "operating", "royals" or "freeing": most
frequent English words are abstract. This vocabulary keeps only words for what a photo shows:

1. **ImageNet classes** — ``imagenet.txt`` (1000 names).
2. **Their WordNet hypernyms** — every ancestor of the 1000 ImageNet synsets (wnids from
   timm's ``imagenet_synsets.txt``) at depth ≥ :data:`MIN_DEPTH` below ``entity``, so parent
   concepts can be named "feline", "vessel", "container". An ancestor is named by its first
   lemma that is a common word (all its words in ``english.txt``), or by its first lemma when it
   covers at least :data:`MIN_COVER` ImageNet classes; otherwise it is left out ("placental").
3. **Colours, materials, textures and patterns, scenes, and stuff/parts** — short hand-written
   lists below (patch-level concepts are often "sky", "fur", "striped", "wooden").
4. **Concrete words of the 20 k list** — a word is kept when, after plural → singular (WordNet's
   morphy rules), its noun reading is at least as frequent as its verb and adjective readings
   (WordNet sense-tag counts; a noun never tagged in WordNet's corpus is kept only if every
   sense is concrete and it has ≥ 4 letters: "yogurt" stays, "max" and "eds" go) and its noun sense lies in a concrete
   lexicographer file (:data:`CONCRETE_LEXNAMES`: animals, artifacts, body, food, natural
   objects, plants, substances) — its most frequent sense, or its second when the first is a
   group or a place ("church", "bank"). Words that are mostly names ("Roberts") are dropped, and
   so are things no photo shows (:data:`NOT_SEEN_UNDER`: kinship, hormones, gases, chemicals,
   internal organs, …; :data:`NOT_SEEN`: the abstract words WordNet files as things) unless
   :data:`SEEN_ANYWAY` ("water", "salt"). Kept words are written in their singular form.
5. **People** — only the hand-written :data:`PEOPLE` (what a photo can tell: "woman",
   "soldier", "diver"); WordNet's person words ("sister", "chairman", "friend") are not visible.

WordNet 3.0 comes from the Debian package ``wordnet-base`` (fetched with ``apt-get download``
into the demo-photo cache, or ``--wordnet DIR`` pointing at a ``dict`` folder). Output is
sorted by section, then by the order of the source lists; deterministic for given inputs.

Usage:  python scripts/build_visual_vocab.py [--wordnet DIR] [--out resources/vocab/visual.txt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wordnet_lite import WordNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "resources" / "vocab"
MIN_DEPTH = 5
MIN_COVER = 3
#: ancestors (lemma, lexname) whose descendants no photo shows: a sister looks like a woman,
#: testosterone and oxygen look like nothing
NOT_SEEN_UNDER = (("relative", "person"), ("hormone", "body"), ("neurotransmitter", "substance"),
                  ("enzyme", "substance"), ("protein", "substance"), ("vitamin", "substance"),
                  ("atom", "substance"), ("gas", "substance"), ("chemical element", "substance"),
                  ("compound", "substance"), ("body fluid", "body"), ("internal organ", "body"),
                  ("genitalia", "body"), ("sex organ", "body"), ("gland", "body"),
                  ("duct", "body"))
#: words under those ancestors that photos do show
SEEN_ANYWAY = frozenset("""
water salt soap toothpaste nylon tar gasoline petrol resin flint lime soda charcoal graphite tin
platinum blood smoke oil fat grease
""".split())
#: abstract or invisible words WordNet files under a concrete lexicographer file (a "corporation"
#: is a paunch, a "calculus" a stone, a "work" an artifact), and drugs and doses; also left out
#: of the hypernyms
NOT_SEEN = frozenset("""
corporation stuff fraction cache hash mine links segment calculus counterfeit fake dose embryo gene
chromosome neuron receptor pathway tract anterior region nude publication website drug medication
narcotic cocaine heroin meth morphine opium dope antidote generic bayer elvis sens marc acoustic
botanical buns fanny arse des costa optic marcel orb lobe radical builder buffer
formulation inhibitor substrate matrix suspension solution filling packing penis female work loading
infrastructure duff mina pathogen spawn
""".split())
#: first senses that often shadow a concrete second one ("church": the body of Christians, then
#: the building; "bank": the institution, then the building)
SECOND_SENSE_OK = frozenset({"group", "location"})
CONCRETE_LEXNAMES = frozenset({"animal", "artifact", "body", "food", "object", "plant", "substance"})

COLOURS = """
red orange yellow green blue purple violet pink brown black white grey gray beige cream
turquoise teal cyan magenta maroon navy olive gold golden silver bronze copper ivory tan
crimson scarlet lavender lilac indigo amber khaki charcoal rust peach mint emerald
""".split()

MATERIALS = """
wood wooden metal metallic steel iron aluminium brass chrome glass plastic rubber leather fabric
cloth cotton wool silk denim linen paper cardboard stone marble granite brick concrete cement
ceramic porcelain clay sand soil mud gravel rock ice snow water wax foam fur feather feathers
straw bamboo wicker rope wire mesh velvet lace canvas tile asphalt plaster crystal
""".split()

TEXTURES = """
striped spotted dotted checkered plaid zigzag wavy curly fluffy furry hairy smooth rough shiny
glossy matte reflective transparent translucent blurry sharp grainy rusty wrinkled cracked
scaly bumpy woven knitted braided ribbed grooved patterned speckled mottled banded polka-dot
honeycomb grid lattice spiral swirly dappled frosted wet dry dusty muddy sparkling glowing
""".split()

SCENES = """
sky cloud clouds sunset sunrise horizon sea ocean beach shore coast wave lake river pond
waterfall stream mountain hill valley cliff canyon desert dune forest woods jungle meadow field
grassland farm garden park lawn orchard vineyard island cave glacier volcano swamp marsh
street road highway bridge tunnel sidewalk crosswalk parking lot city town village skyline
building skyscraper house cottage cabin barn church temple castle tower lighthouse harbor
port dock pier marina airport runway railway station platform market shop store restaurant
cafe kitchen bathroom bedroom living room office classroom library museum stadium playground
gym studio stage corridor hallway staircase window door roof wall floor ceiling fence gate
snow night fog rain storm lightning fire smoke sunlight shadow underwater space night sky
""".split()
SCENES = [w.replace("-", " ") for w in SCENES]

STUFF_AND_PARTS = """
grass leaf leaves branch trunk bark root flower petal stem seed fruit tree bush moss
fur hair feather wing beak claw paw tail horn antler hoof mane scale fin shell whisker
eye ear nose mouth lip tooth teeth face head hand finger arm leg foot skin beard
wheel tire headlight windshield engine handle lid cap button zipper strap buckle pocket
collar sleeve screen keyboard lens label logo text letters sign pattern reflection
""".split()

PEOPLE = """
person people man woman child boy girl baby toddler kid teenager adult lady guy crowd family couple
player athlete runner cyclist swimmer diver surfer skier skater climber rider jockey dancer
soldier police-officer firefighter astronaut pilot sailor chef cook waiter doctor nurse worker
farmer fisherman musician singer guitarist drummer bride groom student tourist hiker
""".split()
PEOPLE = [w.replace("-", " ") for w in PEOPLE]

MULTIWORD_SCENES = ("parking lot", "living room", "night sky", "traffic light", "street sign",
                    "brick wall", "wooden floor", "tiled floor", "blue sky", "cloudy sky",
                    "green grass", "sandy beach", "snowy mountain", "city street", "country road")


def read_list(path: Path) -> list[str]:
    return [s for s in (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
            if s and not s.startswith("#")]


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class order, from timm (installed with the app)."""
    from importlib import resources

    text = (resources.files("timm") / "data" / "_info" / "imagenet_synsets.txt").read_text(encoding="utf-8")
    wnids = [w.strip() for w in text.split() if w.strip()]
    if len(wnids) != 1000:
        raise SystemExit(f"timm's imagenet_synsets.txt has {len(wnids)} wnids, expected 1000")
    return wnids


def depth(wn: WordNet, offset: str) -> int:
    """Shortest hypernym path length from ``offset`` up to a root (entity = 0)."""
    frontier, d, seen = {offset}, 0, {offset}
    while frontier:
        if any(not wn.synsets[o].hypernyms for o in frontier):
            return d
        frontier = {h for o in frontier for h in wn.synsets[o].hypernyms} - seen
        seen |= frontier
        d += 1
    return d


def hypernym_terms(wn: WordNet, wnids: list[str], common: set[str]) -> list[str]:
    cover: dict[str, int] = {}
    order: list[str] = []
    for wnid in wnids:
        for a in sorted(wn.ancestors(wnid[1:])):
            if a not in cover:
                order.append(a)
            cover[a] = cover.get(a, 0) + 1
    terms = []
    for a in order:
        if depth(wn, a) < MIN_DEPTH:
            continue
        lemmas = wn.synsets[a].lemmas
        common_lemma = next((lem for lem in lemmas if all(w in common for w in lem.split())), None)
        term = common_lemma if common_lemma is not None else lemmas[0] if cover[a] >= MIN_COVER else None
        if term is not None and term not in NOT_SEEN:
            terms.append(term)
    return terms


def pos_tag_counts(folder: Path, pos: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(folder / f"index.{pos}", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split()
            k = 4 + int(f[3])
            counts[f[0].replace("_", " ")] = int(f[k + 1])
    return counts


def not_seen_ancestors(wn: WordNet) -> set[str]:
    """Offsets of :data:`NOT_SEEN_UNDER` found in ``wn`` (the first sense of that lemma and lexname)."""
    found = set()
    for lemma, lexname in NOT_SEEN_UNDER:
        sense = next((s for s in wn.senses(lemma) if s.lexname == lexname and lemma in s.lemmas), None)
        if sense is not None:
            found.add(sense.offset)
    return found


def concrete_words(wn: WordNet, english: list[str]) -> list[str]:
    verbs, adjs = pos_tag_counts(wn.folder, "verb"), pos_tag_counts(wn.folder, "adj")
    unseen = not_seen_ancestors(wn)
    out = []
    for word in english:
        lem = wn.lemma(word)
        if lem is None:
            continue
        noun_tags = wn.tag_count.get(lem, 0)
        # the surface word's own verb/adjective readings ("operating", "royal") compete with the noun
        other = max(verbs.get(word, 0), verbs.get(lem, 0), adjs.get(word, 0), adjs.get(lem, 0))
        if noun_tags < other:
            continue
        if noun_tags == 0 and (len(lem) < 4 or other > 0 or any(
                s.lexname not in CONCRETE_LEXNAMES for s in wn.senses(lem))):
            continue  # never tagged in WordNet's corpus: keep only unambiguous things ("yogurt")
        senses = list(wn.senses(lem))
        if not senses or senses[0].proper:  # mostly a name: "Roberts", "Japan", "Jesus"
            continue
        if senses[0].lexname in CONCRETE_LEXNAMES:
            sense = senses[0]
        elif senses[0].lexname in SECOND_SENSE_OK and len(senses) > 1 and senses[1].lexname in CONCRETE_LEXNAMES:
            sense = senses[1]
        else:
            continue  # abstract, or a person (people come from PEOPLE only)
        if lem in SEEN_ANYWAY or not (lem in NOT_SEEN or unseen & (wn.ancestors(sense.offset) | {sense.offset})):
            out.append(lem)
    return out


def build(wn: WordNet, english: list[str], imagenet: list[str], wnids: list[str]) -> dict[str, list[str]]:
    common = set(english)
    return {
        "imagenet": imagenet,
        "hypernyms": hypernym_terms(wn, wnids, common),
        "colours": COLOURS,
        "materials": MATERIALS,
        "textures": TEXTURES,
        "scenes": SCENES + list(MULTIWORD_SCENES),
        "stuff": STUFF_AND_PARTS,
        "people": PEOPLE,
        "concrete": concrete_words(wn, english),
    }


def merge(sections: dict[str, list[str]]) -> tuple[list[str], dict[str, int]]:
    seen: set[str] = set()
    terms, added = [], {}
    for name, words in sections.items():
        n = 0
        for w in words:
            key = " ".join(w.split()).casefold()
            if key and key not in seen:
                seen.add(key)
                terms.append(" ".join(w.split()))
                n += 1
        added[name] = n
    return terms, added


def wordnet_dir(cache: Path | None = None) -> Path:
    """The WordNet ``dict`` folder of Debian's ``wordnet-base``, fetched into the demo cache."""
    from fetch_demo_photos import WORDNET, default_cache, unpack

    return unpack(WORDNET, cache or default_cache()) / "usr" / "share" / "wordnet"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet", type=Path, help="a WordNet 3.0 dict folder (default: fetch wordnet-base)")
    ap.add_argument("--cache", type=Path, help="download cache (default: the demo-photo cache)")
    ap.add_argument("--out", type=Path, default=VOCAB / "visual.txt")
    args = ap.parse_args(argv)
    wn = WordNet(args.wordnet or wordnet_dir(args.cache))
    sections = build(wn, read_list(VOCAB / "english.txt"), read_list(VOCAB / "imagenet.txt"), imagenet_wnids())
    terms, added = merge(sections)
    header = ("# Visual naming vocabulary, generated by scripts/build_visual_vocab.py — do not edit.\n"
              "# Sources and licences: resources/vocab/SOURCES.md\n")
    args.out.write_text(header + "\n".join(terms) + "\n", encoding="utf-8")
    print(f"{len(terms)} terms → {args.out}: " + ", ".join(f"{k} {v}" for k, v in added.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
