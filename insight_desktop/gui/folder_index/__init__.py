"""The folder index in the app: indexing a folder in the background, the concept gallery, and
the filmstrip's sort by a concept and the folder statistics.

The index itself is :mod:`insight_desktop.core.index`; these modules only run it, query it off
the GUI thread and show what it answers. The window installs them with one call each
(:func:`.wiring_index.install_folder_index`, :func:`.wiring_stats.install_folder_stats`).
"""
