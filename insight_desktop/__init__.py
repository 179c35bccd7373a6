"""Insight Desktop: spatially grounded, named, hierarchical concepts of a vision-language encoder.

Importing this package imports neither torch nor Qt.
"""

__version__ = "0.1.0"
