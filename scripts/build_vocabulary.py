#!/usr/bin/env python
"""Build the bundled naming vocabularies in ``resources/vocab/`` (docs/method.md §5).

* ``english.txt`` — the ~20 000 most frequent English words from ``wordfreq`` (Speer 2022),
  keeping lowercase alphabetic words of at least three letters and dropping function words,
  web/chat debris and profanity (explicit lists below). The paper uses the CLIP-Dissect 20k
  list (itself a frequency list); wordfreq is a maintained, citable, openly licensed stand-in.
* ``imagenet.txt`` — the 1000 ImageNet class names as curated by OpenAI CLIP and shipped by
  ``open_clip`` (``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES``), one per line, line i =
  class i. Two names occur twice in that list ("missile" at 657/744, "sunglasses" at
  836/837); classes 744 and 836 get the WordNet lemma of their own synset ("projectile",
  "sunglass") so the file has no duplicates and stays aligned with the class indices.

``wordfreq`` is needed only to run this script (``pip install wordfreq``); it is not a runtime
dependency. The output is deterministic for a given wordfreq version, and the script refuses
to run with another version unless ``--any-version`` is given, so the committed files and
``SOURCES.md`` stay in agreement.

Usage:  python scripts/build_vocabulary.py [--size 20000] [--out resources/vocab]
"""

from __future__ import annotations

import argparse
import codecs
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_WORDFREQ = "3.1.1"
EXPECTED_OPEN_CLIP = "3.3.0"

# Function words carry no visual meaning and would only soak up cosine mass in naming.
# (A standard English stop list plus auxiliaries, quantifiers and discourse fillers.)
STOPWORDS = frozenset("""
the and for that you with this was are have not but from your all his they one can will just
about out what has when more were who had their there her which get been would she how some
also them now other its our than only after into then could these because well said very where
even should may here did too before off why still got many never those while such both every
does own under during again each without against must might until yet however already anything
nothing once though yes per within ago along anyone else yeah maybe whether among upon whose
whom unless via onto thus therefore hence although shall ours yours hers theirs itself himself
herself themselves myself yourself yourselves ourselves let lets gonna wanna gotta okay hey
etc any also just really actually probably perhaps rather quite somewhat either neither nor
since thru till toward towards whereas wherever whenever whatever whichever whoever
someone somebody something somewhere anybody anyhow anyway anywhere everybody everyone
everything everywhere nobody nowhere don didn doesn isn wasn aren weren hasn haven hadn
won't couldn wouldn shouldn ain mustn needn cannot ive youre theyre dont cant wont thats
above below across behind beyond beside besides between through throughout around about over
into onto out inside outside near amongst despite except like unlike plus minus versus
being having doing done did does doesnt isnt wasnt arent werent hasnt havent hadnt
mrs mr ms dr jr sr inc ltd co vs
""".split())

# Web and chat debris that is frequent in wordfreq's web sources but names nothing visible.
WEB_DEBRIS = frozenset("""
www http https com org net html htm php asp xml pdf amp nbsp lol lmao omg wtf idk tbh imo imho
btw fyi smh rofl haha hahaha hehe lmfao aka via url urls faq
""".split())

# A small explicit profanity/slur list. Stored ROT13-encoded so the script itself does not
# print slurs in plain text; decoded at run time. STEMS match anywhere inside a word
# ("...ing", "...ed" forms), WORDS match whole words only (they are substrings of innocent
# words, e.g. "ass" in "class").
_PROFANE_STEMS_ROT13 = "shpx fuvg phag avttn avttr ovgpu juber fyhg snttbg cbea qvyqb"
_PROFANE_WORDS_ROT13 = """
nff nffrf nffubyr nffubyrf onfgneq onfgneqf pbpx pbpxf qvpx qvpxf chffl chffvrf gjng gvgf
gvggvrf obbof obbovrf phz snt sntf ergneq ergneqrq fcvp puvax xvxr qlxr genaal ubeal
cevpx cevpxf qbhpur qbhpuront ovzob jnax jnaxre jnaxref jnaxvat
"""
PROFANE_STEMS = tuple(codecs.decode(_PROFANE_STEMS_ROT13, "rot13").split())
PROFANE_WORDS = frozenset(codecs.decode(_PROFANE_WORDS_ROT13, "rot13").split())

# The two names that occur twice in open_clip's curated list → WordNet lemmas of the synsets.
IMAGENET_DISAMBIGUATION = {744: "projectile", 836: "sunglass"}

_WORD = re.compile(r"[a-z]{3,}")


def is_profane(word: str) -> bool:
    return word in PROFANE_WORDS or any(stem in word for stem in PROFANE_STEMS)


def english_words(size: int, pool: int = 80_000) -> tuple[list[str], dict[str, int]]:
    """The ``size`` most frequent kept words, and how many were dropped by each filter."""
    import wordfreq

    kept: list[str] = []
    seen: set[str] = set()
    dropped = {"not_alpha_or_short": 0, "stopword": 0, "web_debris": 0, "profane": 0}
    for word in wordfreq.top_n_list("en", pool):
        if len(kept) == size:
            break
        if not _WORD.fullmatch(word):
            dropped["not_alpha_or_short"] += 1
        elif word in STOPWORDS:
            dropped["stopword"] += 1
        elif word in WEB_DEBRIS:
            dropped["web_debris"] += 1
        elif is_profane(word):
            dropped["profane"] += 1
        elif word not in seen:
            seen.add(word)
            kept.append(word)
    if len(kept) < size:
        raise SystemExit(f"only {len(kept)} words survive the filters in the top {pool}; raise the pool")
    return kept, dropped


def imagenet_names() -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = [" ".join(n.split()) for n in IMAGENET_CLASSNAMES]
    for index, lemma in IMAGENET_DISAMBIGUATION.items():
        names[index] = lemma
    if len(names) != 1000 or len({n.casefold() for n in names}) != 1000:
        raise SystemExit("ImageNet class names are not 1000 distinct names; check the disambiguation table")
    return names


def write_lines(path: Path, lines: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from insight_desktop.core.fileio import atomic_write_bytes

    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    path.chmod(0o644)  # atomic writes go through mkstemp (0600); resources are world-readable


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=20_000, help="number of English words (default 20000)")
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "vocab")
    ap.add_argument("--any-version", action="store_true", help="allow other wordfreq/open_clip versions")
    args = ap.parse_args(argv)

    versions = {"wordfreq": metadata.version("wordfreq"), "open_clip_torch": metadata.version("open_clip_torch")}
    expected = {"wordfreq": EXPECTED_WORDFREQ, "open_clip_torch": EXPECTED_OPEN_CLIP}
    if versions != expected and not args.any_version:
        raise SystemExit(f"versions {versions} differ from {expected} named in SOURCES.md; "
                         "update SOURCES.md and rerun with --any-version")

    words, dropped = english_words(args.size)
    names = imagenet_names()
    write_lines(args.out / "english.txt", words)
    write_lines(args.out / "imagenet.txt", names)
    print(f"english.txt: {len(words)} words (wordfreq {versions['wordfreq']}); dropped {dropped}")
    print(f"imagenet.txt: {len(names)} names (open_clip_torch {versions['open_clip_torch']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
