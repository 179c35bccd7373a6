"""The catalog's thumbnails: read on demand from a zip or a folder bundle, missing ones are None."""

from __future__ import annotations

import zipfile

from insight_desktop.core.concepts.bundle import ConceptModel
from insight_desktop.core.concepts.concept_catalog import BundleThumbnails
from insight_desktop.core.paths import demo_model_path


def test_thumbnails_are_read_on_demand_from_zip_and_folder_bundles(tmp_path):
    demo = demo_model_path()
    model = ConceptModel.load(demo, eager=False)
    count = model.manifest.thumbnails["count"]
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(demo) as z:
        z.extractall(folder)
    for source in (demo, folder):
        thumbs = BundleThumbnails(source)
        ids = list(thumbs)
        assert len(thumbs) == len(ids) == count > 0
        assert thumbs[ids[0]] == model.thumbnail(ids[0]) and thumbs[ids[-1]][:2] == b"\xff\xd8"  # JPEG
        assert thumbs.get(model.n_concepts + 5) is None and (model.n_concepts + 5) not in thumbs
    gone = BundleThumbnails(tmp_path / "moved-away.zip")
    assert gone.get(ids[0]) is None and len(gone) == 0  # a bundle gone since loading shows no pictures
