"""Vocabularies, text templates and the cached text embeddings of every word (docs/method.md §5).

A word is embedded three times, once per *template family* (noun, adjective, verb): every
template of the family is encoded and L2-normalised, the family's embeddings are averaged and
the mean is renormalised. A 20 k vocabulary is 600 k texts, minutes on a CPU, so the result is
cached on disk per (backbone id, vocabulary hash, templates hash) as safetensors.

Deliberately torch-free: the encoder may return torch tensors, which are converted on arrival,
and the cache is read and written with ``safetensors.numpy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import StoppedByUser
from ..fileio import atomic_write_bytes
from ..paths import resources_dir, user_cache_dir

log = logging.getLogger(__name__)


class NamingError(RuntimeError):
    """A vocabulary, text-embedding cache or naming input cannot be used; the message says why."""


class NamingCancelled(NamingError, StoppedByUser):
    """``should_stop`` asked :func:`embed_vocabulary` to stop before it finished."""


# ---------------------------------------------------------------------------------------------
# Templates

FAMILIES: tuple[str, ...] = ("noun", "adjective", "verb")

#: Ten templates per family; the first ones are the examples of docs/method.md §5. Noun templates name a
#: thing, adjective templates a property of something, verb templates an action (the verb
#: templates accept base forms and -ing forms alike, as a frequency list contains both).
TEMPLATE_FAMILIES: dict[str, tuple[str, ...]] = {
    "noun": (
        "{}",
        "a {}",
        "a photo of a {}",
        "a type of {}",
        "the {}",
        "a picture of a {}",
        "an image of a {}",
        "a close-up photo of a {}",
        "a photo of the {}",
        "a drawing of a {}",
    ),
    "adjective": (
        "something that is {}",
        "a {} object",
        "a photo of something {}",
        "a {} thing",
        "an object that is {}",
        "it looks {}",
        "a {} scene",
        "a photo of a {} object",
        "the texture is {}",
        "an image of something {}",
    ),
    "verb": (
        "to {}",
        "a photo of someone {}",
        "someone {}",
        "a person {}",
        "people {}",
        "a photo of people {}",
        "the act of {}",
        "an image of someone {}",
        "a picture of a person {}",
        "something {}",
    ),
}


def templates_sha256(families: Mapping[str, Sequence[str]] = TEMPLATE_FAMILIES) -> str:
    """Hash of the template set: part of the cache key, so editing a template invalidates caches."""
    blob = json.dumps({k: list(v) for k, v in families.items()}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def family_texts(term: str, family: str) -> list[str]:
    """The texts that make up one word's embedding in one family."""
    return [t.format(term) for t in TEMPLATE_FAMILIES[family]]


# ---------------------------------------------------------------------------------------------
# Vocabularies

_SPACE = re.compile(r"\s+")


def normalise_term(term: str) -> str:
    """NFC, whitespace runs → one space, stripped (so the hash does not depend on file quirks)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", term)).strip()


def term_key(term: str) -> str:
    """Identity of a term for deduplication: case-insensitive, because CLIP's tokenizer lowercases."""
    return normalise_term(term).casefold()


@dataclass(frozen=True)
class Vocabulary:
    """A named, ordered list of distinct words/phrases. Terms are normalised and deduplicated
    (case-insensitively, first spelling kept) on construction."""

    name: str
    terms: tuple[str, ...]

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise NamingError("a vocabulary needs a name")
        if isinstance(self.terms, str):  # a bare string would silently become one term per letter
            raise NamingError("Vocabulary terms must be a sequence of strings, not one string")
        seen: set[str] = set()
        terms = []
        for t in self.terms:
            t = normalise_term(str(t))
            if t and t.casefold() not in seen:
                seen.add(t.casefold())
                terms.append(t)
        if not terms:
            raise NamingError(f"vocabulary {self.name!r} has no terms")
        object.__setattr__(self, "terms", tuple(terms))

    @cached_property
    def sha256(self) -> str:
        """Hash of the normalised terms in order; the name is not part of it (same terms, same hash)."""
        return hashlib.sha256("\n".join(self.terms).encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.terms)


def load_vocabulary(path: str | Path, name: str | None = None) -> Vocabulary:
    """Read a vocabulary file: UTF-8, one term per line; blank lines and ``#`` comments are
    skipped, terms are stripped and deduplicated preserving order. ``name`` defaults to the
    file's stem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: tolerate a BOM from Windows editors
    except FileNotFoundError:
        raise NamingError(f"vocabulary file not found: {path}") from None
    except IsADirectoryError:
        raise NamingError(f"vocabulary path is a folder, not a file: {path}") from None
    except UnicodeDecodeError as exc:
        raise NamingError(f"vocabulary file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise NamingError(f"cannot read vocabulary file {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise NamingError(f"vocabulary file {path} looks binary (contains NUL bytes)")
    terms = [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]
    if not terms:
        raise NamingError(f"vocabulary file {path} contains no terms (only blank lines or # comments)")
    return Vocabulary(name or path.stem, tuple(terms))


#: ``visual`` since it was measured against the former default (``english`` + ``imagenet``) on the
#: demo model (benchmarks/naming_quality.py): no abstract words, no duplicate names, higher name
#: precision on its photos; the other two stay available (:func:`bundled_vocabulary`, ``--vocab``)
DEFAULT_VOCABULARY_FILES: tuple[str, ...] = ("visual.txt",)


def default_vocabularies() -> list[Vocabulary]:
    """The default vocabulary for naming: ``visual`` (~3.3 k concrete, visual words); see
    ``resources/vocab/SOURCES.md``."""
    folder = resources_dir() / "vocab"
    return [load_vocabulary(folder / f) for f in DEFAULT_VOCABULARY_FILES]


#: every vocabulary that ships with the app, by name: the defaults plus ``visual`` (~3.3 k
#: concrete, visual words: ImageNet classes, their WordNet parents, colours, materials,
#: textures, scenes and the concrete part of ``english``; ``scripts/build_visual_vocab.py``)
BUNDLED_VOCABULARIES: tuple[str, ...] = ("english", "imagenet", "visual")


def bundled_vocabulary(name: str) -> Vocabulary:
    """One bundled vocabulary by name (:data:`BUNDLED_VOCABULARIES`)."""
    if name not in BUNDLED_VOCABULARIES:
        raise NamingError(f"no bundled vocabulary {name!r}; choose one of {', '.join(BUNDLED_VOCABULARIES)}")
    return load_vocabulary(resources_dir() / "vocab" / f"{name}.txt")


# ---------------------------------------------------------------------------------------------
# Text embeddings with an on-disk cache

CACHE_FORMAT = "insight-text-embeddings/1"
ProgressFn = Callable[[int, int], None]


def _as_float32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; converted without importing torch here
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _normalise_rows(x: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def cache_path(cache_dir: str | Path, backbone_id: str, vocab: Vocabulary) -> Path:
    """Cache file for (backbone, vocabulary, templates): readable prefix + hashes of all three."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{backbone_id}")[:48].strip("-.") or "backbone"
    bid = hashlib.sha256(backbone_id.encode("utf-8")).hexdigest()[:12]
    vslug = re.sub(r"[^A-Za-z0-9._-]+", "-", vocab.name)[:24].strip("-.") or "vocab"
    name = f"{slug}-{bid}__{vslug}-{vocab.sha256[:12]}__t{templates_sha256()[:12]}.safetensors"
    return Path(cache_dir) / name


def _cache_metadata(backbone_id: str, vocab: Vocabulary) -> dict[str, str]:
    return {"format": CACHE_FORMAT, "backbone_id": backbone_id, "vocabulary": vocab.name,
            "vocabulary_sha256": vocab.sha256, "templates_sha256": templates_sha256(),
            "families": ",".join(FAMILIES)}


def _read_cache(path: Path, backbone_id: str, vocab: Vocabulary) -> np.ndarray | None:
    """The cached embeddings, or None when absent or unusable (a damaged cache is recomputed,
    never fatal — it is only a cache)."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            expected = _cache_metadata(backbone_id, vocab)
            if any(meta.get(k) != v for k, v in expected.items() if k != "vocabulary"):
                raise ValueError("cache metadata does not match this backbone/vocabulary/templates")
            emb = fh.get_tensor("embeddings")
        if emb.ndim != 3 or emb.shape[:2] != (len(vocab), len(FAMILIES)) or not np.isfinite(emb).all():
            raise ValueError(f"cached array has shape {emb.shape} or non-finite values")
        return _normalise_rows(emb.astype(np.float32))
    except Exception as exc:  # noqa: BLE001 — any damage means "recompute"
        log.warning("ignoring damaged text-embedding cache %s: %s", path, exc)
        return None


#: Format tag of a partial (resumable) cache: the same identity as the final cache plus ``done``.
PARTIAL_FORMAT = "insight-text-embeddings-partial/1"


def partial_path(path: Path) -> Path:
    """The partial file next to a final cache file (not ``*.safetensors``, so never taken for one)."""
    return path.with_name(path.name + ".partial")


def _read_partial(path: Path, backbone_id: str, vocab: Vocabulary) -> np.ndarray | None:
    """The first ``k`` terms' float16 embeddings ``[k, 3, d]`` saved by an interrupted run, or
    None when absent or unusable (a damaged or foreign partial is ignored: it is only a head start)."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            expected = {**_cache_metadata(backbone_id, vocab), "format": PARTIAL_FORMAT}
            if any(meta.get(k) != v for k, v in expected.items() if k != "vocabulary"):
                raise ValueError("partial metadata does not match this backbone/vocabulary/templates")
            emb = fh.get_tensor("embeddings")
        done = int(meta.get("done", "-1"))
        if (emb.dtype != np.float16 or emb.ndim != 3 or emb.shape[1] != len(FAMILIES) or emb.shape[0] != done
                or not 0 < done < len(vocab) or not np.isfinite(emb).all()):
            raise ValueError(f"partial array has shape {emb.shape}, dtype {emb.dtype}, done={done}")
        return emb
    except Exception as exc:  # noqa: BLE001 — any damage means "start from 0"
        log.warning("ignoring damaged partial text-embedding cache %s: %s", path, exc)
        return None


def _write_partial(path: Path, emb16: np.ndarray, backbone_id: str, vocab: Vocabulary) -> None:
    from safetensors.numpy import save

    meta = {**_cache_metadata(backbone_id, vocab), "format": PARTIAL_FORMAT, "done": str(len(emb16))}
    try:
        atomic_write_bytes(path, save({"embeddings": np.ascontiguousarray(emb16)}, metadata=meta))
    except OSError as exc:  # losing the head start costs time, not the result
        log.warning("cannot write partial text-embedding cache %s: %s", path, exc)


def _write_cache(path: Path, emb16: np.ndarray, backbone_id: str, vocab: Vocabulary) -> None:
    from safetensors.numpy import save

    try:
        atomic_write_bytes(path, save({"embeddings": emb16}, metadata=_cache_metadata(backbone_id, vocab)))
    except OSError as exc:  # a read-only or full cache folder costs time next run, not this result
        log.warning("cannot write text-embedding cache %s: %s", path, exc)


def embed_vocabulary(
    encoder: Any,
    vocab: Vocabulary,
    *,
    backbone_id: str | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 1200,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_seconds: float = 20.0,
) -> np.ndarray:
    """Embeddings ``[V, 3, d]`` float32 of every term × family (order :data:`FAMILIES`), unit norm.

    ``encoder`` is a backbone (anything with ``.encode_text(list[str])`` and ``.id``) or a plain
    callable ``encode(list[str]) -> [N, d]`` (numpy or torch); a callable needs ``backbone_id``,
    which keys the cache (an explicit ``backbone_id`` also overrides a backbone's ``.id``).
    ``batch_size`` is the number of texts per encoder call (rounded down to whole words).
    ``on_progress(done_terms, total_terms)`` is called after every batch; ``should_stop()`` is
    polled before every batch and raises :class:`NamingCancelled` when it returns True.

    The cache under ``cache_dir`` (default ``user_cache_dir()/text-embeddings``) stores float16;
    the result is always the float16 values renormalised, cache hit or not, so a first and a
    second run return identical arrays. On a cache miss a backbone with
    ``shipped_family_embeddings(vocab_sha256, templates_sha256, families, n_terms)`` (the demo
    backbone, for its default vocabulary) may supply them instead of encoding; they are cached alike.

    Resumable: while encoding, the terms done so far are saved (float16, atomically) to a partial
    file next to the cache (:func:`partial_path`) at least every ``checkpoint_seconds`` and when
    stopped or failing, keyed like the cache; the next call continues after them, and the
    partial is removed once the final cache is written. As terms are encoded independently and
    the cache is float16 anyway, a resumed run returns exactly what an uninterrupted one does.
    """
    encode = getattr(encoder, "encode_text", None) or encoder
    if not callable(encode):
        raise NamingError("encoder must be a backbone with .encode_text or a callable encode(list[str])")
    backbone_id = backbone_id if backbone_id is not None else getattr(encoder, "id", None)
    if not backbone_id:
        raise NamingError("backbone_id is required with a plain encode callable (it keys the cache)")
    if not isinstance(vocab, Vocabulary):
        raise NamingError(f"vocab must be a Vocabulary, not {type(vocab).__name__}")

    path = cache_path(cache_dir if cache_dir is not None else user_cache_dir() / "text-embeddings", backbone_id, vocab)
    if use_cache:
        cached = _read_cache(path, backbone_id, vocab)
        if cached is not None:
            if on_progress is not None:
                on_progress(len(vocab), len(vocab))
            return cached
        # A backbone may ship this vocabulary's embeddings (the demo backbone does, for the default
        # vocabulary); it checks they were made with its own text model and these templates.
        shipped = getattr(encoder, "shipped_family_embeddings", None)
        emb = shipped(vocab.sha256, templates_sha256(), FAMILIES, len(vocab)) if callable(shipped) else None
        if emb is not None and np.shape(emb)[:2] == (len(vocab), len(FAMILIES)):
            emb16 = _as_float32(emb).astype(np.float16)  # the same rounding as the path below
            _write_cache(path, emb16, backbone_id, vocab)
            if on_progress is not None:
                on_progress(len(vocab), len(vocab))
            return _normalise_rows(emb16.astype(np.float32))

    partial = partial_path(path)
    head = _read_partial(partial, backbone_id, vocab) if use_cache else None
    if head is not None:
        log.info("resuming text embedding of %r after %d of %d terms", vocab.name, len(head), len(vocab))

    def checkpoint(emb: np.ndarray, done: int) -> None:
        _write_partial(partial, emb[:done].astype(np.float16), backbone_id, vocab)

    emb = _encode_all(encode, vocab.terms, max(1, int(batch_size)), on_progress, should_stop,
                      head=head, checkpoint=checkpoint if use_cache else None,
                      checkpoint_seconds=checkpoint_seconds)
    emb16 = emb.astype(np.float16)
    if use_cache:
        _write_cache(path, emb16, backbone_id, vocab)
        partial.unlink(missing_ok=True)
    return _normalise_rows(emb16.astype(np.float32))


def _encode_all(encode: Callable, terms: Sequence[str], batch_size: int,
                on_progress: ProgressFn | None, should_stop: Callable[[], bool] | None, *,
                head: np.ndarray | None = None, checkpoint: Callable[[np.ndarray, int], None] | None = None,
                checkpoint_seconds: float = 20.0) -> np.ndarray:
    """Embeddings ``[V, 3, d]`` float32; ``head`` holds the first terms' embeddings already done
    (a resumed run starts after them); ``checkpoint(out, done)`` saves the first ``done`` rows, at
    least every ``checkpoint_seconds`` and on the way out of a stop or a failure."""
    per_word = sum(len(TEMPLATE_FAMILIES[f]) for f in FAMILIES)
    words_per_batch = max(1, batch_size // per_word)
    # Segment boundaries of each family inside one word's block of texts.
    bounds = np.cumsum([0] + [len(TEMPLATE_FAMILIES[f]) for f in FAMILIES])
    out: np.ndarray | None = None
    done = first = 0
    if head is not None:
        out = np.empty((len(terms), len(FAMILIES), head.shape[-1]), np.float32)
        out[:len(head)] = head
        done = first = len(head)
        if on_progress is not None:
            on_progress(done, len(terms))
    saved, last_save = done, time.monotonic()
    try:
        for start in range(first, len(terms), words_per_batch):
            if should_stop is not None and should_stop():
                raise NamingCancelled(f"text embedding stopped after {start} of {len(terms)} terms")
            chunk = terms[start:start + words_per_batch]
            texts = [text for term in chunk for f in FAMILIES for text in family_texts(term, f)]
            x = _as_float32(encode(texts))
            if x.ndim != 2 or x.shape[0] != len(texts):
                raise NamingError(f"encoder returned shape {x.shape} for {len(texts)} texts; expected [N, d]")
            if not np.isfinite(x).all():
                raise NamingError("encoder returned non-finite values")
            if out is not None and out.shape[-1] != x.shape[-1]:
                if start != first or head is None:
                    raise NamingError(f"encoder changed its output size from {out.shape[-1]} to {x.shape[-1]}")
                # a partial from another model under the same id: start again from 0
                log.warning("partial text embeddings have size %d, the encoder %d: starting again",
                            out.shape[-1], x.shape[-1])
                return _encode_all(encode, terms, batch_size, on_progress, should_stop,
                                   checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds)
            x = _normalise_rows(x).reshape(len(chunk), per_word, -1)
            fam = np.stack([x[:, bounds[i]:bounds[i + 1]].mean(axis=1) for i in range(len(FAMILIES))], axis=1)
            if out is None:
                out = np.empty((len(terms), len(FAMILIES), x.shape[-1]), np.float32)
            out[start:start + len(chunk)] = _normalise_rows(fam)
            done = start + len(chunk)
            if on_progress is not None:
                on_progress(done, len(terms))
            if (checkpoint is not None and done < len(terms)
                    and time.monotonic() - last_save >= checkpoint_seconds):
                checkpoint(out, done)
                saved, last_save = done, time.monotonic()
    except BaseException:
        if checkpoint is not None and out is not None and saved < done < len(terms):
            checkpoint(out, done)  # a stop or a failure keeps every term encoded so far
        raise
    assert out is not None  # a Vocabulary is never empty
    return out


def embed_vocabularies(encoder: Any, vocabs: Iterable[Vocabulary], **kw: Any) -> list[tuple[np.ndarray, Vocabulary]]:
    """:func:`embed_vocabulary` for several vocabularies, in the form :func:`name_concepts` takes."""
    return [(embed_vocabulary(encoder, v, **kw), v) for v in vocabs]
