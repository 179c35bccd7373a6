"""Typed, bounded reading of a bundle's JSON: the manifest, ``names.json``, the relations metadata.

A bundle may come from anyone (a colleague's e-mail, a download), so nothing in it is trusted:
every field is checked for its type, range and whole-number-ness (``sae.k: 1.5`` is an error,
not 1), every JSON document for its size and nesting depth, and every failure is a
:class:`BundleError` subclass whose message names the file and the field. No ``TypeError``,
``KeyError`` or ``RecursionError`` escapes to the command line or the window.

The limits are module constants (tests lower them to exercise them cheaply). They are generous
for real models (8192 concepts: a 6 MB names.json, ~100 MB of relations) and small enough that a
crafted file cannot make the app inflate gigabytes or render a 100 MB name. Concept names longer
than :data:`MAX_NAME_CHARS` are shortened with a notice rather than refused: ``names.json`` is
edited by annotators, and one runaway name should not make a whole model unusable.
"""

from __future__ import annotations

import json
import math
from typing import Any

FORMAT = "insight-concept-model"
FORMAT_VERSION = 1

MiB, GiB = 1 << 20, 1 << 30
#: deepest nesting of objects/lists in any JSON document of a bundle (real ones use ≤ 5)
MAX_JSON_DEPTH = 32
MAX_MANIFEST_BYTES = 4 * MiB
MAX_NAMES_BYTES = 128 * MiB
MAX_RELATIONS_META_BYTES = 4 * MiB
MAX_THUMBNAIL_BYTES = 8 * MiB
#: a safetensors part's header and metadata, on top of its tensors
HEADER_SLACK_BYTES = 64 * MiB
#: any one part, and all parts together (uncompressed), whatever the manifest says
MAX_PART_BYTES = 16 * GiB
MAX_TOTAL_BYTES = 32 * GiB
MAX_TEXT_CHARS = 64 * 1024      # any string of the manifest (paths, commands, ids)
MAX_NAME_CHARS = 200            # a concept name or candidate term (longer ones are shortened)
MAX_CANDIDATES = 64             # candidate names per concept
MAX_VOCABULARIES = 1024
MAX_CONCEPTS = 1 << 20
MAX_FEATURE_DIM = 1 << 16
MAX_LEVELS = 64
MAX_TOP_N = 256                 # top tokens kept per concept in the relations (reference: 30)
MAX_PROBE_CLASSES = 1 << 16


class BundleError(RuntimeError):
    """A concept-model bundle cannot be used; subclasses say why."""


class BundleMissingPartError(BundleError):
    """A required file of the bundle is absent."""


class BundleVersionError(BundleError):
    """The bundle was written by a newer Insight Desktop."""


class BundleIntegrityError(BundleError):
    """A part does not match the hash recorded in the manifest, or cannot be parsed."""


class BundleIncompatibleError(BundleError):
    """Parts disagree with each other or with the backbone (e.g. SAE width ≠ feature dim)."""


class BundleLimitError(BundleIntegrityError):
    """A part is larger, deeper or more numerous than any real bundle's: refused before reading it."""


# -- JSON ----------------------------------------------------------------------------------------
def load_json(data: bytes | str, where: str, *, max_bytes: int, error: type[Exception] = BundleIntegrityError) -> Any:
    """``data`` parsed as JSON, refusing documents over ``max_bytes`` or nested deeper than
    :data:`MAX_JSON_DEPTH`; every failure is an ``error`` naming ``where``."""
    if len(data) > max_bytes:
        too_big = BundleLimitError if error is BundleIntegrityError else error
        raise too_big(f"{where} is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    try:
        value = json.loads(data)
    except RecursionError:  # the C parser guards its recursion: deep nesting ends here, cleanly
        raise error(f"{where} is nested too deeply to be a real file") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and ints over 4300 digits
        raise error(f"{where} is not valid JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > MAX_JSON_DEPTH:
                return d
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


# -- typed fields --------------------------------------------------------------------------------
_JSON_TYPE = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a whole number",
              float: "a number", type(None): "null"}


def _kind(v: Any) -> str:
    return _JSON_TYPE.get(type(v), type(v).__name__)


class Fields:
    """Typed access to the fields of one JSON object; errors say the file and the field's path."""

    def __init__(self, obj: Any, where: str, path: str = "", error: type[Exception] = BundleIntegrityError):
        self.where, self.path, self.error = where, path, error
        if not isinstance(obj, dict):
            raise error(f"{where}: {path or 'the document'} must be an object, not {_kind(obj)}")
        self.obj = obj

    def _fail(self, key: str, what: str) -> Exception:
        return self.error(f"{self.where}: '{self.path}{key}' {what}")

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.obj:
            if required:
                raise self._fail(key, "is missing")
            return None
        return self.obj[key]

    def sub(self, key: str, *, required: bool = True) -> "Fields":
        v = self._get(key, required)
        if v is None and not required:
            v = {}
        if not isinstance(v, dict):
            raise self._fail(key, f"must be an object, not {_kind(v)}")
        return Fields(v, self.where, f"{self.path}{key}.", self.error)

    def integer(self, key: str, lo: int, hi: int) -> int:
        """A whole number in ``lo..hi`` (``1.5``, ``true`` and ``"3"`` are errors, not 1, 1 and 3)."""
        v = self._get(key, True)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._fail(key, f"must be a whole number, not {v!r}"[:200])
        if not lo <= v <= hi:
            raise self._fail(key, f"must be between {lo:,} and {hi:,}, not {v:,}"[:200])
        return v

    def opt_integer(self, key: str, lo: int, hi: int) -> int | None:
        """:meth:`integer`, or None when the field is absent or null."""
        return None if self._get(key, False) is None else self.integer(key, lo, hi)

    def number(self, key: str) -> float:
        """A finite number (NaN and infinities are errors)."""
        v = self._get(key, True)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self._fail(key, f"must be a finite number, not {v!r}"[:200])
        return float(v)

    def text(self, key: str, max_chars: int = MAX_TEXT_CHARS) -> str:
        v = self._get(key, True)
        if not isinstance(v, str):
            raise self._fail(key, f"must be a string, not {_kind(v)}")
        if len(v) > max_chars:
            raise self._fail(key, f"is {len(v):,} characters long, more than the {max_chars:,} allowed")
        return v

    def opt_text(self, key: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
        """:meth:`text`, or None when the field is absent or null."""
        return None if self._get(key, False) is None else self.text(key, max_chars)

    def items(self, key: str, max_items: int, *, required: bool = True) -> list:
        """A list of at most ``max_items`` entries (optional ones: absent or null is empty)."""
        v = self._get(key, required)
        if v is None and not required:
            return []
        if not isinstance(v, list):
            raise self._fail(key, f"must be a list, not {_kind(v)}")
        if len(v) > max_items:
            raise self._fail(key, f"has {len(v):,} entries, more than the {max_items:,} allowed")
        return v


def _check_strings(value: Any, where: str, what: str, error: type[Exception] = BundleIntegrityError) -> None:
    """Every string (and key) in ``value`` is at most :data:`MAX_TEXT_CHARS` long."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str) and len(v) > MAX_TEXT_CHARS:
            raise error(f"{where}: '{what}' holds a text of {len(v):,} characters, more than the "
                        f"{MAX_TEXT_CHARS:,} allowed")
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def safe_member(name: Any, where: str) -> str:
    """``name`` if it is a relative path inside the bundle ('a/b.x'); no '..', no absolute path."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise BundleIntegrityError(f"{where}: {name!r} is not a file name of the bundle"[:300])
    pieces = name.split("/")
    if (name.startswith("/") or "\\" in name or "\0" in name or ":" in pieces[0]
            or any(p in ("", ".", "..") for p in pieces)):
        raise BundleIntegrityError(f"{where}: '{name}' points outside the bundle; only plain names of its own "
                                   "files are allowed"[:300])
    return name


# -- the manifest --------------------------------------------------------------------------------
def check_manifest(d: Any, where: str, hashed_parts: tuple[str, ...]) -> dict[str, Any]:
    """The manifest's fields, type-checked: keyword arguments for ``BundleManifest``."""
    top = Fields(d, f"{where}/manifest.json")
    if d.get("format") != FORMAT:
        raise BundleError(f"{where} is not an Insight concept model (manifest format {str(d.get('format'))[:80]!r})")
    version = top.integer("format_version", 1, 1 << 31)
    if version > FORMAT_VERSION:
        raise BundleVersionError(f"{where} has bundle format {version}, newer than this Insight Desktop reads "
                                 f"({FORMAT_VERSION}): please update the application")
    backbone = top.sub("backbone")
    if backbone.obj.get("spec") is not None:
        s = backbone.sub("spec")
        s.text("name", max_chars=200)
        backbone.obj["spec"] = {**s.obj, "options": s.sub("options", required=False).obj}  # null → {}
    backbone.opt_text("id", max_chars=1000)
    backbone.opt_integer("feature_dim", 1, MAX_FEATURE_DIM)
    _check_strings(backbone.obj, where, "backbone")
    sae_config(top.sub("sae").obj, where)
    thresholds = top.sub("thresholds")
    for key in ("sae_threshold", "tau", "eps"):
        thresholds.number(key)
    for key in thresholds.obj:
        thresholds.number(key)
    provenance = top.sub("provenance", required=False).obj
    _check_strings(provenance, where, "provenance")
    files = top.sub("files", required=False)
    if not files.obj:
        raise BundleIntegrityError(f"{where}: the manifest records no hashes ('files' is empty or missing), so "
                                   "its parts cannot be checked; rebuild or re-export the model")
    for part in hashed_parts:
        files.text(part, max_chars=64)
    for name in files.obj:
        safe_member(name, f"{where}/manifest.json 'files'")
        digest = files.text(name, max_chars=64)
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BundleIntegrityError(f"{where}: 'files.{name}' must be a sha256 (64 hex digits)")
    thumbs = top.sub("thumbnails", required=False)
    for key in ("count", "crop_px", "per_concept"):
        thumbs.opt_integer(key, 0, MAX_CONCEPTS * 64)
    _check_strings(thumbs.obj, where, "thumbnails")
    return dict(backbone=backbone.obj, sae_config=top.obj["sae"], thresholds=thresholds.obj, provenance=provenance,
                files=files.obj, thumbnails=thumbs.obj, format_version=version)


def sae_config(d: Any, where: str):
    """The strict :class:`~..sae.SAEConfig` of a manifest's ``sae`` entry."""
    from ..sae import SAEConfig

    f = Fields(d, f"{where}/manifest.json", "sae.")
    d_in = f.integer("d_in", 1, MAX_FEATURE_DIM)
    m = f.integer("n_concepts", 1, MAX_CONCEPTS)
    k = f.integer("k", 1, MAX_CONCEPTS)
    sizes = f.items("group_sizes", MAX_LEVELS)
    if not sizes or any(isinstance(g, bool) or not isinstance(g, int) or g <= 0 for g in sizes):
        raise BundleIntegrityError(f"{where}: 'sae.group_sizes' must be a non-empty list of positive whole numbers")
    arch = f.opt_text("architecture", max_chars=100) or "matryoshka-batchtopk"
    try:
        return SAEConfig(d_in=d_in, n_concepts=m, k=k, group_sizes=tuple(sizes), architecture=arch)
    except ValueError as exc:
        raise BundleIntegrityError(f"{where}: invalid SAE config in manifest: {exc}") from None


def sae_part_limit(cfg) -> int:
    """Largest plausible ``sae.safetensors`` of ``cfg``: its tensors (float64 at most) plus a header."""
    d, m = cfg.d_in, cfg.n_concepts
    return min(MAX_PART_BYTES, HEADER_SLACK_BYTES + 8 * (2 * d * m + d + m + 1))


def relations_part_limit(m: int) -> int:
    """Largest plausible ``relations.safetensors`` of ``m`` concepts (C, D ≤ m² non-zeros; codes of
    ≤ :data:`MAX_TOP_N` top tokens per concept)."""
    rows = m * MAX_TOP_N
    dense = m * m
    worst = 8 * m + 48 * (m + 1) + 24 * dense + 12 * rows + 8 * (rows + 1) + 12 * rows * m
    return min(MAX_PART_BYTES, HEADER_SLACK_BYTES + worst)


def probe_part_limit(m: int) -> int:
    return min(MAX_PART_BYTES, HEADER_SLACK_BYTES + 4 * m * MAX_PROBE_CLASSES)


# -- names.json ------------------------------------------------------------------------------------
def check_names(data: bytes, where: str, n_concepts: int):
    """``names.json`` as :class:`~.naming.ConceptNames` of exactly ``n_concepts`` concepts, and the
    notices to show (names longer than :data:`MAX_NAME_CHARS` are shortened)."""
    from .naming import METHODS, NAMES_FORMAT, NAMES_VERSION, ConceptNames, NameCandidate, NamingError

    where = f"{where}/names.json"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleIntegrityError(f"{where} is not UTF-8 text: {exc}") from None
    top = Fields(load_json(text, where, max_bytes=MAX_NAMES_BYTES), where)
    if top.obj.get("format") != NAMES_FORMAT:
        raise BundleIntegrityError(f"{where} is not a concept-names file (format {str(top.obj.get('format'))[:80]!r})")
    version = top.opt_integer("version", 0, 1 << 31) or 0
    if version > NAMES_VERSION:
        raise BundleVersionError(f"{where} has version {version}, newer than this app reads ({NAMES_VERSION})")
    method = top.text("method", max_chars=100)
    if method not in METHODS:
        raise BundleIntegrityError(f"{where}: 'method' must be one of {METHODS}, not {method!r}")
    vocabularies = []
    for i, v in enumerate(top.items("vocabularies", MAX_VOCABULARIES, required=False)):
        fv = Fields(v, where, f"vocabularies[{i}].")
        vocabularies.append((fv.text("name", max_chars=1000), fv.text("sha256", max_chars=200)))
    concepts = top.items("concepts", MAX_CONCEPTS)
    if len(concepts) != n_concepts:
        raise BundleIncompatibleError(f"{where} names {len(concepts)} concepts, the SAE has {n_concepts}")
    shortened: list[int] = []

    def shorten(v: str, i: int) -> str:
        if len(v) > MAX_NAME_CHARS:
            shortened.append(i)
            v = v[:MAX_NAME_CHARS - 1] + "…"
        return v

    def name(f: Fields, key: str, i: int) -> str:
        return shorten(f.text(key, max_chars=MAX_NAMES_BYTES), i)

    rows: list[tuple[str, str | None, tuple]] = [("", None, ())] * n_concepts
    seen = [False] * n_concepts
    for c in concepts:
        fc = Fields(c, where, "concepts[].")
        i = fc.integer("index", 0, n_concepts - 1)
        if seen[i]:
            raise BundleIntegrityError(f"{where}: concept {i} is listed twice; indices must be 0 … m−1, each once")
        seen[i] = True
        fc = Fields(c, where, f"concepts[{i}].")
        cands = []
        for r, k in enumerate(fc.items("candidates", MAX_CANDIDATES, required=False)):
            fk = Fields(k, where, f"concepts[{i}].candidates[{r}].")
            cands.append(NameCandidate(name(fk, "term", i), name(fk, "family", i), name(fk, "vocabulary", i),
                                       fk.number("score")))
        edited = fc.opt_text("edited", max_chars=MAX_NAMES_BYTES)
        rows[i] = (name(fc, "auto", i), None if edited is None else shorten(edited, i), tuple(cands))
    try:
        names = ConceptNames(names=tuple(r[0] for r in rows), candidates=tuple(r[2] for r in rows), method=method,
                             edited=tuple(r[1] for r in rows), vocabularies=tuple(vocabularies))
    except NamingError as exc:
        raise BundleIntegrityError(f"{where}: {exc}") from None
    notices: tuple[str, ...] = ()
    if shortened:
        ids = sorted(set(shortened))
        notices = (f"names.json: {len(ids)} concept name(s) longer than {MAX_NAME_CHARS} characters were shortened "
                   f"(concept {', '.join(map(str, ids[:5]))}{', …' if len(ids) > 5 else ''}).",)
    return names, notices


# -- relations metadata ----------------------------------------------------------------------------
def check_relations_metadata(raw: Any, where: str, error: type[Exception] = BundleIntegrityError) -> dict[str, Any]:
    """The JSON metadata of a relations file, type-checked (the arrays are checked by Relations)."""
    if not isinstance(raw, (str, bytes)):
        raise error(f"{where} holds no Insight relations metadata")
    f = Fields(load_json(raw, where, max_bytes=MAX_RELATIONS_META_BYTES, error=error), where, error=error)
    f.text("format", max_chars=100)
    f.opt_integer("format_version", 0, 1 << 31)
    m = f.integer("n_concepts", 1, MAX_CONCEPTS)
    f.integer("n_tokens", 0, 1 << 62)
    ends = f.items("group_ends", MAX_LEVELS)
    if any(isinstance(g, bool) or not isinstance(g, int) or not 0 < g <= m for g in ends):
        raise error(f"{where}: 'group_ends' must be whole numbers between 1 and {m}")
    f.number("tau")
    f.number("eps")
    f.integer("top_n", 1, MAX_TOP_N)
    _check_strings(f.sub("provenance", required=False).obj, where, "provenance", error)
    return f.obj


def short(value: Any, limit: int = 200) -> str:
    """``value`` as text of at most ``limit`` characters, for one-line summaries."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
