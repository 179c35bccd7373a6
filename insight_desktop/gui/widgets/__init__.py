"""Panels and views of the main window; each reads a Document and listens to its signals."""
