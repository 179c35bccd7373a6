"""Finding concepts from what a person types: an id, a name, a candidate name, or free text.

A query is matched in tiers, best first (:class:`MatchKind`): a concept id ("730", "#730"); the
shown name, exactly; one of the concept's stored candidate names (:attr:`.naming.ConceptNames.
candidates`), exactly; a name or candidate starting with the query; containing it; and, for free
text, the cosine between the query's text embedding and the concepts' hierarchy-aware embeddings
(docs/method.md §5). Name matching is case-insensitive and instant (plain strings, no model);
text similarity needs the backbone's text tower, so it is a separate half (:func:`match_text`)
that a GUI runs on its worker thread and merges with :func:`combine`. :func:`search_concepts`
does both at once (the CLI), :class:`ConceptSearcher` holds what one model needs between queries.

The query is embedded like a vocabulary word in the noun family (:data:`.vocab.TEMPLATE_FAMILIES`:
every template encoded and normalised, averaged, renormalised), so it is compared with a concept
exactly as naming compares a word. Query embeddings are kept in memory (LRU) and on disk, one
small ``.npy`` per (backbone, templates, query) under ``user_cache_dir()/query-embeddings``, so
a repeated search costs no text tower and works offline.

Text hits below a threshold are not shown. The threshold is the model's own scale: the lower
quartile of its concepts' automatic-name scores (:func:`text_threshold`). A query less similar
to a concept than most concepts are to their own names does not describe it. Cosines differ a
lot between backbones (the demo model's name scores lie between 0.07 and 0.15, its threshold is
0.09), so a fixed number would show noise on one and nothing on another. Names chosen with the
hubness correction store corrected scores, which makes this threshold lower (more permissive).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..fileio import atomic_write_bytes
from .naming import ConceptNames, hierarchy_concept_embeddings
from .vocab import TEMPLATE_FAMILIES, _as_float32, _normalise_rows, normalise_term, templates_sha256

log = logging.getLogger(__name__)

#: text hits shown at most (names and ids are never cut)
DEFAULT_LIMIT = 25
#: the quantile of the automatic-name scores that a text hit must reach (:func:`text_threshold`)
THRESHOLD_QUANTILE = 0.25
#: the threshold when a model has no name scores to learn it from (names imported without scores)
DEFAULT_THRESHOLD = 0.2
#: never below this: a model with poor names must not turn every faint cosine into a hit
MIN_THRESHOLD = 0.05
QUERY_FAMILY = "noun"
CACHE_FOLDER = "query-embeddings"
CACHE_FORMAT = "insight-query-embedding/1"
CACHE_MAX_BYTES = 32 << 20
MEMORY_ENTRIES = 512
_ID = re.compile(r"^#?\s*(\d{1,9})$")


class MatchKind(IntEnum):
    """Why a concept matched, best first: the merge keeps each concept's best."""

    ID = 0
    NAME = 1           # the shown name, exactly
    CANDIDATE = 2      # a stored candidate name, exactly
    PREFIX = 3         # a name or candidate starts with the query
    SUBSTRING = 4      # … contains it
    TEXT = 5           # text similarity above the threshold


_KINDS: tuple[MatchKind, ...] = tuple(MatchKind)


@dataclass(frozen=True)
class ConceptHit:
    concept: int
    kind: MatchKind
    why: str                          # "id", "name", "candidate name: space shuttle", "text similarity 0.41"
    similarity: float | None = None   # the query's cosine to the concept, where it was computed


@dataclass(frozen=True)
class TextMatches:
    """The text half of a search: hits above ``threshold`` (best first), the best cosine found,
    and ``reason`` when no similarity was computed (no text tower, a failure)."""

    query: str
    hits: tuple[ConceptHit, ...] = ()
    best: float | None = None
    threshold: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class SearchResult:
    """Hits best first, one per concept; ``reason`` says why there are none (or what was not searched)."""

    query: str
    hits: tuple[ConceptHit, ...]
    reason: str = ""
    text_searched: bool = False

    @property
    def concepts(self) -> tuple[int, ...]:
        return tuple(h.concept for h in self.hits)

    def why(self) -> dict[int, str]:
        return {h.concept: h.why for h in self.hits}


# ---------------------------------------------------------------------------------------------
# Names and ids

def parse_concept_id(query: str) -> int | None:
    """``"730"`` or ``"#730"`` → 730; anything else → None."""
    found = _ID.match(query.strip())
    return int(found.group(1)) if found else None


def _key(text: str) -> str:
    return normalise_term(text).casefold()


class NameIndex:
    """Shown names and candidate names of every concept, case-folded once, for instant matching.

    ``names``: a :class:`.names.NameBook` (shown names with the user's edits, the model's
    candidates), a :class:`.naming.ConceptNames`, or a plain sequence of names (no candidates).
    ``previous``: an index of the same model before a rename; its candidate keys are reused
    (they never change; building them is most of the cost at 20 k concepts)."""

    def __init__(self, names: Any, previous: "NameIndex | None" = None):
        if hasattr(names, "model_names") and hasattr(names, "all"):      # a NameBook
            shown, candidates = tuple(names.all()), names.model_names.candidates
        elif isinstance(names, ConceptNames):
            shown, candidates = names.display_names, names.candidates
        else:
            shown = tuple(str(n) for n in names)
            candidates = ((),) * len(shown)
        self.shown: tuple[str, ...] = shown
        # names are stored normalised (vocabulary terms, clean_name'd edits): case-folding is enough
        self._shown = [n.casefold() for n in shown]
        self._candidates = candidates
        self._cand_keys: list[str]
        self._cand_terms: list[str]
        self._cand_owner: list[int]
        if previous is not None and previous._candidates is candidates:
            self._cand_keys, self._cand_terms, self._cand_owner = (
                previous._cand_keys, previous._cand_terms, previous._cand_owner)
        else:  # flat, so one query is one pass of `in` over a list
            self._cand_terms = [c.term for cs in candidates for c in cs]
            self._cand_keys = [t.casefold() for t in self._cand_terms]
            self._cand_owner = [j for j, cs in enumerate(candidates) for _ in cs]

    def __len__(self) -> int:
        return len(self.shown)

    def match(self, query: str) -> list[ConceptHit]:
        """Id, name and candidate-name hits, best first (ties: lower id), one per concept."""
        # plain ints and tuples in the loops (enum members are slow to compare); hits built once, at the end
        ID, NAME, CANDIDATE, PREFIX, SUBSTRING = (int(k) for k in _KINDS[:5])
        best: dict[int, tuple[int, int]] = {}   # concept → (kind, candidate index or −1)
        concept = parse_concept_id(query)
        if concept is not None and concept < len(self):
            best[concept] = (ID, -1)
        needle, typed = _key(query), query.strip()
        if needle:
            for j in [j for j, name in enumerate(self._shown) if needle in name]:
                name = self._shown[j]
                kind = NAME if name == needle else PREFIX if name.startswith(needle) else SUBSTRING
                if j not in best or kind < best[j][0]:
                    best[j] = (kind, -1)
            for i in [i for i, key in enumerate(self._cand_keys) if needle in key]:
                key, j = self._cand_keys[i], self._cand_owner[i]
                kind = CANDIDATE if key == needle else PREFIX if key.startswith(needle) else SUBSTRING
                if j not in best or kind < best[j][0]:
                    best[j] = (kind, i)
        why_of = {ID: "id", NAME: "name", PREFIX: f"name starts with '{typed}'", SUBSTRING: f"name contains '{typed}'"}
        return [ConceptHit(j, _KINDS[kind], f"candidate name: {self._cand_terms[i]}" if i >= 0 else why_of[kind])
                for kind, j, i in sorted((kind, j, i) for j, (kind, i) in best.items())]

    def no_id_reason(self, query: str) -> str:
        """Why an id-shaped query found no concept ('' when it did or is no id)."""
        concept = parse_concept_id(query)
        if concept is None or concept < len(self):
            return ""
        return f"there is no concept #{concept}: this model's concepts are #0–#{len(self) - 1}"


# ---------------------------------------------------------------------------------------------
# Text

def text_threshold(names: ConceptNames | None) -> float:
    """The least cosine a text hit needs: the lower quartile of the concepts' best candidate
    scores (their automatic names' cosines), at least :data:`MIN_THRESHOLD`; names without
    scores (imported, or none) give :data:`DEFAULT_THRESHOLD`."""
    scores = np.array([cs[0].score for cs in (names.candidates if names is not None else ()) if cs],
                      dtype=np.float64)
    if names is None or names.method == "release" or not scores.size or not np.isfinite(scores).all():
        return DEFAULT_THRESHOLD
    return float(max(MIN_THRESHOLD, np.quantile(scores, THRESHOLD_QUANTILE)))


def rank_text(query: str, vector: np.ndarray, embeddings: np.ndarray, threshold: float,
              limit: int = DEFAULT_LIMIT) -> TextMatches:
    """Concepts whose embedding (rows of ``embeddings``, unit norm) has cosine ≥ ``threshold``
    with ``vector``, best first (ties: lower id), at most ``limit``."""
    scores = embeddings @ np.asarray(vector, np.float32).reshape(-1)
    if not scores.size:
        return TextMatches(query, (), None, threshold)
    order = np.lexsort((np.arange(scores.size), -scores))
    keep = [int(j) for j in order[:max(0, int(limit))] if scores[j] >= threshold]
    hits = tuple(ConceptHit(j, MatchKind.TEXT, f"text similarity {scores[j]:.2f}", float(scores[j])) for j in keep)
    return TextMatches(query, hits, float(scores[order[0]]), threshold)


class QueryEncoder:
    """Free text → a unit vector in feature space, as a noun of the vocabulary is embedded.

    ``encode_text``: a backbone (``.encode_text``, ``.id``, ``.feature_dim``) or a callable
    ``list[str] → [N, d]``. The disk cache needs the backbone's id (``backbone_id``) and is kept
    under ``cache_dir`` (None: the user cache dir; False: memory only). Not thread-safe: one
    thread (the one that owns the backbone) uses it."""

    def __init__(self, encode_text: Any, backbone_id: str | None = None,
                 cache_dir: str | os.PathLike | None | bool = None, memory_entries: int = MEMORY_ENTRIES):
        self._encode: Callable[[list[str]], Any] = getattr(encode_text, "encode_text", None) or encode_text
        if not callable(self._encode):
            raise TypeError("encode_text must be a backbone with .encode_text or a callable encode(list[str])")
        self.backbone_id = backbone_id if backbone_id is not None else getattr(encode_text, "id", None)
        self.folder: Path | None = None
        if self.backbone_id and cache_dir is not False:
            if cache_dir is None or cache_dir is True:
                from ..paths import user_cache_dir

                cache_dir = user_cache_dir() / CACHE_FOLDER
            self.folder = Path(cache_dir)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._max = max(1, int(memory_entries))
        self.encoded = 0   # queries that needed the text tower (the rest came from a cache)

    def __call__(self, query: str) -> np.ndarray:
        # case-folded: CLIP's and MiniLM's tokenizers lower-case anyway, and "Rust" = "rust" in the caches
        text = normalise_term(query).casefold()
        found = self._memory.get(text)
        if found is None:
            found = self._read(text)
            if found is None:
                found = self._embed(text)
                self._write(text, found)
            found.flags.writeable = False
        self._memory[text] = found
        self._memory.move_to_end(text)
        while len(self._memory) > self._max:
            self._memory.popitem(last=False)
        return found

    def _embed(self, text: str) -> np.ndarray:
        texts = [t.format(text) for t in TEMPLATE_FAMILIES[QUERY_FAMILY]]
        x = _as_float32(self._encode(texts))  # backbones run their text tower without autograd
        if x.ndim != 2 or x.shape[0] != len(texts) or not np.isfinite(x).all():
            raise ValueError(f"the text tower returned shape {x.shape} (or non-finite values) for {len(texts)} texts")
        self.encoded += 1
        v = _normalise_rows(_normalise_rows(x).mean(axis=0))
        return v.astype(np.float32)

    def _path(self, text: str) -> Path:
        assert self.folder is not None
        blob = json.dumps([CACHE_FORMAT, self.backbone_id, templates_sha256(), QUERY_FAMILY, text], ensure_ascii=False)
        return self.folder / f"{hashlib.sha256(blob.encode('utf-8')).hexdigest()}.npy"

    def _read(self, text: str) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self._path(text)
        try:
            v = np.load(path, allow_pickle=False)
            if v.ndim == 1 and np.isfinite(v).all() and abs(float(np.linalg.norm(v)) - 1) < 1e-3:
                os.utime(path)  # recently used: evicted last
                return v.astype(np.float32, copy=False)
            log.warning("ignoring damaged query-embedding cache file %s", path)
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 — damage only means encoding again
            log.warning("ignoring unreadable query-embedding cache file %s: %s", path, exc)
        return None

    def _write(self, text: str, v: np.ndarray) -> None:
        if self.folder is None:
            return
        try:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(v, np.float32), allow_pickle=False)
            atomic_write_bytes(self._path(text), buf.getvalue())
            _bound(self.folder, CACHE_MAX_BYTES)
        except OSError as exc:  # read-only or full: costs time next time, not this result
            log.warning("cannot write the query-embedding cache in %s: %s", self.folder, exc)


def _bound(folder: Path, max_bytes: int) -> None:
    """Keep the cache folder under ``max_bytes``: least recently used files go first, down to 3/4."""
    files = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".npy") and entry.is_file():
            st = entry.stat()
            files.append((st.st_mtime_ns, st.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return
    for _, size, path in sorted(files):
        try:
            os.unlink(path)
        except OSError:
            continue
        total -= size
        if total <= max_bytes * 3 // 4:
            break


def concept_embeddings(model: Any) -> np.ndarray:
    """Hierarchy-aware concept embeddings ``[m, d]`` (read-only) of a :class:`.bundle.ConceptModel`
    (anything with ``sae.W_dec``, ``sae.b_dec`` and ``relations.d_hat``/``mu``/``tau``); a
    :class:`ConceptSearcher` computes them once per model."""
    sae, rel = model.sae, model.relations
    found = hierarchy_concept_embeddings(sae.W_dec, sae.b_dec, rel.d_hat, rel.mu, tau=rel.tau)
    found.flags.writeable = False
    return found


def match_text(query: str, embeddings: np.ndarray | None, encode: Callable[[str], np.ndarray] | None, *,
               threshold: float = DEFAULT_THRESHOLD, limit: int = DEFAULT_LIMIT) -> TextMatches:
    """The text half: embed ``query`` with ``encode`` (a :class:`QueryEncoder`) and rank the
    concepts. Never raises for a failing text tower: the reason says what went wrong."""
    query = query.strip()
    if not query or parse_concept_id(query) is not None:
        return TextMatches(query, reason="an id is not compared as text")
    if embeddings is None or encode is None:
        return TextMatches(query, reason="the text tower is not loaded")
    try:
        vector = encode(query)
    except Exception as exc:  # noqa: BLE001 — a search box must say why, not fail
        log.warning("text search for %r failed", query, exc_info=True)
        return TextMatches(query, reason=f"the text tower could not embed it ({type(exc).__name__}: {exc})")
    if vector.shape[-1] != embeddings.shape[1]:
        return TextMatches(query, reason=f"the text tower gives {vector.shape[-1]}-dim vectors, the concepts "
                                         f"{embeddings.shape[1]}-dim")
    return rank_text(query, vector, embeddings, threshold, limit)


def combine(query: str, name_hits: Sequence[ConceptHit], text: TextMatches | None, *,
            no_id_reason: str = "", pending: bool = False) -> SearchResult:
    """Name/id hits first, then text hits of concepts not matched by name (a name hit learns
    its text similarity); ``reason`` when empty. ``pending``: the text half is still coming."""
    query = query.strip()
    sim = {h.concept: h.similarity for h in (text.hits if text is not None else ())}
    hits = [h if h.concept not in sim else ConceptHit(h.concept, h.kind, h.why, sim[h.concept]) for h in name_hits]
    named = {h.concept for h in hits}
    hits += [h for h in (text.hits if text is not None else ()) if h.concept not in named]
    searched = text is not None and not text.reason
    if hits or not query:
        return SearchResult(query, tuple(hits), "", searched)
    if no_id_reason:
        return SearchResult(query, (), no_id_reason, searched)
    names = f"no concept name contains '{query}'"
    if pending:
        reason = f"{names}; comparing it with the concepts as text…"
    elif text is None or text.reason:
        reason = f"{names} and {text.reason if text is not None else 'the text tower is not loaded'}"
    elif text.best is None:
        reason = f"{names} and the model has no concepts"
    else:
        reason = (f"{names} and no concept is similar enough to it "
                  f"(best {text.best:.2f} < {text.threshold:.2f})")
    return SearchResult(query, (), reason, searched)


def search_concepts(query: str, *, names: Any, embeddings: np.ndarray | None = None,
                    encode_text: Any = None, threshold: float | None = None,
                    limit: int = DEFAULT_LIMIT) -> SearchResult:
    """Search concepts by id, name, candidate name and text similarity, best first.

    ``names``: a NameBook, ConceptNames or :class:`NameIndex`; ``embeddings``: the concepts'
    ``[m, d]`` embeddings (:func:`concept_embeddings`); ``encode_text``: a
    :class:`QueryEncoder`, a backbone or a callable ``list[str] → [N, d]`` (no text search when
    either is None). ``threshold``: default :func:`text_threshold` of ``names``."""
    index = names if isinstance(names, NameIndex) else NameIndex(names)
    if threshold is None:
        model_names = getattr(names, "model_names", names)
        threshold = text_threshold(model_names if isinstance(model_names, ConceptNames) else None)
    encoder = encode_text if encode_text is None or isinstance(encode_text, QueryEncoder) else QueryEncoder(
        encode_text, cache_dir=None if getattr(encode_text, "id", None) else False)
    emb = None if embeddings is None else _normalise_rows(_as_float32(embeddings))
    text = match_text(query, emb, encoder, threshold=threshold, limit=limit)
    return combine(query, index.match(query), text, no_id_reason=index.no_id_reason(query))


class ConceptSearcher:
    """What searching one concept model needs, kept between queries: its name index, its
    concept embeddings (computed on the first text query) and a query encoder on its backbone.
    Usable without Qt (the CLI); the GUI's worker keeps one and calls :meth:`text`."""

    def __init__(self, model: Any, backbone: Any = None, *, cache_dir: str | os.PathLike | None | bool = None,
                 limit: int = DEFAULT_LIMIT):
        self.model, self.limit = model, int(limit)
        self.names = NameIndex(model.names)
        self.threshold = text_threshold(model.names)
        self.encoder = QueryEncoder(backbone, cache_dir=cache_dir) if backbone is not None else None
        self._embeddings: np.ndarray | None = None

    @property
    def embeddings(self) -> np.ndarray:
        """The concepts' hierarchy-aware embeddings, computed on first use (≈ m × d floats)."""
        if self._embeddings is None:
            self._embeddings = concept_embeddings(self.model)
        return self._embeddings

    def text(self, query: str) -> TextMatches:
        emb = self.embeddings if self.encoder is not None else None
        return match_text(query, emb, self.encoder, threshold=self.threshold, limit=self.limit)

    def search(self, query: str) -> SearchResult:
        return combine(query, self.names.match(query), self.text(query), no_id_reason=self.names.no_id_reason(query))
