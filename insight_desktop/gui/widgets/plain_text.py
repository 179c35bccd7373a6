"""Showing untrusted text (concept names from a model bundle, user renames, class names, file
names) as the characters it holds, never as markup.

Qt guesses: a QLabel, a QMessageBox or a tooltip whose text looks like HTML (``Qt::mightBeRichText``)
is rendered as HTML, so a concept named ``<img src="/home/…">`` would draw a local picture.
Labels get ``Qt.TextFormat.PlainText``; tooltips, which have no format switch, get escaped text
inside an explicit rich-text wrapper, so Qt's guess is always right.
"""

from __future__ import annotations

import html

from PySide6.QtGui import Qt


def escaped_tooltip(text: str) -> str:
    """``text`` as a tooltip that shows it literally (line breaks kept); unchanged when Qt would not
    take it for markup anyway."""
    if not Qt.mightBeRichText(text):
        return text
    return "<qt>" + html.escape(text, quote=False).replace("\n", "<br>") + "</qt>"


def escaped(text: str) -> str:
    """``text`` for insertion into rich text (a label that also holds markup of our own)."""
    return html.escape(text, quote=False)
