"""When the worker must compute, and when an analysis already made can be shown instead.

An analysis depends on the image file (and its version on disk), the class list, the FOUND
background flag and the model. :class:`AnalysisRequests` asks the worker only when that
combination is neither shown nor among the last few analyses — so stepping back through a
folder, or undoing a class edit, is instant.
"""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, Signal, Slot

from .document import Document
from .worker import WorkerClient

#: analyses kept so that stepping back through a folder is instant
CACHE_SIZE = 8


class AnalysisRequests(QObject):
    """Turns "show the analysis of what the document holds now" into worker requests (or cache hits)."""

    shown = Signal(object)       # the Analysis just put into the document (computed or cached)
    computing = Signal(bool)     # a request went to the worker (True) / it ended (False)

    def __init__(self, document: Document, worker: WorkerClient, parent: QObject | None = None):
        super().__init__(parent)
        self.document, self.worker = document, worker
        self._key = None                        # what the current request or analysis is for
        self._cache: OrderedDict = OrderedDict()
        worker.analysisReady.connect(self._on_ready)
        worker.idle.connect(self._on_idle)

    def key(self) -> tuple:
        doc = self.document
        try:
            version = doc.image_path.stat().st_mtime_ns if doc.image_path else id(doc.image)
        except OSError:
            version = id(doc.image)
        return (str(doc.image_path), version, doc.classes, doc.background, id(doc.catalog))

    @Slot()
    def request(self) -> None:
        """Analyse the current image with the current classes (unless that is already shown)."""
        doc = self.document
        if doc.image is None or doc.catalog is None:
            return
        key = self.key()
        if key == self._key and (doc.analysis is not None or self.worker.is_busy):
            return
        self._key = key
        if key in self._cache:
            self._cache.move_to_end(key)
            self._show(self._cache[key])
            return
        self.worker.analyze(doc.image, doc.classes, doc.background,
                            label=doc.image_path.name if doc.image_path else "image")
        self.computing.emit(True)

    def forget(self) -> None:
        """A new model: nothing computed so far applies."""
        self._cache.clear()
        self._key = None

    def retry_allowed(self) -> None:
        """After a failure or a cancel the same request may be made again."""
        self._key = None

    @Slot(object)
    def _on_ready(self, analysis) -> None:
        self._cache[self._key] = analysis
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        self._show(analysis)

    def _show(self, analysis) -> None:
        self.document.set_analysis(analysis)
        self.shown.emit(analysis)

    @Slot()
    def _on_idle(self) -> None:
        self.computing.emit(False)
