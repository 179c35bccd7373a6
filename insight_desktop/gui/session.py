"""A session: what a window was looking at, saved as a small JSON file and opened again later.

A session holds values only — image paths, the model path, the class list, selections and
overlay settings — never pixels or analyses: opening one reloads the model and the image and
analyses again.  Image paths inside the session file's folder are stored relative to it, so a
folder with its session can be moved or shared; images that have gone missing are reported in
``Session.missing`` rather than refusing the whole session.
"""

from __future__ import annotations

import json
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
            raise SessionError(f"the session file has no valid format version (found {version!r})")
        if version > SESSION_VERSION:
            raise SessionError(f"the session was saved by a newer Insight Desktop (session format {version}; "
                               f"this version reads up to {SESSION_VERSION}). Update Insight Desktop to open it.")
        base = _absolute(relative_to) if relative_to is not None else None

        def path(text: Any) -> Path:
            return _resolve(_expect(text, str, "a path"), base)

        images = tuple(path(p) for p in _expect(d.get("images", []), list, "'images' to be a list"))
        index = _expect(d.get("index", 0), int, "'index' to be a whole number")
        index = min(max(index, 0), max(len(images) - 1, 0))  # a hand-edited index still opens something
        overlay = _expect(d.get("overlay", {}), dict, "'overlay' to be an object")
        view = d.get("view")
        try:
            return cls(
                images=images, index=index,
                model_path=path(d["model_path"]) if d.get("model_path") is not None else None,
                device=_expect(d.get("device", "auto"), str, "'device' to be text"),
                classes=tuple(_expect(c, str, "class names to be text")
                              for c in _expect(d.get("classes", list(DEFAULT_CLASSES)), list,
                                               "'classes' to be a list")),
                background=_expect(d.get("background", False), bool, "'background' to be true or false"),
                concept=_expect(d.get("concept", -1), int, "'concept' to be a whole number"),
                segment=_expect(d.get("segment", -1), int, "'segment' to be a whole number"),
                overlay=OverlaySettings.from_dict(overlay),
                view=_expect(view, dict, "'view' to be an object") if view is not None else None,
                folder=path(d["folder"]) if d.get("folder") is not None else None,
                missing=tuple(p for p in images if not p.is_file()),
            )
        except (TypeError, ValueError) as exc:  # a wrong overlay field, an unknown device
            raise SessionError(f"the session file is invalid: {exc}") from exc


def _expect(value: Any, kind: type, what: str) -> Any:
    # bool is an int in Python; a session with "index": true is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SessionError(f"the session file is invalid: expected {what}, found {value!r}")
    return value


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))  # normalises '..' without resolving symlinks the user chose


def _relative(path: Path, base: Path) -> str:
    p = _absolute(path)
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p)


def _resolve(text: str, base: Path | None) -> Path:
    p = Path(text).expanduser()
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"session file not found: '{path}'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"cannot read the session file '{path}': {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(f"the session file '{path}' is damaged (not valid JSON: {exc.msg}, "
                           f"line {exc.lineno})") from exc
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
