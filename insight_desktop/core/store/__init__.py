"""The model store: reference weights and concept models, fetched or imported once, then offline.

:mod:`.model_store` is the store itself (``ModelStore``); :mod:`.known_models` the catalogue of
files it knows how to get; :mod:`.download` and :mod:`.download_hub` fetch them; :mod:`.fetch`,
:mod:`.files` and :mod:`.index` check, place and record them.
"""

from .model_store import DEMO_ID, STORE_PREFIX, InstalledModel, ModelStore, StoreError, is_store_reference

__all__ = ["DEMO_ID", "STORE_PREFIX", "InstalledModel", "ModelStore", "StoreError", "is_store_reference"]
