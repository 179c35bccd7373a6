"""One annotator's verdict on one concept, and the errors of this package.

A :class:`ConceptReview` is a value: the status, the annotator's name for the concept (or None:
the model's name stands), a note, who made the last change and when (UTC, ISO 8601). Concepts
nobody touched have no record; :data:`UNREVIEWED` stands for them.

``renamed`` means "accepted, under a new name": a review with a name and the status ``accepted``
becomes ``renamed``, and a ``renamed`` one without a name becomes ``accepted``
(:meth:`ConceptReview.normalized`), so the status always says what the fields hold. A rejected
or flagged concept may carry a name too (a tentative one); its status stays.
"""

from __future__ import annotations

import datetime as _dt
import getpass
from dataclasses import dataclass, replace

from ..concepts.names import clean_name

UNREVIEWED_STATUS = "unreviewed"
ACCEPTED = "accepted"
RENAMED = "renamed"
REJECTED = "rejected"
FLAGGED = "flagged"
#: every status, in the order progress and exports list them
STATUSES = (UNREVIEWED_STATUS, ACCEPTED, RENAMED, REJECTED, FLAGGED)
#: a note longer than this is refused (a note is a remark, not a document)
MAX_NOTE_CHARS = 10_000
#: user names (``by``) longer than this are refused
MAX_USER_CHARS = 200


class CurationError(ValueError):
    """A curation cannot be read, written, merged or changed as asked; the message says why, in
    words for the user. (A ValueError, so the command line shows it as one line.)"""


class CurationFormatError(CurationError):
    """A curation file is damaged, of another format or of a newer version."""


class CurationModelError(CurationError):
    """A curation belongs to another concept model than the one it is used with."""


def now_utc() -> str:
    """The time now, UTC, ISO 8601 to the second: ``2026-11-29T18:30:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def current_user() -> str:
    """The login name (``getpass.getuser()``), or ``"unknown"`` where the system has none."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 — no USER/LOGNAME and no passwd entry (containers): still usable
        user = ""
    user = " ".join(str(user).split())[:MAX_USER_CHARS]
    return user or "unknown"


@dataclass(frozen=True)
class ConceptReview:
    """What one annotator decided about one concept."""

    status: str = UNREVIEWED_STATUS
    name: str | None = None     # the annotator's name for the concept; None: the model's name
    note: str = ""
    by: str = ""                # who made the last change
    at: str = ""                # when (UTC ISO 8601); "" for the unreviewed default

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise CurationError(f"unknown status {self.status!r}; use one of {', '.join(STATUSES)}")

    @property
    def reviewed(self) -> bool:
        return self.status != UNREVIEWED_STATUS

    @property
    def is_default(self) -> bool:
        """Nothing recorded: no verdict, no name, no note (such a review is not stored)."""
        return self.status == UNREVIEWED_STATUS and self.name is None and not self.note

    def verdict(self) -> tuple[str, str | None, str]:
        """What the annotator decided, without who and when (merge and agreement compare this)."""
        return self.status, self.name, self.note

    def normalized(self) -> "ConceptReview":
        """The same review with the status matching the name (see the module's docstring)."""
        if self.status == ACCEPTED and self.name is not None:
            return replace(self, status=RENAMED)
        if self.status == RENAMED and self.name is None:
            return replace(self, status=ACCEPTED)
        return self


UNREVIEWED = ConceptReview()


def checked_name(name: str | None) -> str | None:
    """``name`` as it will be shown (one line, :func:`..concepts.names.clean_name`), or None for blank."""
    if name is None:
        return None
    return clean_name(name) or None


def checked_note(note: str | None) -> str:
    note = "" if note is None else str(note).strip()
    if len(note) > MAX_NOTE_CHARS:
        raise CurationError(f"a note may have at most {MAX_NOTE_CHARS:,} characters, not {len(note):,}")
    if "\0" in note:
        raise CurationError("a note may not contain NUL characters")
    return note
