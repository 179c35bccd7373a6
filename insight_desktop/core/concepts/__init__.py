"""The concept model: what the SAE's concepts are, how they relate, what they are called.

* :mod:`.codes` — sparse concept codes of a batch of tokens (:class:`~.codes.SparseCodes`);
* :mod:`.statistics` and :mod:`.compute` — the relation pass: streaming statistics → relations;
* :mod:`.relations` — the :class:`~.relations.Relations` value (parents, display tree, μ) and its file;
* :mod:`.vocab` and :mod:`.naming` — vocabularies, their text embeddings, concept names;
* :mod:`.names` — the one place names are looked up: the model's names plus the user's edits;
* :mod:`.bundle` — a concept model on disk (SAE + relations + names + thumbnails);
* :mod:`.bundle_schema` and :mod:`.bundle_parts` — typed, size-limited reading of a bundle's JSON and
  members (bundles come from anyone);
* :mod:`.thumbnails` — the top patches of every concept as small pictures;
* :mod:`.concept_catalog` — what the GUI shows of a concept model, read once per model.
"""
