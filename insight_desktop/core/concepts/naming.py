"""Concept naming: vanilla and hierarchy-aware concept embeddings, and the best words for them
(docs/method.md §5).

A concept's *embedding* is where the SAE decoder puts it in the backbone's text-aligned space;
its *name* is the vocabulary term (in one of three template families) with the highest cosine.

* Vanilla: e_i = normalise(W_dec[i] + b_dec).
* Hierarchy-aware (Insight): a Matryoshka child's decoder row often encodes only the *delta*
  from its parent ("sailboat" − "boat"), so it is decoded together with its parents, weighted
  as the concept actually co-fires with them: e_i = normalise(V_i W_dec + b_dec), where
  V_i = R_i ⊙ μ_i rescaled to a typical code norm, R = D̂ ⊙ 1[D̂ > τ] with diag(R) = 1 and μ_i
  the mean code over i's top patches.

Vocabularies, templates and the text-embedding cache live in :mod:`.vocab` and are re-exported
here. Torch-free: inputs may be torch tensors and are converted on arrival.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from .name_choice import ALTERNATIVE_MARGIN, HUBNESS_K, distinct_names, word_hubness  # noqa: F401 — HUBNESS_K re-exported
from .vocab import (  # noqa: F401 — re-exported: naming.py is the public entry point
    DEFAULT_VOCABULARY_FILES,
    FAMILIES,
    TEMPLATE_FAMILIES,
    NamingCancelled,
    NamingError,
    Vocabulary,
    _as_float32,
    _normalise_rows,
    default_vocabularies,
    embed_vocabularies,
    embed_vocabulary,
    family_texts,
    load_vocabulary,
    templates_sha256,
    term_key,
)

TAU = 0.75          # docs/method.md §4: j is a parent of i when D̂_ij > τ
SCALE = 1.33        # docs/method.md §5: s = 1.33 · mean_i ‖μ_i‖
METHODS = ("vanilla", "hierarchy", "release")  # release: names imported from the authors' files
NAMES_FORMAT = "insight-concept-names"
NAMES_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Concept embeddings

def _decoder(W_dec: Any, b_dec: Any) -> tuple[np.ndarray, np.ndarray]:
    W, b = _as_float32(W_dec), _as_float32(b_dec).reshape(-1)
    if W.ndim != 2 or b.shape != (W.shape[1],):
        raise NamingError(f"W_dec must be [m, d] and b_dec [d]; got {W.shape} and {b.shape}")
    return W, b


def vanilla_concept_embeddings(W_dec: Any, b_dec: Any) -> np.ndarray:
    """e_i = normalise(W_dec[i] + b_dec), ``[m, d]`` float32."""
    W, b = _decoder(W_dec, b_dec)
    return _normalise_rows(W + b).astype(np.float32)


def _as_csr(x: Any, m: int, what: str) -> sp.csr_matrix:
    mat = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else sp.csr_matrix(_as_float32(x).astype(np.float64))
    if mat.shape != (m, m):
        raise NamingError(f"{what} must be [m, m] = [{m}, {m}]; got {mat.shape}")
    return mat


def parent_weights(d_hat: Any, tau: float = TAU) -> sp.csr_matrix:
    """R = D̂ ⊙ 1[D̂ > τ] with NaN (and ±inf) → 0 and diag(R) = 1, as sparse CSR [m, m]."""
    D = sp.coo_matrix(d_hat, dtype=np.float64) if sp.issparse(d_hat) else sp.coo_matrix(
        _as_float32(d_hat).astype(np.float64))
    if D.shape[0] != D.shape[1]:
        raise NamingError(f"d_hat must be square; got {D.shape}")
    D.sum_duplicates()
    data = np.nan_to_num(D.data, nan=0.0, posinf=0.0, neginf=0.0)
    keep = (data > tau) & (D.row != D.col)  # the diagonal is set to 1 below, whatever D̂_ii is
    m = D.shape[0]
    R = sp.csr_matrix((data[keep], (D.row[keep], D.col[keep])), shape=(m, m))
    return (R + sp.identity(m, dtype=np.float64, format="csr")).tocsr()


def _row_norms(M: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).reshape(-1))


def hierarchy_concept_embeddings(W_dec: Any, b_dec: Any, d_hat: Any, mu: Any,
                                 tau: float = TAU, scale: float = SCALE) -> np.ndarray:
    """Insight's hierarchy-aware concept embeddings ``[m, d]`` float32 (docs/method.md §5).

    ``d_hat`` (D̂_ij = D_ij / D_ii) and ``mu`` (row i = mean code over i's top patches) are
    ``[m, m]`` scipy sparse matrices (dense arrays are accepted). Everything stays sparse:
    R has one entry per (concept, parent) plus the diagonal, V = R ⊙ μ is no denser than μ.

    Scale: s = ``scale`` · mean ‖μ_i‖ over the concepts whose μ_i is non-zero — concepts that
    never fired have μ_i = 0 and would otherwise drag the typical code norm towards zero. The
    scale matters only relative to b_dec: it puts V_i W_dec at the norm of a real
    reconstruction. Rows with ‖V_i‖ = 0 (μ_i zero on i and its parents) keep the vanilla
    embedding.
    """
    W, b = _decoder(W_dec, b_dec)
    m = W.shape[0]
    R = parent_weights(_as_csr(d_hat, m, "d_hat"), tau)
    MU = _as_csr(mu, m, "mu")
    if MU.nnz and not np.isfinite(MU.data).all():
        raise NamingError("mu contains non-finite values")

    mu_norm = _row_norms(MU)
    V = R.multiply(MU).tocsr()
    v_norm = _row_norms(V)
    has_v = v_norm > 0
    if not has_v.any():
        return vanilla_concept_embeddings(W, b)
    s = scale * float(mu_norm[mu_norm > 0].mean())
    V = sp.diags(np.where(has_v, s / np.where(has_v, v_norm, 1.0), 0.0)) @ V
    E = np.asarray(V @ W.astype(np.float64)) + b
    E[~has_v] = W[~has_v] + b
    return _normalise_rows(E).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Names

class NameCandidate(NamedTuple):
    """One candidate name of a concept: the term, its template family, its vocabulary, cosine."""

    term: str
    family: str
    vocabulary: str
    score: float


@dataclass(frozen=True)
class ConceptNames:
    """Automatic names of m concepts, their top candidates, and room for annotators' edits.

    ``names[i]`` is the automatic name (best candidate); ``edited[i]`` an annotator's name or
    None; :meth:`display_name` prefers the edit. Serialised as ``names.json`` in the bundle.
    """

    names: tuple[str, ...]
    candidates: tuple[tuple[NameCandidate, ...], ...]
    method: str
    edited: tuple[str | None, ...] = ()
    #: (name, sha256) of the vocabularies the names were chosen from, for provenance
    vocabularies: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NamingError(f"method must be one of {METHODS}, not {self.method!r}")
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "candidates", tuple(tuple(NameCandidate(str(c[0]), str(c[1]), str(c[2]), float(c[3]))
                                                           for c in cs) for cs in self.candidates))
        edited = tuple(self.edited) or (None,) * len(self.names)
        object.__setattr__(self, "edited", tuple(None if e is None else str(e) for e in edited))
        object.__setattr__(self, "vocabularies", tuple((str(n), str(h)) for n, h in self.vocabularies))
        if not (len(self.candidates) == len(self.edited) == len(self.names)):
            raise NamingError(f"names ({len(self.names)}), candidates ({len(self.candidates)}) and edits "
                              f"({len(self.edited)}) must have one entry per concept")

    def __len__(self) -> int:
        return len(self.names)

    def display_name(self, i: int) -> str:
        """The annotator's name if there is one, else the automatic name."""
        e = self.edited[i]
        return e if e else self.names[i]

    @property
    def display_names(self) -> tuple[str, ...]:
        return tuple(self.display_name(i) for i in range(len(self)))

    def with_edit(self, i: int, name: str | None) -> "ConceptNames":
        """A copy with concept ``i`` renamed by hand (None or "" removes the edit)."""
        edited = list(self.edited)
        edited[i] = (name.strip() or None) if name is not None else None
        return ConceptNames(self.names, self.candidates, self.method, tuple(edited), self.vocabularies)

    def with_edits_from(self, other: "ConceptNames") -> "ConceptNames":
        """A copy carrying over ``other``'s hand edits (after renaming with a new vocabulary)."""
        if len(other) != len(self):
            raise NamingError(f"cannot carry edits from {len(other)} concepts to {len(self)}")
        edited = tuple(o if o is not None else s for s, o in zip(self.edited, other.edited))
        return ConceptNames(self.names, self.candidates, self.method, edited, self.vocabularies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": NAMES_FORMAT,
            "version": NAMES_VERSION,
            "method": self.method,
            "vocabularies": [{"name": n, "sha256": h} for n, h in self.vocabularies],
            "concepts": [
                {"index": i, "auto": self.names[i], "edited": self.edited[i],
                 "candidates": [c._asdict() for c in self.candidates[i]]}
                for i in range(len(self))
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConceptNames":
        try:
            if d.get("format") != NAMES_FORMAT:
                raise NamingError(f"not a concept-names file (format {d.get('format')!r})")
            if int(d.get("version", 0)) > NAMES_VERSION:
                raise NamingError(f"concept-names version {d['version']} is newer than this app reads "
                                  f"({NAMES_VERSION})")
            concepts = sorted(d["concepts"], key=lambda c: int(c["index"]))
            if [int(c["index"]) for c in concepts] != list(range(len(concepts))):
                raise NamingError("concept indices must be 0 … m−1, each once")
            return cls(
                names=tuple(c["auto"] for c in concepts),
                candidates=tuple(tuple(NameCandidate(k["term"], k["family"], k["vocabulary"], k["score"])
                                       for k in c.get("candidates", ())) for c in concepts),
                method=d["method"],
                edited=tuple(c.get("edited") for c in concepts),
                vocabularies=tuple((v["name"], v["sha256"]) for v in d.get("vocabularies", ())),
            )
        except NamingError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NamingError(f"malformed concept-names data: {type(exc).__name__}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "ConceptNames":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NamingError(f"concept names are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise NamingError("concept names JSON must be an object")
        return cls.from_dict(data)


def name_concepts(
    concept_embeddings: Any,
    vocab_embeddings: Sequence[tuple[Any, Vocabulary]],
    top: int = 5,
    *,
    method: str = "vanilla",
    chunk_elements: int = 1 << 23,
    hubness_k: int = 0,
    distinct: bool = True,
    margin: float = ALTERNATIVE_MARGIN,
) -> ConceptNames:
    """Name every concept by the best-scoring (term, family) over all vocabularies.

    ``concept_embeddings`` ``[m, d]`` (from :func:`vanilla_concept_embeddings` or
    :func:`hierarchy_concept_embeddings`; ``method`` records which), ``vocab_embeddings`` a
    list of (``[V, 3, d]`` from :func:`embed_vocabulary`, its :class:`Vocabulary`). Keeps the
    ``top`` best distinct terms per concept: a term in several families or vocabularies counts
    once, with its best score (ties: earlier vocabulary, then earlier term). Scores are computed
    in chunks of at most ``chunk_elements`` cosines, so memory stays bounded for any m.

    ``hubness_k`` > 0 ranks by the CSLS-corrected score cos − r_w, r_w being each (word,
    family)'s mean cosine to its ``hubness_k`` nearest concepts (:mod:`.name_choice`); the
    candidates' scores are then the corrected ones. ``distinct`` (default) gives no two concepts
    the same name: the best-scoring keeps it, the others take an unused candidate within
    ``margin`` or a number, "cat (2)" (:func:`.name_choice.distinct_names`); ``candidates``
    keep the raw ranking either way.
    """
    if top < 1:
        raise NamingError("top must be at least 1")
    if not vocab_embeddings:
        raise NamingError("no vocabularies to name concepts with")
    C = _normalise_rows(_as_float32(concept_embeddings))
    if C.ndim != 2:
        raise NamingError(f"concept embeddings must be [m, d]; got {C.shape}")
    m, d = C.shape

    per_vocab: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (word idx, family idx, score) [m, k]
    for emb, vocab in vocab_embeddings:
        E = _as_float32(emb)
        if E.shape != (len(vocab), len(FAMILIES), d):
            raise NamingError(f"embeddings of vocabulary {vocab.name!r} have shape {E.shape}; "
                              f"expected {(len(vocab), len(FAMILIES), d)}")
        per_vocab.append(_top_terms(C, E, min(top, len(vocab)), chunk_elements, hubness_k))

    names, candidates = [], []
    for i in range(m):
        best: dict[str, tuple[tuple[float, int, int], NameCandidate]] = {}
        for v, ((words, fams, scores), (_, vocab)) in enumerate(zip(per_vocab, vocab_embeddings)):
            for w, f, s in zip(words[i], fams[i], scores[i]):
                cand = NameCandidate(vocab.terms[w], FAMILIES[f], vocab.name, float(s))
                order = (-cand.score, v, int(w))
                key = term_key(cand.term)
                if key not in best or order < best[key][0]:
                    best[key] = (order, cand)
        ranked = tuple(c for _, c in sorted(best.values(), key=lambda oc: oc[0])[:top])
        names.append(ranked[0].term)
        candidates.append(ranked)
    if distinct:
        names = distinct_names([[(c.term, c.score) for c in cs] for cs in candidates], margin)
    return ConceptNames(tuple(names), tuple(candidates), method,
                        vocabularies=tuple((v.name, v.sha256) for _, v in vocab_embeddings))


def _top_terms(C: np.ndarray, E: np.ndarray, k: int, chunk_elements: int,
               hubness_k: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per concept, the k best words of one vocabulary: word index, best family, score (cosine,
    or cosine − hubness when ``hubness_k`` > 0) — each ``[m, k]``, sorted best first (ties:
    lower word index)."""
    V, F, d = E.shape
    norms = np.linalg.norm(E, axis=-1)
    if np.abs(norms - 1).max() > 1e-3:  # only copy a large vocabulary when it needs it
        E = _normalise_rows(E)
    flat = E.reshape(V * F, d)
    penalty = word_hubness(C, flat, hubness_k, chunk_elements) if hubness_k > 0 else None
    m = C.shape[0]
    rows = max(1, int(chunk_elements) // (V * F))
    words = np.empty((m, k), np.int64)
    fams = np.empty((m, k), np.int64)
    scores = np.empty((m, k), np.float32)
    for a in range(0, m, rows):
        S = C[a:a + rows] @ flat.T
        if penalty is not None:
            S -= penalty
        S = S.reshape(-1, V, F)
        fam = S.argmax(axis=2)
        best = np.take_along_axis(S, fam[..., None], axis=2)[..., 0]  # [c, V]
        del S
        idx = np.argpartition(-best, k - 1, axis=1)[:, :k] if k < V else np.tile(np.arange(V), (len(best), 1))
        sc = np.take_along_axis(best, idx, axis=1)
        order = np.lexsort((idx, -sc), axis=1)  # by score desc, then word index
        idx = np.take_along_axis(idx, order, axis=1)
        words[a:a + rows] = idx
        fams[a:a + rows] = np.take_along_axis(fam, idx, axis=1)
        scores[a:a + rows] = np.take_along_axis(best, idx, axis=1)
    return words, fams, scores


def name_model(W_dec: Any, b_dec: Any, vocab_embeddings: Sequence[tuple[Any, Vocabulary]], *,
               d_hat: Any = None, mu: Any = None, tau: float = TAU, scale: float = SCALE,
               top: int = 5, hubness_k: int = 0, distinct: bool = True,
               margin: float = ALTERNATIVE_MARGIN) -> ConceptNames:
    """Name an SAE's concepts: hierarchy-aware when ``d_hat`` and ``mu`` are given, else vanilla.
    ``hubness_k``, ``distinct`` and ``margin`` as in :func:`name_concepts` (:data:`HUBNESS_K` is
    the usual k; the correction is off by default: on the demo model it lowered name precision)."""
    if (d_hat is None) != (mu is None):
        raise NamingError("hierarchy-aware naming needs both d_hat and mu")
    if d_hat is None:
        return name_concepts(vanilla_concept_embeddings(W_dec, b_dec), vocab_embeddings, top, method="vanilla",
                             hubness_k=hubness_k, distinct=distinct, margin=margin)
    emb = hierarchy_concept_embeddings(W_dec, b_dec, d_hat, mu, tau=tau, scale=scale)
    return name_concepts(emb, vocab_embeddings, top, method="hierarchy", hubness_k=hubness_k, distinct=distinct,
                         margin=margin)
