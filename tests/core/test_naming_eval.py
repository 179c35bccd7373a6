"""The pure parts of the naming-quality benchmark (benchmarks/naming_eval.py): cut-out masks and
backdrops, binary mIoU, the name judge on a planted WordNet, duplicates, one model's run with a fake
analyzer."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.core.test_vocab_visual import write_wordnet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from naming_eval import (  # noqa: E402
    GREY,
    Judge,
    Photo,
    alpha_mask,
    backdrop,
    binary_miou,
    composite,
    constant_miou,
    duplicate_rate,
    evaluate,
    load_rgba,
    load_run,
    run_key,
    save_run,
    true_rank,
    usable_mask,
)
from wordnet_lite import WordNet  # noqa: E402


def test_alpha_mask_thresholds_at_128_and_opaque_photos_have_none():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 3] = [[0, 127, 128], [255, 200, 1]]
    assert alpha_mask(rgba).tolist() == [[False, False, True], [True, True, False]]
    rgba[..., 3] = 255
    assert alpha_mask(rgba) is None
    assert not usable_mask(None)
    assert not usable_mask(np.eye(40, dtype=bool))           # 2.5 % foreground: no usable mask
    assert usable_mask(np.eye(4, dtype=bool))                 # 25 %


def test_cutout_lies_on_grey_or_on_a_centre_crop(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (0, 0, 255, 128)
    out = composite(rgba, backdrop((2, 2)))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 1].tolist() == list(GREY)
    assert abs(int(out[0, 1, 2]) - 191) <= 1 and abs(int(out[0, 1, 0]) - 64) <= 1  # half blue, half grey
    # a photo source: its centre, scaled to cover the size (left fifth red, the rest green)
    photo = np.zeros((30, 150, 3), np.uint8)
    photo[:, :30] = (255, 0, 0)
    photo[:, 30:] = (0, 255, 0)
    Image.fromarray(photo).save(tmp_path / "bg.png")
    bg = backdrop((10, 10), tmp_path / "bg.png")
    assert bg.shape == (10, 10, 3) and (bg[..., 1] == 255).all()


def test_binary_miou_of_planted_masks():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True                                       # 4 foreground pixels
    assert binary_miou(np.where(mask, 0, 1), mask) == 1.0
    pred = np.ones((4, 4), np.uint8)
    pred[:2] = 0                                              # top two rows called the photo's class
    # foreground IoU 4 / 8, background IoU 8 / 12
    assert binary_miou(pred, mask) == pytest.approx((0.5 + 8 / 12) / 2)
    # any label other than the photo's class counts as background
    assert binary_miou(np.where(pred == 0, 0, 7), mask) == pytest.approx((0.5 + 8 / 12) / 2)
    with pytest.raises(ValueError):
        binary_miou(pred, mask[:3])


@pytest.fixture()
def judge(tmp_path):
    wn = WordNet(write_wordnet(tmp_path))
    return Judge(wn, {"cup", "cat", "spoon", "vessel"})


def test_judge_accepts_parents_siblings_and_description_words(judge):
    words = judge.words("A white cup with a spoon")
    assert judge.fits("vessel", "cup", words)                # hypernym, specific enough (depth 7)
    assert judge.fits("mugs", "cup", set())                  # sibling under "vessel", plural → lemma
    assert judge.fits("cup (3)", "cup", set())               # the duplicate number is ignored
    assert judge.fits("spoons", "cup", words)                # a word of the description
    assert not judge.fits("spoon", "cup", set())             # neither related nor described
    assert not judge.fits("artifact", "cup", set())          # related, but too near the top (depth 4)
    assert not judge.fits("cat", "cup", words)
    # 2 of the 4 strongest concepts fit
    assert judge.precision(["vessel", "cat", "mug", "freedom"], "cup", "a cup", [0, 1, 2, 3]) == 0.5


def test_concreteness_and_duplicates(judge):
    assert judge.is_concrete("cats (2)") and judge.is_concrete("Spoon")
    assert not judge.is_concrete("freedom")
    assert duplicate_rate(["cat", "Cat", "dog", "cat (2)"]) == 0.5
    assert duplicate_rate([]) == 0.0


def test_true_rank_counts_strictly_better_classes():
    assert true_rank(np.array([0.1, 0.5, 0.3]), 1) == 0
    assert true_rank(np.array([0.1, 0.5, 0.3]), 0) == 2
    assert true_rank(np.array([0.5, 0.5]), 1) == 0            # ties do not count against


class FakeAnalyzer:
    """Top-1 on the concept path, third on the opaque path; the concept path segments the left
    half (the true foreground), the opaque path only the left quarter."""

    def __init__(self):
        self.seen = []

    def analyze(self, rgb, classes, classify=True):
        self.seen.append((rgb.copy(), tuple(classes), classify))
        h, w = rgb.shape[:2]
        if len(classes) == 2:
            labels, opaque = np.ones((h, w), np.uint8), np.ones((h, w), np.uint8)
            labels[:, :w // 2] = 0
            opaque[:, :w // 4] = 0
            return SimpleNamespace(segmentation=SimpleNamespace(labels=labels, opaque_labels=opaque))
        logits = np.zeros(len(classes))
        logits[classes.index("cup")] = 5.0
        opaque = np.arange(len(classes), dtype=float)[::-1]  # class 0 best, "cup" (index 2) third
        return SimpleNamespace(concepts=[SimpleNamespace(concept=j) for j in (7, 3, 9)],
                               faithfulness=SimpleNamespace(fvu=0.25),
                               classification=SimpleNamespace(logits=logits, opaque_logits=opaque))


def test_evaluate_one_model_on_a_planted_cutout_and_photo(tmp_path):
    cut = np.zeros((8, 8, 4), np.uint8)
    cut[:, :4] = (200, 10, 10, 255)                           # left half opaque: the foreground
    Image.fromarray(cut, "RGBA").save(tmp_path / "cut.png")
    Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(tmp_path / "photo.png")
    photos = [Photo("a", "cup", "a cup", tmp_path / "cut.png"), Photo("b", "cup", "a cup", tmp_path / "photo.png")]
    assert constant_miou(photos) == 0.25                      # half foreground: all-bg IoU ½ and 0
    fake = FakeAnalyzer()
    run = evaluate(fake, photos, ["cat", "bowl", "cup"])
    assert load_rgba(tmp_path / "photo.png").shape == (8, 8, 4)
    # the cut-out is analysed twice (all classes, then [label, background]); the photo once
    assert [(c, k) for _, c, k in fake.seen] == [(("cat", "bowl", "cup"), True), (("cup", "background"), False),
                                                (("cat", "bowl", "cup"), True)]
    assert fake.seen[0][0][0, 7].tolist() == list(GREY)      # transparent pixels lie on grey
    assert run.top == ((7, 3, 9), (7, 3, 9)) and run.fvu.tolist() == [0.25, 0.25]
    assert run.accuracy(1) == 1.0 and run.accuracy(1, opaque=True) == 0.0 and run.accuracy(3, opaque=True) == 1.0
    assert run.miou.tolist() == [1.0]
    # opaque: foreground IoU 16 / 32, background IoU 32 / 48
    assert run.miou_opaque.tolist() == pytest.approx([(0.5 + 32 / 48) / 2])


def test_saved_runs_come_back_and_the_key_follows_the_bundle(tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(photo)
    run = evaluate(FakeAnalyzer(), [Photo("b", "cup", "a cup", photo)], ["cat", "bowl", "cup"])
    save_run(tmp_path / "run.npz", run)
    back = load_run(tmp_path / "run.npz")
    assert back.top == run.top and back.seconds == run.seconds and back.miou.size == 0
    assert back.rank.tolist() == run.rank.tolist() and back.fvu.tolist() == run.fvu.tolist()
    assert load_run(tmp_path / "missing.npz") is None
    bundle = tmp_path / "model.zip"

    def write_bundle(sae: bytes, names: bytes) -> None:
        with zipfile.ZipFile(bundle, "w") as z:
            z.writestr("sae.safetensors", sae)
            z.writestr("relations.safetensors", b"relations")
            z.writestr("names.json", names)

    write_bundle(b"one", b"cat")
    photos = [Photo("b", "cup", "a cup", photo)]
    key = run_key(bundle, "bb", photos, ["cup"], None)
    assert key == run_key(bundle, "bb", photos, ["cup"], None)
    assert key != run_key(bundle, "other backbone", photos, ["cup"], None)
    write_bundle(b"one", b"kitten")  # renamed: the analyses are the same
    assert key == run_key(bundle, "bb", photos, ["cup"], None)
    write_bundle(b"two", b"cat")
    assert key != run_key(bundle, "bb", photos, ["cup"], None)
