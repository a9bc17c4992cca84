"""A file written through tunesmith.atomic appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith import atomic


def test_a_write_that_fails_leaves_the_previous_file_and_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_file(target) as partial:
        partial.write_text("half of the ne")
        assert target.read_text() == "old"  # a reader meanwhile sees the whole old file
        raise RuntimeError("the disk filled up")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_finished_write_replaces_the_file_in_one_move(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.html"
    atomic.write_text(target, "<p>new</p>")
    assert target.read_text() == "<p>new</p>"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]
