"""Class lists and their text embeddings (docs/method.md §6: the 80 ImageNet templates, averaged).

A class list is validated once, up front, so a typo never costs a backbone pass: it must not be
empty, no name may be blank, and no name may repeat (compared case-insensitively, since
"Dog" and "dog" give near-identical prompts and would split one region in two).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

#: classes whose prompts go to the text tower together (bounds the [prompts, d] batch; few enough
#: that stopping and the progress bar answer within a second while a long class list is encoded)
CLASSES_PER_CALL = 8


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


#: CLIP's 80 ImageNet zero-shot templates (open_clip's ``OPENAI_IMAGENET_TEMPLATES``, in its order;
#: a test checks they agree), kept here so that finding a cached class costs no open_clip import
IMAGENET_TEMPLATES: tuple[str, ...] = (
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.', 'a bad photo of the {}.',
    'a cropped photo of the {}.', 'a tattoo of a {}.', 'the embroidered {}.', 'a photo of a hard to see {}.',
    'a bright photo of a {}.', 'a photo of a clean {}.', 'a photo of a dirty {}.', 'a dark photo of the {}.',
    'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.', 'a painting of the {}.',
    'a painting of a {}.', 'a pixelated photo of the {}.', 'a sculpture of the {}.',
    'a bright photo of the {}.', 'a cropped photo of a {}.', 'a plastic {}.', 'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.', 'a photo of the {}.',
    'a good photo of the {}.', 'a rendering of the {}.', 'a {} in a video game.', 'a photo of one {}.',
    'a doodle of a {}.', 'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.', 'a photo of the clean {}.',
    'a photo of a large {}.', 'a rendition of a {}.', 'a photo of a nice {}.', 'a photo of a weird {}.',
    'a blurry photo of a {}.', 'a cartoon {}.', 'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.',
    'a pixelated photo of a {}.', 'itap of the {}.', 'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.', 'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.',
    'a photo of the large {}.', 'a black and white photo of a {}.', 'the plushie {}.', 'a dark photo of a {}.',
    'itap of a {}.', 'graffiti of the {}.', 'a toy {}.', 'itap of my {}.', 'a photo of a cool {}.',
    'a photo of a small {}.', 'a tattoo of the {}.',
)


def prompt_templates() -> tuple[Any, ...]:
    """The 80 prompt templates of CLIP's ImageNet zero-shot evaluation (callables ``name → text``)."""
    return tuple(t.format for t in IMAGENET_TEMPLATES)


def class_text_embeddings(backbone, classes: Sequence[str], templates: Sequence[Any] | None = None, *,
                          should_stop: Callable[[], bool] | None = None,
                          progress: Callable[[float], None] | None = None) -> np.ndarray:
    """``t_c`` for every class, float32 ``[C, d]``, unit norm, read-only.

    Every template's embedding is L2-normalised, averaged over the templates and renormalised
    (docs/method.md §6). Class names are used as given (folder names' underscores should be replaced first).
    ``should_stop()`` is asked between groups of classes (raises :class:`~..errors.StoppedByUser`);
    ``progress(fraction)`` is told after each group.
    """
    import torch

    templates = tuple(templates) if templates is not None else prompt_templates()
    out = np.empty((len(classes), int(backbone.feature_dim)), dtype=np.float32)
    per_call = max(1, CLASSES_PER_CALL)
    for start in range(0, len(classes), per_call):
        if should_stop is not None and should_stop():
            from ..errors import StoppedByUser

            raise StoppedByUser("encoding the class prompts was stopped")
        group = classes[start:start + per_call]
        with torch.inference_mode():
            e = backbone.encode_text([t(name) for name in group for t in templates]).float()
            e = torch.nn.functional.normalize(e, dim=-1).reshape(len(group), len(templates), -1).mean(dim=1)
            out[start:start + len(group)] = torch.nn.functional.normalize(e, dim=-1).cpu().numpy()
        if progress is not None:
            progress((start + len(group)) / len(classes))
    out.flags.writeable = False
    return out


class TextEmbeddingCache:
    """Class-name → ``t_c`` for one backbone, so a repeated class list costs nothing.

    Encoding 80 prompts through a text tower costs more than one image through the image tower,
    and loading the text tower costs seconds more; so names are looked up in memory, then on
    disk (:class:`.prompt_cache.PromptEmbeddingStore`: the user cache, then the backbone's
    shipped ``text_embedding_seeds``), and only the rest is encoded (and stored). A backbone
    that loads its text tower lazily (the demo's) then never loads it for cached classes.
    ``cache_dir``: the on-disk folder (None: the user cache dir; ``False``: memory only).
    The memory part is keyed by the exact name and bounded (cleared when full).
    """

    def __init__(self, backbone, max_entries: int = 20_000, cache_dir: str | os.PathLike | None | bool = None):
        self.backbone = backbone
        self.max_entries = int(max_entries)
        self._cache: dict[str, np.ndarray] = {}
        self.store = None
        if cache_dir is not False:
            from .prompt_cache import PromptEmbeddingStore, templates_digest

            folder = None if cache_dir is None or isinstance(cache_dir, bool) else cache_dir
            self.store = PromptEmbeddingStore(
                str(backbone.id), templates_digest(prompt_templates()), int(backbone.feature_dim), folder=folder,
                seeds=getattr(backbone, "text_embedding_seeds", ()))

    def __call__(self, classes: Sequence[str], *, should_stop: Callable[[], bool] | None = None,
                 progress: Callable[[float], None] | None = None) -> np.ndarray:
        classes = validate_classes(classes)
        got = {c: self._cache[c] for c in dict.fromkeys(classes) if c in self._cache}
        missing = [c for c in dict.fromkeys(classes) if c not in got]
        if missing and self.store is not None:
            got.update(self._remember(self.store.get_many(missing)))
            missing = [c for c in missing if c not in got]
        if missing:
            fresh = class_text_embeddings(self.backbone, missing, should_stop=should_stop, progress=progress)
            encoded = {c: fresh[i] for i, c in enumerate(missing)}
            if self.store is not None:
                self.store.put_many(encoded)
            got.update(self._remember(encoded))
        out = np.stack([got[c] for c in classes])
        out.flags.writeable = False
        return out

    def _remember(self, embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(self._cache) + len(embeddings) > self.max_entries:
            self._cache.clear()
        self._cache.update(embeddings)
        return embeddings
