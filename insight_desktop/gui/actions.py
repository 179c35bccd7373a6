"""Every menu command of the main window, with its shortcut, in one table.

The help dialog lists these actions, so a shortcut added here is documented automatically.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QLineEdit,
    QMenu,
    QMenuBar,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

#: A widget with this property set to True takes plain typed keys (e.g. a list with type-to-rename).
TYPING_TARGET = "takesTyping"
_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)
_EDIT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Backspace)
_COMMAND_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                      | Qt.KeyboardModifier.MetaModifier)


@dataclass(frozen=True)
class ActionSpec:
    name: str          # attribute name on Actions
    text: str
    shortcut: str | QKeySequence.StandardKey | None = None
    tip: str = ""
    checkable: bool = False


MENUS: dict[str, tuple[ActionSpec | None, ...]] = {
    "&File": (
        ActionSpec("open_image", "&Open Image…", QKeySequence.StandardKey.Open, "Open one or more images"),
        ActionSpec("open_folder", "Open &Folder…", "Ctrl+Shift+O", "Step through every image of a folder"),
        ActionSpec("open_model", "Open &Model…", "Ctrl+M", "Open a concept model bundle (.zip or folder)"),
        ActionSpec("manage_models", "Manage Mo&dels…", "Ctrl+Shift+M",
                   "Installed models, the reference Insight model (download or import), removing"),
        ActionSpec("build_model", "&Build Model from Images…", "Ctrl+B",
                   "Learn a concept model from a folder of your own images"),
        None,
        ActionSpec("open_session", "Open Sess&ion…", "Ctrl+Shift+L", "Restore images, model, classes and view"),
        ActionSpec("save_session", "&Save Session…", QKeySequence.StandardKey.Save,
                   "Save images, model, classes, selections and view settings"),
        None,
        ActionSpec("export_view", "&Export View as PNG…", "Ctrl+E", "The image with its layers, colorbar and legend"),
        ActionSpec("export_mask", "Export &Label Mask…", "Ctrl+Shift+E", "Segmentation labels as a palette PNG"),
        ActionSpec("export_contributions", "Export &Contributions…", "Ctrl+Alt+E",
                   "Concept contributions of segments and classes (CSV or JSON)"),
        None,
        ActionSpec("preferences", "Prefere&nces…", QKeySequence.StandardKey.Preferences,
                   "How much disk the cache of computed analyses may use; clear it"),
        ActionSpec("quit", "&Quit", QKeySequence.StandardKey.Quit),
    ),
    "&Edit": (
        ActionSpec("undo", "&Undo", QKeySequence.StandardKey.Undo,
                   "Undo the last curation change (verdict, name, note)"),
        ActionSpec("redo", "&Redo", "Ctrl+Shift+Z", "Redo the curation change just undone"),
    ),
    "&View": (
        ActionSpec("fit", "&Fit Image", "F", "Zoom so the whole image is visible"),
        ActionSpec("actual_size", "&Actual Pixels", "Ctrl+1", "One image pixel per screen pixel"),
        ActionSpec("zoom_in", "Zoom &In", QKeySequence.StandardKey.ZoomIn),
        ActionSpec("zoom_out", "Zoom &Out", QKeySequence.StandardKey.ZoomOut),
        None,
        ActionSpec("show_heatmap", "Concept &Heatmap", "H", "Show where the selected concept fires", True),
        ActionSpec("show_segmentation", "&Segmentation Mask", "S", "Show the segmentation", True),
        ActionSpec("show_residual", "&Residual Map", "R", "Show what the concepts leave unexplained", True),
        ActionSpec("show_opaque", "&Opaque Prediction", "O", "Show the raw-feature segmentation instead", True),
        ActionSpec("more_opaque", "Heatmap More Opaque", "]"),
        ActionSpec("less_opaque", "Heatmap More Transparent", "["),
        None,
        ActionSpec("rectangle_mode", "Select a &Rectangle", "Ctrl+R",
                   "Drag to select a rectangle (Ctrl+drag always does)", True),
        ActionSpec("find_concept", "Find &Concept", QKeySequence.StandardKey.Find, "Search the concept tree"),
        ActionSpec("side_by_side", "Side &by Side", "Ctrl+2", "Two linked views: two concepts, two levels, "
                   "before/after a switch-off, or two images with one concept", True),
        None,
        ActionSpec("review_mode", "Re&view Concepts", "Ctrl+Shift+R",
                   "Judge, rename, flag and note every concept by keyboard (the Review panel)", True),
        ActionSpec("hide_rejected", "Hide Re&jected Concepts", "Ctrl+Shift+J",
                   "Hide rejected concepts from the tree; charts sum them into one 'rejected concepts' bar", True),
    ),
    "&Go": (
        ActionSpec("next_image", "&Next Image", "PgDown", "Next image of the folder or list"),
        ActionSpec("previous_image", "&Previous Image", "PgUp", "Previous image of the folder or list"),
        ActionSpec("next_concept", "Next Active Concept", ".", "The next concept of this image, by activation"),
        ActionSpec("previous_concept", "Previous Active Concept", ","),
    ),
    # Active in review mode only (gui.review); F is Fit Image, so Flag is Shift+F.
    "&Review": (
        ActionSpec("review_accept", "&Accept Concept", "A", "Accept the name and go on to the next concept"),
        ActionSpec("review_reject", "Re&ject Concept", "X", "Reject the concept and go on to the next"),
        ActionSpec("review_flag", "&Flag Concept", "Shift+F", "Flag the concept for a second look and go on"),
        ActionSpec("review_reset", "Mark &Unreviewed", "Backspace", "Take the verdict back (the name and note stay)"),
        ActionSpec("review_rename", "&Rename in Review", "Return", "Type a new name (completes from the candidates "
                   "and the vocabulary); Enter keeps it"),
        ActionSpec("review_note", "&Note…", "N", "Write a note on the concept; Enter keeps it"),
        None,
        ActionSpec("review_next", "&Next Concept", "J", "The next concept in the review order"),
        ActionSpec("review_previous", "&Previous Concept", "K", "The previous concept in the review order"),
        ActionSpec("review_next_unreviewed", "Next &Unreviewed", "U", "The next concept nobody judged yet"),
        None,
        ActionSpec("accept_subtree", "Accept &Subtree", "Shift+A", "Accept this concept and every concept under it"),
        ActionSpec("reject_rare", "Reject &Rare Concepts", None,
                   "Reject every concept firing on less than 0.01 % of patches (one undo step)"),
        None,
        ActionSpec("export_verdicts", "&Export Verdicts…", None, "Every concept's status, name and note (CSV or JSON)"),
        ActionSpec("merge_curation", "&Merge Another Annotator's Curation…", None,
                   "Take their verdicts where you have none, choose on conflicts, see how far you agree"),
    ),
    "&Analysis": (
        ActionSpec("segment", "&Segment with Classes", "Ctrl+Return", "Run segmentation and classification"),
        ActionSpec("cancel", "&Cancel", "Esc", "Stop the running job"),
        None,
        ActionSpec("index_folder", "&Index This Folder", "Ctrl+I", "Index every image of this folder with the "
                   "model, in the background (run it again to continue or to take in new images)"),
        ActionSpec("stop_indexing", "S&top Indexing", None, "Stop indexing; what was indexed is kept"),
        ActionSpec("concept_gallery", "Concept &Gallery", "Ctrl+G", "Where the selected concept fires most in this "
                   "folder (its index)"),
        ActionSpec("folder_stats", "Folder &Statistics", "Ctrl+Shift+F", "How often the selected concept fires "
                   "per sub-folder, and the concepts that tell two sub-folders apart (the folder index)"),
        None,
        ActionSpec("whatif_panel", "&What If…", "Ctrl+Shift+W", "Switch concepts off and see what changes; "
                   "explain through the first Matryoshka levels only", True),
        ActionSpec("switch_off_rejected", "Switch Off All Re&jected", None,
                   "Recompute the prediction without the concepts rejected in review (undoable)"),
        ActionSpec("restore_concepts", "Restore &All Concepts", None, "Switch every concept on again, all levels"),
    ),
    "&Help": (
        ActionSpec("shortcuts", "&Keyboard Shortcuts", QKeySequence.StandardKey.HelpContents),
        ActionSpec("about", "&About Insight Desktop"),
    ),
}


class TypingGuard(QObject):
    """Lets text fields (and widgets marked :data:`TYPING_TARGET`) take printable keys before the
    window's single-key shortcuts (F, H, S, R, O, [, ], ., ,, and review mode's A, X, J, K, …) see
    them; a text field also keeps Return and Backspace (review mode's Rename and Unreviewed).

    Qt offers a key to the focus widget as a ShortcutOverride first; accepting it there turns the
    key into a plain key press. Without this, typing "rose" fires R and S once focus leaves the
    line edit for the list it edits."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and _takes_typing(watched)  # the receiver: the focus widget
                and not event.modifiers() & _COMMAND_MODIFIERS
                and ((event.text() and event.text().isprintable())
                     or (event.key() in _EDIT_KEYS and isinstance(watched, _TEXT_INPUTS)))):
            event.accept()
        return False


def _takes_typing(widget: QObject) -> bool:
    return isinstance(widget, _TEXT_INPUTS) or (isinstance(widget, QWidget) and bool(widget.property(TYPING_TARGET)))


class Actions:
    """The window's QActions as attributes (``actions.open_image``), built from :data:`MENUS`."""

    def __init__(self, window: QWidget, menubar: QMenuBar):
        self.menus: dict[str, QMenu] = {}
        self.all: list[QAction] = []
        for title, specs in MENUS.items():
            menu = menubar.addMenu(title)
            self.menus[title.replace("&", "")] = menu
            for spec in specs:
                if spec is None:
                    menu.addSeparator()
                    continue
                action = QAction(spec.text, window)
                action.setObjectName(spec.name)  # the key of its shortcut in the settings
                if spec.shortcut is not None:
                    action.setShortcut(QKeySequence(spec.shortcut))
                action.setStatusTip(spec.tip)
                action.setToolTip(spec.tip or spec.text.replace("&", ""))
                action.setCheckable(spec.checkable)
                menu.addAction(action)
                window.addAction(action)  # shortcuts work even when the menu bar is hidden
                setattr(self, spec.name, action)
                self.all.append(action)
        self.typing_guard = TypingGuard(window)
        QApplication.instance().installEventFilter(self.typing_guard)


#: QSettings group of the user's own keys: ``shortcuts/<action name>=<key>`` (e.g.
#: ``shortcuts/review_accept=Y``; an empty value takes the key away)
SHORTCUTS_GROUP = "shortcuts"


def apply_shortcut_overrides(actions: Actions, qsettings) -> dict[str, str]:
    """Give actions the keys the user set in ``qsettings`` (:data:`SHORTCUTS_GROUP`); returns
    what was applied, name → key. Unknown names and unreadable keys are ignored."""
    applied: dict[str, str] = {}
    by_name = {a.objectName(): a for a in actions.all}
    qsettings.beginGroup(SHORTCUTS_GROUP)
    try:
        for name in qsettings.childKeys():
            action, value = by_name.get(name), qsettings.value(name)
            if action is None or not isinstance(value, str):
                continue
            key = QKeySequence(value)
            if value.strip() and key.isEmpty():
                continue  # not a key Qt understands: keep the default
            action.setShortcut(key)
            applied[name] = key.toString()
    finally:
        qsettings.endGroup()
    return applied
