"""Switching concepts off, installed into the main window: one call from the window, the rest here.

:func:`install_whatif` adds the :class:`~.switches.SwitchController` (on the curation's undo
stack, so Edit → Undo takes back a switch as it takes back a verdict), the "What If" dock (the
mode, what changed, the level slider and its plot), the highlight of changed pixels on the
canvas, the check boxes on the concept tree's names and before the contribution bars (Shift: the
whole subtree), and the menu commands "Switch Off All Rejected" and "Restore All Concepts".
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QScrollArea, QVBoxLayout, QWidget

from ..docks import add_hidden_dock
from ..review.curation_controller import subtree
from ..widgets.contribution_chart import ContributionChart
from .changes_view import ChangedLayer, ChangesPanel
from .levels import LevelsPanel, n_levels
from .switches import SwitchController, WhatIfView


@dataclass
class WhatIf:
    controller: SwitchController
    changes: ChangesPanel
    levels: LevelsPanel
    layer: ChangedLayer
    dock: QDockWidget


def install_whatif(window) -> WhatIf:
    doc, a = window.document, window.actions
    controller = SwitchController(doc, window.review.controller.undo_stack, window)
    changes = ChangesPanel(doc)
    levels = LevelsPanel()
    layer = ChangedLayer(window.canvas)
    body = QWidget()
    box = QVBoxLayout(body)
    box.addWidget(changes, 1)
    box.addWidget(levels)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setWidget(body)
    dock = add_hidden_dock(window, "whatif", "What If", scroll, "dock-what-if")
    whatif = WhatIf(controller, changes, levels, layer, dock)

    tree = window.tree.model
    tree.switchable = True
    tree.switchToggled.connect(lambda j: switch_from_tree(window, controller, j))
    for chart in window.findChildren(ContributionChart):
        chart.switchable = True
        chart.switchToggled.connect(lambda j, shift: controller.set_off(concepts_of(window, j, shift), True))
        chart.update()

    last_base: list = [None]
    mode = [False]   # the last state's keep_residual

    def on_view(view: WhatIfView | None) -> None:
        base = view.base if view is not None else None
        if base is not last_base[0]:
            last_base[0] = base
            levels.set_analysis(base, n_levels(base, doc.catalog) if base is not None else 1)
        changes.show_view(view)
        layer.show(view)

    def show_dock() -> None:
        dock.show()
        dock.raise_()
        # half of the right column: the shares table, the scores and the level plot need the room
        window.resizeDocks([dock], [max(360, window.height() // 2)], Qt.Orientation.Vertical)

    def on_state(state) -> None:
        if state.keep_residual != mode[0]:  # "concepts + residual" changes the opaque path: show it
            mode[0] = state.keep_residual
            doc.set_overlay(show_opaque=state.keep_residual)
        tree.set_switched_off(state.removed(controller.base) if controller.base is not None else ())
        levels.show_level(state.level)
        if not dock.isVisible() and (state.off or state.level is not None):
            show_dock()  # the first switch shows where its effect is summed up

    controller.viewChanged.connect(on_view)
    controller.stateChanged.connect(on_state)
    controller.failed.connect(lambda message: window.statusBar().showMessage(
        f"Could not recompute without those concepts: {message}", 15_000))
    changes.modeChosen.connect(controller.set_keep_residual)
    changes.restoreRequested.connect(controller.restore_all)
    changes.rejectedRequested.connect(lambda: switch_off_rejected(window, controller))
    changes.highlightToggled.connect(layer.set_enabled)
    levels.levelChosen.connect(controller.set_level)
    a.whatif_panel.toggled.connect(lambda on: show_dock() if on else dock.hide())
    dock.visibilityChanged.connect(lambda on: a.whatif_panel.setChecked(dock.isVisible()))
    a.switch_off_rejected.triggered.connect(lambda: switch_off_rejected(window, controller))
    a.restore_concepts.triggered.connect(controller.restore_all)
    window.installEventFilter(_ShutdownOnClose(window, whatif))
    on_view(controller.view)
    return whatif


def concepts_of(window, concept: int, with_subtree: bool) -> list[int]:
    """``concept``, and with ``with_subtree`` every concept under it in the display tree."""
    catalog = window.document.catalog
    if with_subtree and catalog is not None and 0 <= concept < catalog.n_concepts:
        return subtree(catalog, concept)
    return [int(concept)]


def switch_from_tree(window, controller: SwitchController, concept: int) -> bool:
    """A tree check box was clicked: switch the concept (Shift held: its subtree too) off, or on again."""
    shift = bool(QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier)
    return controller.toggle(concepts_of(window, concept, shift))


def switch_off_rejected(window, controller: SwitchController) -> bool:
    """Switch off every concept rejected in review that is active in this image (one undo step)."""
    curation = window.review.controller.curation
    base = controller.base
    if curation is None or base is None:
        return False
    active = {c.concept for c in base.concepts}
    rejected = sorted(curation.rejected() & active)
    if not rejected:
        window.statusBar().showMessage("No rejected concept is active in this image.", 8_000)
        return False
    return controller.set_off(rejected, True, f"Switch off {len(rejected)} rejected concept(s)")


class _ShutdownOnClose(QObject):
    """Drops queued recomputations and waits for running ones when the window closes."""

    def __init__(self, window, whatif: WhatIf):
        super().__init__(window)
        self.whatif = whatif

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 — Qt override
        if event.type() == QEvent.Type.Close:
            self.whatif.controller.shutdown()
            self.whatif.levels.shutdown()
        return False
