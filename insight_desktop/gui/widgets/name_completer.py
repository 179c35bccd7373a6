"""Type-ahead for naming a concept: its candidate names first, then the model's vocabulary.

The candidates are the model's best terms for this concept (best first); the vocabulary is the
bundled word lists the model was named from (``english``, ``imagenet``), read once per process
(≈ 21 k terms) and only when a rename starts, so stepping through concepts never pays for it.
Matching is case-insensitive and anywhere in the term ("cup" finds "coffee cup").
"""

from __future__ import annotations

import functools

from PySide6.QtCore import QStringListModel, Qt
from PySide6.QtWidgets import QCompleter, QLineEdit


@functools.lru_cache(maxsize=4)
def vocabulary_terms(names: tuple[str, ...]) -> tuple[str, ...]:
    """The terms of the bundled vocabularies called ``names`` (all of them when empty); () when
    they cannot be read (a broken install must not stop a rename)."""
    try:
        from ...core.concepts.vocab import default_vocabularies

        vocabs = default_vocabularies()
    except Exception:  # noqa: BLE001 — type-ahead is a help, never a reason to fail
        return ()
    wanted = set(names)
    terms: dict[str, None] = {}
    for v in vocabs:
        if not wanted or v.name in wanted:
            terms.update(dict.fromkeys(v.terms))
    return tuple(terms)


def completion_terms(catalog, concept: int, *, vocabulary: bool = True) -> list[str]:
    """The candidates of ``concept`` (best first), then the vocabulary's terms, without repeats."""
    terms = dict.fromkeys(c.term for c in catalog.names.candidates(concept))
    if vocabulary:
        model_vocabs = tuple(name for name, _ in getattr(catalog.names.model_names, "vocabularies", ()))
        terms.update(dict.fromkeys(vocabulary_terms(model_vocabs)))
    return list(terms)


def attach_name_completer(edit: QLineEdit, catalog, concept: int) -> QCompleter:
    """Give ``edit`` type-ahead over :func:`completion_terms` (replacing any completer it had)."""
    completer = edit.completer()
    if completer is None or not isinstance(completer.model(), QStringListModel):
        completer = QCompleter(QStringListModel(edit), edit)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        completer.setMaxVisibleItems(12)
        edit.setCompleter(completer)
    model = completer.model()
    assert isinstance(model, QStringListModel)
    model.setStringList(completion_terms(catalog, concept))
    return completer
