"""The concept tree's search: ids and names at once, text similarity from the worker.

Typing in the tree's search field matches concept ids ("730", "#730"), shown names and the
model's candidate names on the GUI thread, instantly (:class:`~insight_desktop.core.concepts.
search.NameIndex`). Free text also needs the model's text tower, which lives with the backbone
on the worker thread: :data:`TEXT_DEBOUNCE_MS` after the tree applied the names, the query goes
to the worker (:meth:`~insight_desktop.gui.worker.WorkerClient.search_text`) and its text hits
extend the filter when they arrive, if the query is still the one typed. The result says why it
is empty; :class:`SearchStatus` shows that, or the best hit and why it matched.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QWidget

from ...core.concepts.search import NameIndex, SearchResult, TextMatches, combine, parse_concept_id
from .plain_text import escaped, escaped_tooltip

#: after the tree's own 150 ms pause (concept_tree.SEARCH_DEBOUNCE_MS): the text tower is asked
#: about 250 ms after the typing stops, once per word rather than per key
TEXT_DEBOUNCE_MS = 100


class ConceptSearch(QObject):
    """One search field's state: the query, its name/id hits and the worker's text hits for it.

    :meth:`update` answers at once (ids and names); :attr:`resultChanged` follows when the text
    hits arrive. Without a worker (:meth:`connect_worker`) the result says the text tower is not
    loaded. Name look-ups use the document's name book, so the user's renames count."""

    resultChanged = Signal(object)   # SearchResult, once the worker's text hits are merged

    def __init__(self, document, parent: QObject | None = None):
        super().__init__(parent)
        self._document = document
        self._worker: Any = None
        self._query: str | None = None
        self._text: TextMatches | None = None   # the worker's answer for _query
        self._waiting = False
        self._index: tuple[Any, tuple[str, ...], NameIndex] | None = None
        self.result = SearchResult("", ())
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(TEXT_DEBOUNCE_MS)
        self._timer.timeout.connect(self._ask_worker)

    def connect_worker(self, worker: Any) -> None:
        """Compare queries as text on ``worker`` (a WorkerClient: ``search_text(query)`` and
        ``textMatchesReady(TextMatches)``)."""
        self._worker = worker
        worker.textMatchesReady.connect(self._on_text)

    @property
    def waiting(self) -> bool:
        """True while the worker's text hits for the current query are still to come."""
        return self._waiting

    def reset(self) -> None:
        """Forget the query's text hits (another model: its concepts compare differently)."""
        self._query, self._text, self._waiting = None, None, False
        self._timer.stop()

    def update(self, text: str) -> SearchResult:
        """Search ``text`` by id and name now; a new query is compared as text shortly after."""
        query = text.strip()
        if query != self._query:
            self._query, self._text = query, None
            self._timer.stop()
            self._waiting = bool(query and parse_concept_id(query) is None and self._worker is not None
                                 and self._document.catalog is not None)
            if self._waiting:
                self._timer.start()
        self.result = self._combine(query)
        return self.result

    # ------------------------------------------------------------------ internals
    def _names(self) -> NameIndex | None:
        catalog = self._document.catalog
        if catalog is None:
            return None
        shown = catalog.names.all()  # a new tuple after every rename: the index follows
        if self._index is None or self._index[0] is not catalog or self._index[1] is not shown:
            previous = self._index[2] if self._index is not None and self._index[0] is catalog else None
            self._index = (catalog, shown, NameIndex(catalog.names, previous))
        return self._index[2]

    def _combine(self, query: str) -> SearchResult:
        index = self._names()
        if index is None:
            return SearchResult(query, (), "no concept model is loaded" if query else "")
        return combine(query, index.match(query), self._text, no_id_reason=index.no_id_reason(query),
                       pending=self._waiting)

    @Slot()
    def _ask_worker(self) -> None:
        if self._worker is not None and self._waiting and self._query:
            self._worker.search_text(self._query)

    @Slot(object)
    def _on_text(self, matches: TextMatches) -> None:
        if not self._waiting or matches.query != self._query:
            return  # an answer to a query typed over since
        self._text, self._waiting = matches, False
        self.result = self._combine(matches.query)
        self.resultChanged.emit(self.result)


class SearchStatus(QLabel):
    """One line under the search field: the best hit and why it matched, or why nothing did."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)  # names are the user's text, never markup
        self.setEnabled(False)  # the platform's muted text colour: a note, not a control
        self.hide()

    def show_result(self, result: SearchResult, names: Any = None, waiting: bool = False) -> None:
        """``names``: the catalog's name book (for the best hit's name); ``waiting``: text hits
        are still to come."""
        if not result.query:
            self.clear()
            self.hide()
            return
        if result.hits:
            best, n = result.hits[0], len(result.hits)
            name = f" {names.name(best.concept)}" if names is not None else ""
            text = f"{n} concept{'s' if n != 1 else ''} · best #{best.concept}{name} — {best.why}"
            if waiting:
                text += " · comparing as text…"
        else:
            text = result.reason[:1].upper() + result.reason[1:] if result.reason else "No concept matches"
        self.setText(text)
        self.setToolTip(escaped_tooltip(text))
        self.show()


def tooltip_with_reason(tooltip: Any, why: str) -> str:
    """A row's tooltip with "Found by …" on top (the model's tooltip may be escaped rich text)."""
    line = f"Found by {why}"
    if isinstance(tooltip, str) and tooltip.startswith("<qt>"):
        return f"<qt>{escaped(line)}<br>{tooltip[4:]}"
    return escaped_tooltip(f"{line}\n{tooltip}" if isinstance(tooltip, str) and tooltip else line)
