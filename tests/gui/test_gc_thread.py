"""Cyclic garbage holding Qt objects is collected on the GUI thread, never on a worker thread."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QObject

from insight_desktop.gui.app import collect_garbage_on_gui_thread


class Holder:
    pass


def test_a_worker_thread_never_collects_qt_garbage(qtbot, qapp):
    collect_garbage_on_gui_thread(qapp)
    assert not gc.isenabled()  # automatic collection is off: a GUI-thread timer collects
    collected_on: list[int] = []
    holder = Holder()
    holder.obj, holder.me = QObject(), holder  # a reference cycle holding a Qt object
    weakref.finalize(holder, lambda: collected_on.append(threading.get_ident()))
    del holder

    kept: list = []

    def allocate():  # past generation 0's threshold: automatic collection would run here
        kept.extend([] for _ in range(10 * gc.get_threshold()[0]))

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert collected_on == []
    qtbot.waitUntil(lambda: bool(collected_on), timeout=10_000)
    assert collected_on == [threading.main_thread().ident]
