"""The score book keeps each window's median update norm with the scores: the next window's
reference norm (criteria v4) survives a restart, a re-closed window reads the same one,
and a damaged value is a clear error."""

from __future__ import annotations

import json

import pytest

from protocol import criteria
from validator.scores import NORM_WINDOWS, ScoreBook


def _verdict(uid: int) -> criteria.Verdict:
    return criteria.Verdict(uid, 1.0, "ok", None, 0.01, 5.0)


def test_previous_norm_is_the_last_earlier_windows_and_survives_a_restart(tmp_path):
    path = tmp_path / "scores.json"
    book = ScoreBook(path)
    assert book.previous_norm(0) is None  # first window: its own median, at the close
    book.update(0, {1: _verdict(1)}, [1], {1: "hk1"}, median_norm=0.5)
    book.update(1, {}, [], {1: "hk1"}, median_norm=None)  # nobody submitted: no norm of its own
    book.update(2, {1: _verdict(1)}, [1], {1: "hk1"}, median_norm=0.25)
    assert [book.previous_norm(w) for w in (0, 1, 2, 3, 9)] == [None, 0.5, 0.5, 0.25, 0.25]
    again = ScoreBook(path)
    assert again.median_norms == {0: 0.5, 2: 0.25} and again.previous_norm(2) == 0.5  # re-closing 2
    for w in range(3, 3 + NORM_WINDOWS):
        again.update(w, {}, [], {}, median_norm=float(w))
    assert sorted(again.median_norms) == list(range(3, 3 + NORM_WINDOWS))


@pytest.mark.parametrize("bad", ["NaN", -1.0, 0.0, "x"])
def test_a_damaged_norm_names_the_file(tmp_path, bad):
    path = tmp_path / "scores.json"
    ScoreBook(path).update(0, {}, [], {}, median_norm=1.0)
    doc = json.loads(path.read_text())
    doc["median_norms"] = {"0": bad}
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="scores.json"):
        ScoreBook(path)
