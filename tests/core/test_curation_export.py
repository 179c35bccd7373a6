"""Rejected concepts folded into one exact bar; verdicts exported as CSV/JSON; a curated bundle that loads."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from insight_desktop.core.analysis_cache import model_identity
from insight_desktop.core.concepts.bundle import ConceptModel
from insight_desktop.core.curation import (
    REJECTED_BAR,
    REJECTED_LABEL,
    Curation,
    CurationError,
    fold_rejected,
    name_with_rejected,
)
from insight_desktop.core.curation.export import export_verdicts, write_curated_bundle
from insight_desktop.core.tasks import probe_classify, zero_shot
from insight_desktop.core.tasks.codes import ConceptContribution
from tests.core.bundle_kit import tiny_members, write_zip


def test_rejected_concepts_fold_into_one_bar_and_the_sum_stays_exact():
    # dyadic values: every partial sum is exact, so the totals must be equal to the bit
    values = {3: 2.5, 8: -0.75, 11: 1.125, 20: 0.0625, 31: -3.0, 40: 0.5}
    contributions = [ConceptContribution(j, v) for j, v in values.items()]
    folded = fold_rejected(contributions, {8, 20, 40, 99})
    assert folded.n_rejected == 3 and folded.rejected_value == -0.75 + 0.0625 + 0.5
    assert [c.concept for c in folded.kept] == [3, 11, 31]
    bars = folded.bars()
    assert [(c.concept, c.value) for c in bars] == [(3, 2.5), (11, 1.125), (REJECTED_BAR, -0.1875), (31, -3.0)]
    assert sum(c.value for c in bars) == sum(values.values()) == folded.total
    assert fold_rejected(contributions, set()).bars() == tuple(sorted(contributions, key=lambda c: -c.value))
    name = name_with_rejected(lambda j: f"c{j}")
    assert name(REJECTED_BAR) == REJECTED_LABEL and name(3) == "c3"


def test_folding_a_real_explanation_keeps_logit_equal_bars_plus_bias():
    rng = np.random.default_rng(3)
    d, n, C = 8, 40, 3
    concepts = np.sort(rng.choice(500, n, replace=False))
    acts = rng.random(n).astype(np.float32) + 0.1
    text = rng.standard_normal((C, d))
    results = [zero_shot(concepts, acts, rng.standard_normal((n, d)), rng.standard_normal(d),
                         text / np.linalg.norm(text, axis=1, keepdims=True), list("abc")),
               probe_classify(rng.standard_normal((C, 500)), list("abc"), concepts, acts)]
    rejected = set(concepts[::3].tolist())
    for result in results:
        for k in range(C):
            why = result.explain(k)
            folded = fold_rejected(why.contributions, rejected)
            before = math.fsum(c.value for c in why.contributions)
            after = math.fsum(c.value for c in folded.bars())
            assert folded.n_rejected == sum(c.concept in rejected for c in why.contributions) > 0
            assert after == pytest.approx(before, rel=0, abs=1e-12 * max(1.0, abs(before)))
            assert after + why.bias == pytest.approx(why.logit, abs=1e-9)
            assert not any(c.concept in rejected for c in folded.kept)


def sample(n=12):
    c = Curation("ab" * 32, n, user="alice", model_label="m.zip")
    c.accept([0])
    c.rename(1, "=HYPERLINK(evil)")
    c.reject([2])
    c.note(2, "-2 is no formula, +cmd is")
    return c


class Names:
    def display_name(self, i):
        return f"word{i}"


def test_verdicts_export_as_formula_safe_csv_and_as_json(tmp_path):
    c = sample()
    export_verdicts(c, tmp_path / "v.csv", Names())
    rows = list(csv.DictReader(open(tmp_path / "v.csv", encoding="utf-8")))
    assert len(rows) == 12 and list(rows[0]) == ["concept", "status", "name", "model_name", "note", "by", "at"]
    assert rows[1]["name"] == "'=HYPERLINK(evil)" and rows[1]["status"] == "renamed"
    assert rows[2]["note"] == "'-2 is no formula, +cmd is" and rows[2]["name"] == "word2"
    assert rows[5]["status"] == "unreviewed" and rows[5]["by"] == ""
    export_verdicts(c, tmp_path / "v.json", all_concepts=False)
    d = json.loads((tmp_path / "v.json").read_text())
    assert d["format"] == "insight-curation-verdicts" and [r["concept"] for r in d["rows"]] == [0, 1, 2]
    assert d["rows"][1]["name"] == "=HYPERLINK(evil)" and d["progress"]["renamed"] == 1
    with pytest.raises(CurationError, match="use .csv or .json"):
        export_verdicts(c, tmp_path / "v.xlsx")


def write_folder(path, members):
    for name, data in members.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


@pytest.mark.parametrize("from_zip, as_zip", [(True, True), (True, False), (False, True)])
def test_a_curated_bundle_loads_with_the_new_names_statuses_and_provenance(tmp_path, from_zip, as_zip):
    source = (write_zip(tmp_path / "model.zip", tiny_members()) if from_zip
              else write_folder(tmp_path / "model", tiny_members()))
    model = ConceptModel.load(source)
    identity, n = model_identity(model.manifest), model.n_concepts
    model.close()
    c = Curation(identity, n, user="alice", model_label="model.zip")
    c.rename(3, "coffee cup")
    c.reject([4])
    c.note(4, "noise")
    out = write_curated_bundle(source, c, tmp_path / ("curated.zip" if as_zip else "curated"))
    curated = ConceptModel.load(out)
    try:
        assert curated.names.display_name(3) == "coffee cup" and curated.names.display_name(4) == "word4"
        assert curated.names.names[3] == "word3"                       # the automatic name is kept
        assert model_identity(curated.manifest) == identity            # same model: same analyses, same curation
        assert curated.manifest.provenance["curation"]["user"] == "alice"
        assert curated.manifest.provenance["images"] == 3               # the original provenance stays
        assert curated.thumbnail(5) == b"\xff\xd8j5"                     # every other member copied
    finally:
        curated.close()
    names = json.loads((out / "names.json").read_text() if not as_zip else
                       __import__("zipfile").ZipFile(out).read("names.json"))
    entry = {e["index"]: e for e in names["concepts"]}
    assert entry[4]["status"] == "rejected" and entry[4]["note"] == "noise" and entry[0]["status"] == "unreviewed"
    assert names["curation"]["progress"]["rejected"] == 1
    with pytest.raises(CurationError, match="exists"):
        write_curated_bundle(source, c, out)
    other = Curation("ef" * 32, n, user="alice")
    with pytest.raises(CurationError, match="not of the concept model"):
        write_curated_bundle(source, other, tmp_path / "x.zip")


def test_the_catalog_opens_the_same_curation_as_its_model(tmp_path, monkeypatch):
    """The app opens a curation from the catalog the worker made (no second read of the bundle):
    the same identity, so the same file, as the model itself — and a curated copy is the same model."""
    from insight_desktop.core.concepts.concept_catalog import catalog_of
    from insight_desktop.core.curation.store import curation_for

    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path / "data"))
    model = ConceptModel.load(write_zip(tmp_path / "model.zip", tiny_members()))
    try:
        catalog = catalog_of(model)
        assert catalog.model_identity == model.model_identity == model_identity(model.manifest)
        assert len(catalog.model_identity) == 64
        mine = curation_for(catalog, user="alice")
        assert mine.path == curation_for(model, user="alice").path and mine.n_concepts == model.n_concepts
    finally:
        model.close()
    mine.rename(2, "mug")
    mine.save()
    assert curation_for(model, user="alice").names() == {2: "mug"}
