"""Curation: one annotator's verdicts, names and notes on the concepts of one concept model.

* :mod:`.records` — a concept's review (:class:`~.records.ConceptReview`), statuses, errors;
* :mod:`.curation` — :class:`~.curation.Curation`: every operation planned as an undoable
  :class:`~.curation.CurationChange`, a psygnal signal, progress;
* :mod:`.store` — the file (JSON, one concept per line, atomic saves), where it lives, validation;
* :mod:`.names_sync` — a curation and the model's :class:`..concepts.names.NameBook` kept in step;
* :mod:`.merge` — merging another annotator's curation, conflicts, agreement (Cohen's κ);
* :mod:`.fold` — rejected concepts summed into one bar, so explanations stay exact;
* :mod:`.export` — verdicts as CSV/JSON, a curated copy of the bundle.

The file format is described in ``docs/curation.md``. Nothing here imports Qt or torch.
"""

from .curation import RARE_FREQUENCY, Curation, CurationChange, Progress
from .fold import REJECTED_BAR, REJECTED_LABEL, FoldedContributions, fold_rejected, name_with_rejected
from .merge import Agreement, Conflict, MergePlan, agreement, merge, plan_merge
from .names_sync import NameSync
from .records import (
    ACCEPTED,
    FLAGGED,
    REJECTED,
    RENAMED,
    STATUSES,
    UNREVIEWED,
    UNREVIEWED_STATUS,
    ConceptReview,
    CurationError,
    CurationFormatError,
    CurationModelError,
)
from .store import curation_for, default_path, load_curation

__all__ = [
    "ACCEPTED", "FLAGGED", "RARE_FREQUENCY", "REJECTED", "REJECTED_BAR", "REJECTED_LABEL", "RENAMED", "STATUSES",
    "UNREVIEWED", "UNREVIEWED_STATUS", "Agreement", "ConceptReview", "Conflict", "Curation", "CurationChange",
    "CurationError", "CurationFormatError", "CurationModelError", "FoldedContributions", "MergePlan", "NameSync",
    "Progress", "agreement", "curation_for", "default_path", "fold_rejected", "load_curation", "merge",
    "name_with_rejected", "plan_merge",
]
