"""A session: what a window was looking at, saved as a small JSON file and opened again later.

A session holds values only — image paths, the model path, the class list, selections and
overlay settings — never pixels or analyses: opening one reloads the model and the image and
analyses again.  Image paths inside the session file's folder are stored relative to it, so a
folder with its session can be moved or shared; images that have gone missing are reported in
``Session.missing`` rather than refusing the whole session.

A session may come from someone else, so reading one checks every field's type and bounds
(file size, nesting, string and list lengths, number ranges): a wrong or crafted file raises
:class:`SessionError` with the field named, never a Python error from deep inside, and a wrong
overlay value is refused rather than handed on to the drawing code.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.devices import DEVICE_CHOICES
from ..core.fileio import atomic_write_json
from .document import DEFAULT_CLASSES, Document, OverlaySettings

SESSION_FORMAT = "insight-desktop-session"
SESSION_VERSION = 1
SESSION_SUFFIX = ".insight-session"
#: for QFileDialog
SESSION_FILTER = f"Insight Desktop sessions (*{SESSION_SUFFIX});;JSON files (*.json)"
_DEVICE = re.compile(r"^cuda:\d+$")

#: limits on what a session file may hold; far above any real session, far below what hurts
MAX_SESSION_BYTES = 64 * 1024 * 1024
MAX_IMAGES = 200_000
MAX_CLASSES = 20_000
MAX_PATH_CHARS = 4096            # PATH_MAX on Linux
MAX_NAME_CHARS = 1000            # one class name
MAX_HIDDEN_LABELS = 100_000
MAX_VIEW_KEYS = 32
MAX_VIEW_LIST = 16
MAX_ID = 2**31 - 1               # concept, segment and label ids, the image index
#: overlay fields: the JSON type expected and, for numbers, the closed range allowed
_OVERLAY_BOOLS = ("show_heatmap", "show_segmentation", "show_residual", "show_opaque")
_OVERLAY_FRACTIONS = ("heatmap_opacity", "threshold", "mask_opacity")


class SessionError(Exception):
    """A session file cannot be read or written; the message says why, in words for the user."""


@dataclass(frozen=True)
class Session:
    """Everything needed to bring a window back (a value: build a new one to change it)."""

    images: tuple[Path, ...] = ()
    index: int = 0                                  # which of ``images`` is shown
    model_path: Path | None = None
    device: str = "auto"                            # auto, cpu, cuda or cuda:N
    classes: tuple[str, ...] = DEFAULT_CLASSES
    background: bool = False
    concept: int = -1                               # selected concept, −1 none
    segment: int = -1                               # selected segmentation label, −1 none
    overlay: OverlaySettings = field(default_factory=OverlaySettings)
    view: Mapping[str, Any] | None = None           # zoom/pan etc., owned by the image view
    folder: Path | None = None                      # the folder the filmstrip shows, if any
    #: images of a loaded session that do not exist on disk (filled by from_dict, never saved)
    missing: tuple[Path, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(Path(p) for p in self.images))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.model_path is not None:
            object.__setattr__(self, "model_path", Path(self.model_path))
        if self.folder is not None:
            object.__setattr__(self, "folder", Path(self.folder))
        if self.view is not None:
            object.__setattr__(self, "view", dict(self.view))  # our own copy: the caller's dict may change
        if self.device not in DEVICE_CHOICES and not _DEVICE.match(self.device):
            raise ValueError(f"unknown device {self.device!r}; use one of {', '.join(DEVICE_CHOICES)} or cuda:N")

    @property
    def current_image(self) -> Path | None:
        return self.images[self.index] if 0 <= self.index < len(self.images) else None

    # ------------------------------------------------------------------ dict form
    def to_dict(self, relative_to: str | os.PathLike | None = None) -> dict[str, Any]:
        """A JSON-ready dict; paths inside ``relative_to`` are written relative to it (POSIX form)."""
        base = _absolute(relative_to) if relative_to is not None else None

        def rel(p: Path) -> str:
            return _relative(p, base) if base is not None else str(p)

        return {
            "format": SESSION_FORMAT, "version": SESSION_VERSION,
            "images": [rel(p) for p in self.images], "index": self.index,
            "model_path": rel(self.model_path) if self.model_path is not None else None,
            "device": self.device, "classes": list(self.classes), "background": self.background,
            "concept": self.concept, "segment": self.segment, "overlay": self.overlay.to_dict(),
            "view": dict(self.view) if self.view is not None else None,
            "folder": rel(self.folder) if self.folder is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Any, relative_to: str | os.PathLike | None = None) -> "Session":
        """Read :meth:`to_dict`'s output; relative paths are resolved against ``relative_to``.

        Raises SessionError for anything that is not a session of a version this code reads.
        Fields missing from the dict get their defaults (hand-written sessions stay short).
        """
        if not isinstance(d, dict) or d.get("format") != SESSION_FORMAT:
            raise SessionError("this is not an Insight Desktop session file")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SessionError(f"the session file has no valid format version (found {_shown(version)})")
        if version > SESSION_VERSION:
            raise SessionError(f"the session was saved by a newer Insight Desktop (session format {version}; "
                               f"this version reads up to {SESSION_VERSION}). Update Insight Desktop to open it.")
        base = _absolute(relative_to) if relative_to is not None else None

        def path(text: Any, what: str) -> Path:
            return _resolve(_text(text, what, MAX_PATH_CHARS), base)

        raw_images = _list(d.get("images", []), "'images'", MAX_IMAGES)
        images = tuple(path(p, "an image path") for p in raw_images)
        index = _whole(d.get("index", 0), "'index'", -MAX_ID)
        index = min(max(index, 0), max(len(images) - 1, 0))  # a hand-edited index still opens something
        raw_classes = _list(d.get("classes", list(DEFAULT_CLASSES)), "'classes'", MAX_CLASSES)
        view = d.get("view")
        try:
            return cls(
                images=images, index=index,
                model_path=path(d["model_path"], "'model_path'") if d.get("model_path") is not None else None,
                device=_text(d.get("device", "auto"), "'device'", 32),
                classes=tuple(_text(c, "a class name", MAX_NAME_CHARS) for c in raw_classes),
                background=_expect(d.get("background", False), bool, "'background' to be true or false"),
                concept=_whole(d.get("concept", -1), "'concept'", -1),
                segment=_whole(d.get("segment", -1), "'segment'", -1),
                overlay=_overlay(d.get("overlay", {})),
                view=_view(view) if view is not None else None,
                folder=path(d["folder"], "'folder'") if d.get("folder") is not None else None,
                missing=tuple(p for p in images if not p.is_file()),
            )
        except (TypeError, ValueError) as exc:  # an unknown device
            raise SessionError(f"the session file is invalid: {exc}") from exc

    @property
    def present(self) -> tuple[Path, ...]:
        """``images`` less ``missing``, in order (one pass: a session may list 100,000 images)."""
        if not self.missing:
            return self.images
        missing = set(self.missing)
        return tuple(p for p in self.images if p not in missing)


def _expect(value: Any, kind: type, what: str) -> Any:
    # bool is an int in Python; a session with "index": true is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(what, value)
    return value


def _shown(value: Any) -> str:
    """``value`` for a message: short values as written, long ones by their type and length."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'JSON object'} of {len(value):,} entries"
    if isinstance(value, str) and len(value) > 60:
        return f"a text of {len(value):,} characters"
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def _invalid(what: str, value: Any) -> SessionError:
    return SessionError(f"the session file is invalid: expected {what}, found {_shown(value)}")


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{what} to be text", value)
    if len(value) > limit:
        raise SessionError(f"the session file is invalid: {what} is {len(value):,} characters long "
                           f"(at most {limit:,})")
    if "\0" in value:
        raise _invalid(f"{what} without NUL characters", value)
    return value


def _list(value: Any, what: str, limit: int) -> list:
    if not isinstance(value, list):
        raise _invalid(f"{what} to be a list", value)
    if len(value) > limit:
        raise SessionError(f"the session file is invalid: {what} has {len(value):,} entries (at most {limit:,})")
    return value


def _whole(value: Any, what: str, low: int, high: int = MAX_ID) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"{what} to be a whole number from {low} to {high}", value)
    return value


def _fraction(value: Any, what: str) -> float:
    # compared, never converted: NaN fails the comparison, and a 400-digit integer has no float
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise _invalid(f"{what} to be a number from 0 to 1", value)
    return float(value)


def _overlay(value: Any) -> OverlaySettings:
    """The overlay settings, every field type- and range-checked; unknown keys are ignored
    (a newer version's) and so is an unknown colormap (it falls back to the default)."""
    d = _expect(value, dict, "'overlay' to be an object")
    known: dict[str, Any] = {}
    for name in _OVERLAY_BOOLS:
        if name in d:
            known[name] = _expect(d[name], bool, f"'overlay.{name}' to be true or false")
    for name in _OVERLAY_FRACTIONS:
        if name in d:
            known[name] = _fraction(d[name], f"'overlay.{name}'")
    if "colormap" in d:
        known["colormap"] = _text(d["colormap"], "'overlay.colormap'", 64)
    if "hidden_labels" in d:
        labels = _list(d["hidden_labels"], "'overlay.hidden_labels'", MAX_HIDDEN_LABELS)
        known["hidden_labels"] = [_whole(v, "hidden labels", 0) for v in labels]
    return OverlaySettings.from_dict(known)


def _view(value: Any) -> dict[str, Any]:
    """The image view's state: a flat object of numbers, text, booleans and short lists of them."""
    d = _expect(value, dict, "'view' to be an object")
    if len(d) > MAX_VIEW_KEYS:
        raise SessionError(f"the session file is invalid: 'view' has {len(d):,} keys (at most {MAX_VIEW_KEYS})")
    for key, v in d.items():
        _text(key, "a 'view' key", 64)
        for item in _list(v, f"'view.{key}'", MAX_VIEW_LIST) if isinstance(v, list) else [v]:
            if isinstance(item, str):
                _text(item, f"'view.{key}'", 256)
            elif item is not None and not isinstance(item, (bool, int, float)):
                raise _invalid(f"'view.{key}' to be numbers or text", item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise _invalid(f"'view.{key}' to be finite", item)
    return d


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))  # normalises '..' without resolving symlinks the user chose


def _relative(path: Path, base: Path) -> str:
    p = _absolute(path)
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)


def _resolve(text: str, base: Path | None) -> Path:
    try:
        p = Path(text).expanduser()
    except RuntimeError:  # "~someone/…" for a user this machine does not know
        p = Path(text)
    return p if p.is_absolute() or base is None else _absolute(base / p)


# ---------------------------------------------------------------------- files
def save_session(path: str | os.PathLike, session: Session) -> None:
    """Write ``session`` to ``path`` atomically (the old file survives a failed write)."""
    path = Path(path)
    try:
        atomic_write_json(path, session.to_dict(relative_to=_absolute(path).parent))
    except OSError as exc:
        raise SessionError(f"cannot save the session to '{path}': {exc.strerror or exc}") from exc


def load_session(path: str | os.PathLike) -> Session:
    """Read a session file; SessionError says what is wrong with a missing, corrupt or foreign file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SESSION_BYTES + 1)  # bounded: a session is small, a crafted file need not be
        if len(raw) > MAX_SESSION_BYTES:
            raise SessionError(f"the session file '{path}' is too large to be a session "
                               f"(over {MAX_SESSION_BYTES // 2**20} MB)")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SessionError(f"session file not found: '{path}'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"cannot read the session file '{path}': {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(f"the session file '{path}' is damaged (not valid JSON: {exc.msg}, "
                           f"line {exc.lineno})") from exc
    except RecursionError:
        raise SessionError(f"the session file '{path}' is damaged (nested too deeply to be a session)") from None
    except ValueError as exc:  # e.g. a number with more digits than Python converts
        raise SessionError(f"the session file '{path}' is damaged ({exc})") from exc
    return Session.from_dict(data, relative_to=_absolute(path).parent)


# ---------------------------------------------------------------------- document
def session_from_document(document: Document, images: Sequence[str | os.PathLike], index: int,
                          model_path: str | os.PathLike | None, device: str = "auto", *,
                          folder: str | os.PathLike | None = None,
                          view: Mapping[str, Any] | None = None) -> Session:
    """The session of a window: its document's classes, selections and overlay plus what the
    main window knows (the image list, the model file, the device, the folder); the view is the
    document's (the zoom and pan the image view keeps there) unless ``view`` is given."""
    if view is None:
        view = document.view
    return Session(images=tuple(Path(p) for p in images), index=int(index),
                   model_path=Path(model_path) if model_path is not None else None, device=device,
                   classes=document.classes, background=document.background, concept=document.concept,
                   segment=document.segment, overlay=document.overlay, view=view,
                   folder=Path(folder) if folder is not None else None)


def apply_session_to_document(session: Session, document: Document) -> None:
    """Set the document's classes and overlay, and the selections as far as they apply now.

    The main window loads the model and the image itself; the image view shows the session's
    zoom and pan once the session's image is shown.  Loading a model clears the concept
    and a new analysis clears the segment, so call :func:`apply_session_selections` again once
    the session's analysis has arrived.
    """
    document.set_classes(session.classes, session.background)
    document.set_overlay(**{f.name: getattr(session.overlay, f.name) for f in fields(OverlaySettings)})
    image = session.current_image
    document.view_to_restore = (image, dict(session.view)) if image is not None and session.view else None
    apply_session_selections(session, document)


def apply_session_selections(session: Session, document: Document) -> None:
    """Select the session's concept and segment (the concept needs the model to be loaded)."""
    document.select_concept(session.concept)
    document.select_segment(session.segment)
