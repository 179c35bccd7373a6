"""When the worker must compute, and when an analysis already made can be shown instead.

An analysis depends on the image file (and its version on disk), the class list, the FOUND
background flag and the model: together, its *key*. :class:`AnalysisRequests` asks the worker
only when the key is neither shown nor among the last few analyses — so stepping back through a
folder, or undoing a class edit, is instant.

Behind that memory cache lies a disk cache (:class:`~insight_desktop.core.analysis_cache.AnalysisCache`,
bounded by the user's setting), which the worker consults before it computes and fills after:
at 8000×6000 its key needs the decoded pixels hashed (≈ 0.15 s) and a get reads 0.32 GB
(≈ 0.4 s; benchmarks/bench_analysis_cache.py), far more than a frame on the GUI thread. So an
image seen in an earlier session, or a restored session, shows as soon as the model is loaded,
with no backbone pass. Not before: the key uses the model's content identity, which the model's
manifest gives, but the views cannot show an analysis without the model's catalog (names,
hierarchy), which comes with the model load.

Every request supersedes the one before it, also when it is answered from the cache (ndv's
pattern: a new request cancels what is pending). Each request to the worker remembers the key it
was made for, and its result is stored and shown under that key, never under whatever the
document holds when the result arrives.
"""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QObject, Signal, Slot

from ..core.analysis_cache import AnalysisCache
from .document import Document
from .settings import AppSettings
from .worker import WorkerClient

#: analyses kept so that stepping back through a folder is instant
CACHE_SIZE = 8


class AnalysisRequests(QObject):
    """Turns "show the analysis of what the document holds now" into worker requests (or cache hits)."""

    shown = Signal(object)       # the Analysis just put into the document (computed or cached)
    computing = Signal(bool)     # a request for what the document wants went to the worker (True) / ended (False)

    def __init__(self, document: Document, worker: WorkerClient, parent: QObject | None = None,
                 settings: AppSettings | None = None):
        super().__init__(parent)
        self.document, self.worker = document, worker
        self._asked: tuple[int, tuple] | None = None   # (generation, key) of the request still wanted
        self._cache: OrderedDict = OrderedDict()       # key → Analysis, least recently used first
        worker.analysisReady.connect(self._on_ready)
        worker.idle.connect(self._on_idle)
        limit = settings.analysis_cache_limit() if settings is not None else 0
        self.disk_cache = AnalysisCache(limit_bytes=limit)  # under user_cache_dir()/analyses; evicts on put
        self._hand_to_worker()

    def set_disk_cache_limit(self, limit_bytes: int) -> None:
        """Bound the disk cache (evicting what no longer fits); 0 turns it off (what is there stays
        until cleared)."""
        if limit_bytes > 0:
            self.disk_cache.set_limit(limit_bytes)
        else:
            self.disk_cache.limit_bytes = 0
        self._hand_to_worker()

    def _hand_to_worker(self) -> None:
        self.worker.set_analysis_cache(self.disk_cache if self.disk_cache.limit_bytes > 0 else None)

    def key(self) -> tuple:
        doc = self.document
        try:
            version = doc.image_path.stat().st_mtime_ns if doc.image_path else id(doc.image)
        except OSError:
            version = id(doc.image)
        return (str(doc.image_path), version, doc.classes, doc.background, id(doc.catalog))

    @Slot()
    def request(self) -> None:
        """Analyse the current image with the current classes (unless that is already shown or on its way)."""
        doc = self.document
        if doc.image is None or doc.catalog is None:
            return
        key = self.key()
        if self._asked is not None:
            if self._asked[1] == key:
                return  # on its way
            self.worker.supersede_analyses()  # asked for something else: its result is no longer wanted
            self._set_asked(None)
        if doc.analysis is not None and self._cache.get(key) is doc.analysis:
            return  # shown
        if key in self._cache:
            self._cache.move_to_end(key)
            self._show(self._cache[key])
            return
        generation = self.worker.analyze(doc.image, doc.classes, doc.background,
                                         label=doc.image_path.name if doc.image_path else "image")
        self._set_asked((generation, key))

    def forget(self) -> None:
        """A new model: nothing computed so far applies."""
        self._cache.clear()
        self._set_asked(None)

    def retry_allowed(self) -> None:
        """After a failure or a cancel the same request may be made again."""
        self._set_asked(None)

    @Slot(int, object)
    def _on_ready(self, generation: int, analysis) -> None:
        if self._asked is None or self._asked[0] != generation:
            return  # asked for before the current request (the worker client drops most of these already)
        key = self._asked[1]
        self._set_asked(None)
        self._cache[key] = analysis
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        if key[:2] == self.key()[:2]:  # still the document's image (path and version)
            self._show(analysis)

    def _show(self, analysis) -> None:
        self.document.set_analysis(analysis)
        self.shown.emit(analysis)

    def _set_asked(self, asked: tuple[int, tuple] | None) -> None:
        was, self._asked = self._asked is not None, asked
        if was != (asked is not None):
            self.computing.emit(asked is not None)

    @Slot()
    def _on_idle(self) -> None:
        self._set_asked(None)  # nothing is running: whatever was asked has ended (done, failed or stopped)
