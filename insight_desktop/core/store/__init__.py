"""The model store: reference weights and concept models, fetched or imported once, then offline.

:mod:`.model_store` is the store itself (``ModelStore``); :mod:`.known_models` the catalogue of
files it knows how to get; :mod:`.download` and :mod:`.download_hub` fetch them (https only:
:mod:`.urls`); :mod:`.fetch`, :mod:`.files`, :mod:`.staging` and :mod:`.index` check, copy, place
and record them.
"""

from .model_store import DEMO_ID, STORE_PREFIX, InstalledModel, ModelStore, StoreError, is_store_reference

__all__ = ["DEMO_ID", "STORE_PREFIX", "InstalledModel", "ModelStore", "StoreError", "is_store_reference"]
