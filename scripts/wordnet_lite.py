"""A minimal, dependency-free reader of the WordNet 3.0 noun database (Princeton ``dict`` files).

Used by ``scripts/build_visual_vocab.py`` and ``benchmarks/naming_quality.py``. The database
comes from the Debian package ``wordnet-base`` (``apt-get download wordnet-base``; licence:
WordNet 3.0, see ``resources/vocab/SOURCES.md``); :func:`wordnet_dir` fetches it into the
demo-photo cache with the same registry client as ``fetch_demo_photos.py``. Only what the
scripts need: noun synsets (lemmas, lexicographer file, hypernyms), the sense-ordered index,
and the noun exception list for plurals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

#: WordNet's lexicographer files for nouns (lexnames 03-28), by number
NOUN_LEXNAMES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body", 9: "cognition",
    10: "communication", 11: "event", 12: "feeling", 13: "food", 14: "group", 15: "location",
    16: "motive", 17: "object", 18: "person", 19: "phenomenon", 20: "plant", 21: "possession",
    22: "process", 23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance",
    28: "time",
}


@dataclass(frozen=True)
class Synset:
    offset: str
    lexname: str
    lemmas: tuple[str, ...]        # with spaces, lowercase, in WordNet's order
    proper: bool                   # first lemma capitalised: a name ("Roberts", "Madison")
    hypernyms: tuple[str, ...]     # offsets (@ and @i)
    gloss: str


class WordNet:
    """Nouns of a WordNet 3.0 ``dict`` folder (``data.noun``, ``index.noun``, ``noun.exc``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.synsets: dict[str, Synset] = {}
        with open(self.folder / "data.noun", encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue  # licence header
                head, _, gloss = line.partition(" | ")
                f = head.split()
                offset, lex, n = f[0], int(f[1]), int(f[3], 16)
                raw = [f[4 + 2 * i].split("(")[0] for i in range(n)]  # "(a)": adjective markers
                lemmas = tuple(r.lower().replace("_", " ") for r in raw)
                proper = raw[0][:1].isupper()
                k = 4 + 2 * n
                p = int(f[k])
                hyper = tuple(f[k + 1 + 4 * j + 1] for j in range(p) if f[k + 1 + 4 * j] in ("@", "@i"))
                lexname = NOUN_LEXNAMES.get(lex, str(lex))
                self.synsets[offset] = Synset(offset, lexname, lemmas, proper, hyper, gloss.strip())
        self.index: dict[str, tuple[str, ...]] = {}
        self.tag_count: dict[str, int] = {}
        with open(self.folder / "index.noun", encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                f = line.split()
                lemma, synset_cnt, p_cnt = f[0].replace("_", " "), int(f[2]), int(f[3])
                k = 4 + p_cnt
                self.tag_count[lemma] = int(f[k + 1])
                self.index[lemma] = tuple(f[k + 2:k + 2 + synset_cnt])
        self.exceptions: dict[str, str] = {}
        exc = self.folder / "noun.exc"
        if exc.exists():
            for line in exc.read_text(encoding="latin-1").splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    self.exceptions[parts[0].replace("_", " ")] = parts[1].replace("_", " ")

    # -----------------------------------------------------------------------------------------

    def lemma(self, word: str) -> str | None:
        """The noun lemma of ``word`` (plural → singular, WordNet's morphy rules), or None."""
        w = word.lower().strip()
        if w in self.index:
            return w
        if w in self.exceptions and self.exceptions[w] in self.index:
            return self.exceptions[w]
        for suffix, repl in (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                             ("men", "man"), ("ies", "y"), ("s", "")):
            if w.endswith(suffix) and (base := w[: len(w) - len(suffix)] + repl) in self.index:
                return base
        return None

    def senses(self, word: str) -> tuple[Synset, ...]:
        """Noun senses of ``word``, most frequent first."""
        lem = self.lemma(word)
        return tuple(self.synsets[o] for o in self.index.get(lem, ())) if lem else ()

    def ancestors(self, offset: str) -> set[str]:
        """Every hypernym (transitively) of a synset, not including itself."""
        seen: set[str] = set()
        stack = list(self.synsets[offset].hypernyms)
        while stack:
            o = stack.pop()
            if o not in seen:
                seen.add(o)
                stack.extend(self.synsets[o].hypernyms)
        return seen

    @cached_property
    def hyponyms(self) -> dict[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {}
        for s in self.synsets.values():
            for h in s.hypernyms:
                children.setdefault(h, []).append(s.offset)
        return {k: tuple(v) for k, v in children.items()}

    def descendants(self, offset: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.hyponyms.get(offset, ()))
        while stack:
            o = stack.pop()
            if o not in seen:
                seen.add(o)
                stack.extend(self.hyponyms.get(o, ()))
        return seen

    def related(self, a: str, b: str, max_up: int = 2) -> bool:
        """True when some noun sense of ``a`` and some of ``b`` are the same synset, or one is a
        hypernym/hyponym of the other (any depth), or they share a parent within ``max_up`` steps
        (siblings: "lion" and "tiger" under "big cat")."""
        sa, sb = self.senses(a), self.senses(b)
        if not sa or not sb:
            return False
        for x in sa:
            up_x = self._up(x.offset, max_up)
            anc_x = self.ancestors(x.offset) | {x.offset}
            for y in sb:
                if y.offset in anc_x or x.offset in self.ancestors(y.offset) | {y.offset}:
                    return True
                if up_x & self._up(y.offset, max_up):
                    return True
        return False

    def _up(self, offset: str, steps: int) -> set[str]:
        frontier, seen = {offset}, {offset}
        for _ in range(steps):
            frontier = {h for o in frontier for h in self.synsets[o].hypernyms} - seen
            seen |= frontier
        return seen - {offset}
