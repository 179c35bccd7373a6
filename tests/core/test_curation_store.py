"""The curation file: round trip, where it lives, validation of foreign files, killing the process while saving."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from insight_desktop.core.curation import (
    REJECTED,
    Curation,
    CurationError,
    CurationFormatError,
    CurationModelError,
    default_path,
    load_curation,
)
from insight_desktop.core.curation.store import MAX_FILE_BYTES

IDENTITY = "cd" * 32


def sample() -> Curation:
    c = Curation(IDENTITY, 20, user="alice", model_label="demo.zip")
    c.accept(range(5))
    c.rename(6, "coffee cup")
    c.reject([7])
    c.note(7, 'fires on "JPEG" artefacts\nsecond line, ünïcode')
    c.flag([8])
    return c


def test_a_curation_reads_back_exactly_one_concept_per_line(tmp_path):
    c = sample()
    path = c.save(tmp_path / "a.insight-curation.json")
    back = load_curation(path)
    assert dict(back.records) == dict(c.records)
    assert (back.model_identity, back.n_concepts, back.user, back.model_label) == (IDENTITY, 20, "alice", "demo.zip")
    assert back.path == path
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 1 + 8 + 1           # header, "concepts": [, one line per record, ]}
    assert json.loads(lines[7].rstrip(",")) == {"id": 6, "status": "renamed", "name": "coffee cup", "by": "alice",
                                    "at": c.review(6).at}
    assert json.loads(path.read_text())["progress"] == {"unreviewed": 12, "accepted": 5, "renamed": 1,
                                                        "rejected": 1, "flagged": 1}
    # another user opening my file keeps my records, and stamps their own changes with their name
    theirs = load_curation(path, user="bob")
    theirs.reject([0])
    assert theirs.review(0).by == "bob" and theirs.review(1).by == "alice"


def test_the_file_is_per_model_identity_and_per_user_under_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHT_DATA_DIR", str(tmp_path))
    assert default_path(IDENTITY, "alice") == tmp_path / "curations" / IDENTITY / "alice.insight-curation.json"
    odd = default_path(IDENTITY, "a/b c")
    assert odd.parent == tmp_path / "curations" / IDENTITY and odd.name.startswith("a_b_c-")
    assert odd != default_path(IDENTITY, "a_b_c")
    with pytest.raises(CurationError):
        default_path("../etc", "alice")


def test_a_file_of_another_model_is_refused(tmp_path):
    path = sample().save(tmp_path / "c.json")
    with pytest.raises(CurationModelError, match="another concept model"):
        load_curation(path, model_identity="ef" * 32)
    with pytest.raises(CurationModelError, match="curates 20 concepts, the model has 21"):
        load_curation(path, model_identity=IDENTITY, n_concepts=21)


def _doc() -> dict:
    return json.loads(sample().to_bytes())


def _with(path: Path, change) -> Path:
    d = _doc()
    change(d)
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something-else"), "not an Insight Desktop curation file"),
    (lambda d: d.update(version=2), "newer Insight Desktop"),
    (lambda d: d.update(version="1"), "'version' must be a whole number"),
    (lambda d: d.pop("model"), "'model' is missing"),
    (lambda d: d["model"].update(identity="../x"), "hexadecimal model identity"),
    (lambda d: d["model"].update(n_concepts=0), "'model.n_concepts' must be between"),
    (lambda d: d["concepts"][0].update(id=20), "'concepts\\[0\\].id' must be between 0 and 19"),
    (lambda d: d["concepts"][1].update(id=0), "concept 0 is listed twice"),
    (lambda d: d["concepts"][0].update(status="great"), "must be one of unreviewed"),
    (lambda d: d["concepts"][5].update(name="x" * 201), "more than the 200 allowed"),
    (lambda d: d["concepts"][5].update(name="two\nlines"), "one line of text"),
    (lambda d: d["concepts"][5].pop("name"), "concept 6 is 'renamed' but lacks a name"),
    (lambda d: d["concepts"][0].update(note=12), "must be a string, not a whole number"),
    (lambda d: d.update(concepts={"0": {}}), "'concepts' must be a list"),
    (lambda d: d.update(concepts=[[]] * 3), "concepts\\[0\\]. must be an object"),
])
def test_damaged_or_crafted_files_give_a_clear_curation_error(tmp_path, change, message):
    path = _with(tmp_path / "bad.json", change)
    with pytest.raises(CurationFormatError, match=message):
        load_curation(path)


@pytest.mark.parametrize("data, message", [
    (b"", "is empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"format": "insight-curation", "version": 1, "concepts": [', "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b"[1, 2]", "must be an object, not a list"),
])
def test_files_that_are_not_json_objects_give_a_clear_curation_error(tmp_path, data, message):
    (tmp_path / "bad.json").write_bytes(data)
    with pytest.raises(CurationFormatError, match=message):
        load_curation(tmp_path / "bad.json")


def test_a_huge_or_missing_file_is_refused_before_reading_it_all(tmp_path):
    with pytest.raises(CurationError, match="cannot read the curation file"):
        load_curation(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 10)
    with pytest.raises(CurationFormatError, match="more than the"):
        load_curation(big)


def test_saving_where_it_cannot_write_is_a_curation_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CurationError, match="cannot save the curation"):
        sample().save(tmp_path / "file" / "c.json")
    with pytest.raises(CurationError, match="has no file yet"):
        sample().save()


# -- killed while saving ---------------------------------------------------------------------------
N, NOTE_PAD = 64, "x" * 3000   # ≈ 200 kB per save: a kill often lands inside one
CHILD = textwrap.dedent(f"""
    import os, sys, time
    from insight_desktop.core.curation import Curation, load_curation
    path, log, start, hang = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = load_curation(path) if start else Curation({IDENTITY!r}, {N}, user="child")
    with open(log, "a") as fh:
        def stuck(*args):  # hangs inside a save, at a chosen step, after saying so
            fh.write("H\\n")
            fh.flush()
            time.sleep(600)
        i = start
        while True:
            if hang != "none" and i == start + 3:
                setattr(os, hang, stuck)
            c.rename(i % {N}, f"n{{i}}")
            c.note((7 * i) % {N}, f"note {{i}} " + {NOTE_PAD!r})
            if i % 5 == 0:
                c.reject([(3 * i) % {N}])
            c.save(path)
            fh.write(f"{{i}}\\n")   # reported only after save() returned
            fh.flush()
            i += 1
""")


def expected(s: int) -> dict[int, tuple]:
    """(status, name, note) of every concept after iterations 0 … s of the child's loop."""
    state: dict[int, list] = {}
    for i in range(s + 1):
        r = state.setdefault(i % N, ["unreviewed", None, ""])
        r[1] = f"n{i}"
        r[0] = "renamed" if r[0] in ("unreviewed", "accepted") else r[0]
        state.setdefault((7 * i) % N, ["unreviewed", None, ""])[2] = f"note {i} " + NOTE_PAD
        if i % 5 == 0:
            state.setdefault((3 * i) % N, ["unreviewed", None, ""])[0] = REJECTED
    return {j: tuple(v) for j, v in state.items()}


def log_lines(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []  # complete lines only


def completed(log: Path) -> int:
    saves = [int(v) for v in log_lines(log) if v.isdigit()]
    return saves[-1] if saves else -1


@pytest.mark.parametrize("hang", ["none", "fsync", "replace"])
def test_killing_the_process_while_it_saves_never_loses_a_completed_save(tmp_path, hang):
    """SIGKILL at random points (seeded) of a loop of changes and saves; with ``hang``, also at
    once while a save is stuck in that step (the temporary file written but not synced, or
    synced but not yet renamed). The file is always readable and holds the last reported save."""
    path, log = tmp_path / "c.insight-curation.json", tmp_path / "saves.log"
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    start, rounds = 0, 6 if hang == "none" else 2
    for _ in range(rounds):
        before, hangs = completed(log), log_lines(log).count("H")
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(log), str(start), hang], env=env,
                                 stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while completed(log) <= before or (hang != "none" and log_lines(log).count("H") == hangs):
                assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
                assert time.monotonic() < deadline, "the child did not get there in 2 minutes"
                time.sleep(0.01)
            if hang == "none":
                time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        last = completed(log)
        c = load_curation(path)  # never unreadable
        got = {j: r.verdict() for j, r in c.records.items()}
        if hang != "none":  # killed inside the save after ``last``: that save never happened
            assert got == expected(last)
            assert list(tmp_path.glob(".c.insight-curation.json.*.tmp"))  # what the killed save left
        # the file holds the last reported save, or the one after it (saved, killed before reporting)
        assert got in (expected(last), expected(last + 1)), f"lost changes after save {last}"
        start = last + 1 if got == expected(last) else last + 2
    assert start > rounds
