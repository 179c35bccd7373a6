"""Class lists and their text embeddings (docs/method.md §6: the 80 ImageNet templates, averaged).

A class list is validated once, up front, so a typo never costs a backbone pass: it must not be
empty, no name may be blank, and no name may repeat (compared case-insensitively, since
"Dog" and "dog" give near-identical prompts and would split one region in two).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

#: classes whose prompts go to the text tower together (bounds the [prompts, d] batch)
CLASSES_PER_CALL = 32


class ClassListError(ValueError):
    """A list of class names cannot be used (empty, a blank name, a duplicate); the message says which."""


def validate_classes(classes: Iterable[str] | str) -> tuple[str, ...]:
    """Names stripped of surrounding spaces, checked; raises :class:`ClassListError`."""
    if isinstance(classes, str):
        raise ClassListError("classes must be a list of names, not one string; use parse_class_list('a,b,c')")
    names = []
    for i, raw in enumerate(classes):
        if not isinstance(raw, str):
            raise ClassListError(f"class #{i + 1} is {type(raw).__name__}, not a name")
        name = raw.strip()
        if not name:
            raise ClassListError(f"class #{i + 1} has a blank name")
        names.append(name)
    if not names:
        raise ClassListError("the class list is empty: give at least one class name")
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            same = f"'{name}'" if seen[key] == name else f"'{seen[key]}' and '{name}'"
            raise ClassListError(f"class {same} is listed twice (names are compared ignoring case)")
        seen[key] = name
    return tuple(names)


def parse_class_list(text: str) -> tuple[str, ...]:
    """``"cat, dog,sky"`` → ``("cat", "dog", "sky")``; validated (``"a,,b"`` has a blank name)."""
    return validate_classes(text.split(","))


def read_class_file(text: str) -> tuple[str, ...]:
    """One class per line; blank lines and lines starting with ``#`` are skipped; validated."""
    return validate_classes([ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")])


def prompt_templates() -> tuple[Any, ...]:
    """The 80 prompt templates of CLIP's ImageNet zero-shot evaluation (callables ``name → text``)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(OPENAI_IMAGENET_TEMPLATES)


def class_text_embeddings(backbone, classes: Sequence[str], templates: Sequence[Any] | None = None) -> np.ndarray:
    """``t_c`` for every class, float32 ``[C, d]``, unit norm, read-only.

    Every template's embedding is L2-normalised, averaged over the templates and renormalised
    (docs/method.md §6). Class names are used as given (folder names' underscores should be replaced first).
    """
    import torch

    templates = tuple(templates) if templates is not None else prompt_templates()
    out = np.empty((len(classes), int(backbone.feature_dim)), dtype=np.float32)
    per_call = max(1, CLASSES_PER_CALL)
    for start in range(0, len(classes), per_call):
        group = classes[start:start + per_call]
        with torch.inference_mode():
            e = backbone.encode_text([t(name) for name in group for t in templates]).float()
            e = torch.nn.functional.normalize(e, dim=-1).reshape(len(group), len(templates), -1).mean(dim=1)
            out[start:start + len(group)] = torch.nn.functional.normalize(e, dim=-1).cpu().numpy()
    out.flags.writeable = False
    return out


class TextEmbeddingCache:
    """Class-name → ``t_c`` for one backbone, so a repeated class list costs nothing.

    Encoding 80 prompts through a CLIP text tower costs more than one image through the image
    tower, so the cache is what keeps analysing many images with the same classes cheap.
    Keyed by the exact name; bounded (cleared when full, which only costs re-encoding).
    """

    def __init__(self, backbone, max_entries: int = 20_000):
        self.backbone = backbone
        self.max_entries = int(max_entries)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, classes: Sequence[str]) -> np.ndarray:
        classes = validate_classes(classes)
        missing = [c for c in dict.fromkeys(classes) if c not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > self.max_entries:
                self._cache.clear()
            fresh = class_text_embeddings(self.backbone, missing)
            self._cache.update({c: fresh[i] for i, c in enumerate(missing)})
        out = np.stack([self._cache[c] for c in classes])
        out.flags.writeable = False
        return out
