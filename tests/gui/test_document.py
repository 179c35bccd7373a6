"""The window's state without a screen: a Document is a plain object with psygnal signals, so it
is driven and checked here with no QApplication (no qtbot) — and in a process where Qt cannot be
imported at all."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from insight_desktop.core.concepts.names import NameBook
from insight_desktop.core.concepts.naming import ConceptNames
from insight_desktop.gui.document import Document, OverlaySettings, Region

SIGNALS = ("modelChanged", "imageChanged", "analysisChanged", "conceptSelected", "segmentSelected",
           "regionSelected", "overlayChanged", "classesChanged", "conceptRenamed")


@dataclass
class Catalog:
    """What a Document asks of a concept catalog: how many concepts, and their names."""

    names: NameBook

    @property
    def n_concepts(self) -> int:
        return len(self.names)

    def name(self, concept: int) -> str:
        return self.names.name(concept)


def catalog(n: int = 4) -> Catalog:
    return Catalog(NameBook(ConceptNames(names=tuple(f"c{j}" for j in range(n)), candidates=((),) * n,
                                         method="vanilla")))


def recorder(doc: Document) -> list[tuple]:
    """Every emission of the document's signals, in order, as (signal name, *arguments)."""
    emitted: list[tuple] = []
    for name in SIGNALS:
        getattr(doc, name).connect(lambda *args, name=name: emitted.append((name, *args)))
    return emitted


def test_setters_emit_on_change_and_stay_quiet_on_the_same_value():
    doc = Document()
    emitted = recorder(doc)
    cat = catalog()
    doc.set_catalog(cat)
    assert emitted == [("modelChanged",), ("analysisChanged",), ("conceptSelected", -1)]

    emitted.clear()
    rgb = np.zeros((6, 8, 3), np.uint8)
    doc.set_image(None, rgb)
    assert emitted == [("imageChanged",), ("analysisChanged",), ("regionSelected", None)]
    assert doc.image is not None and not doc.image.flags.writeable

    emitted.clear()
    doc.select_concept(2)
    doc.select_concept(2)       # the same concept: nothing to redraw
    doc.select_concept(99)      # not in the model: no concept
    doc.select_segment(1)
    doc.select_segment(1)
    region = Region(0, 0, 2, 2, patch=(0, 0))
    doc.select_region(region)
    doc.select_region(Region(0, 0, 2, 2, patch=(0, 0)))  # an equal value
    assert emitted == [("conceptSelected", 2), ("conceptSelected", -1), ("segmentSelected", 1),
                       ("regionSelected", region)]
    assert (doc.concept, doc.segment, doc.region) == (-1, 1, region)

    emitted.clear()
    doc.set_overlay(heatmap_opacity=0.3)
    doc.set_overlay(heatmap_opacity=0.3)
    doc.set_classes(["sky ", " cat", ""])
    doc.set_classes(("sky", "cat"))
    doc.set_classes(("sky", "cat"), background=True)
    assert emitted == [("overlayChanged",), ("classesChanged",), ("classesChanged",)]
    assert doc.overlay == OverlaySettings(heatmap_opacity=0.3)
    assert (doc.classes, doc.background) == (("sky", "cat"), True)

    emitted.clear()
    doc.rename_concept(3, "tabby fur")
    assert emitted == [("conceptRenamed", 3)] and doc.concept_name(3) == "tabby fur"
    doc.set_catalog(catalog())   # a new model: the old one's renames are no longer this window's
    emitted.clear()
    cat.names.rename(1, "old model")
    assert emitted == [] and doc.concept_name(1) == "c1"


def test_a_listener_that_is_garbage_collected_stops_listening():
    doc = Document()
    calls = []

    class Panel:
        def on_overlay(self) -> None:
            calls.append(doc.overlay.colormap)

    panel = Panel()
    doc.overlayChanged.connect(panel.on_overlay)
    doc.set_overlay(colormap="viridis")
    del panel
    doc.set_overlay(colormap="magma")
    assert calls == ["viridis"]


def test_the_document_works_where_qt_cannot_be_imported():
    script = (
        "import sys\n"
        "for qt in ('PySide6', 'pyqtgraph', 'superqt', 'qtpy'): sys.modules[qt] = None  # any import fails\n"
        "from insight_desktop.gui.document import Document\n"
        "doc, seen = Document(), []\n"
        "doc.classesChanged.connect(lambda: seen.append(doc.classes))\n"
        "doc.set_classes(['sky'])\n"
        "assert seen == [('sky',)], seen\n"
        "assert not any(m.startswith('PySide6') for m in sys.modules if sys.modules[m] is not None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_heat_scale_is_an_overlay_setting_that_survives_a_round_trip():
    doc, seen = Document(), []
    doc.overlayChanged.connect(lambda: seen.append(doc.overlay.heat_scale))
    assert doc.overlay.heat_scale == "image"  # the image's own max, as before
    doc.set_overlay(heat_scale="model")
    assert seen == ["model"]
    again = OverlaySettings.from_dict(doc.overlay.to_dict())
    assert again == doc.overlay and again.heat_scale == "model"
    # a hand-edited or future value falls back to the default rather than failing
    assert OverlaySettings.from_dict({"heat_scale": "absolute?"}).heat_scale == "image"


def test_an_image_may_come_with_its_screen_copy():
    doc = Document()
    big = np.zeros((60, 80, 3), np.uint8)
    small = np.zeros((30, 40, 3), np.uint8)
    doc.set_image(None, big, small)
    assert doc.preview is small and doc.image.shape == (60, 80, 3)
    doc.set_image(None, big)
    assert doc.preview is None  # the view makes its own
    doc.set_image(None, big, np.zeros((30, 40), np.uint8))
    assert doc.preview is None  # not an RGB copy: ignored
