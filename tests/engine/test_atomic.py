"""Atomic publishing (pipelines/atomic.py): a path under its final name is complete; a failed write
leaves the previous content and no temp behind."""

import json

import pytest

from pipelines.atomic import atomic_folder, atomic_write_json, atomic_write_text


def test_file_is_replaced_whole_and_no_temp_is_left(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_failed_file_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "corpus.txt"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # fails inside the write
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["corpus.txt"]


def test_folder_is_published_on_success_and_untouched_on_failure(tmp_path):
    final = tmp_path / "final"
    with atomic_folder(final) as tmp:
        (tmp / "model.safetensors").write_text("v1")
        assert not final.exists()  # invisible until complete
    assert (final / "model.safetensors").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("crash mid-export")
    assert (final / "model.safetensors").read_text() == "v1"
    with atomic_folder(final) as tmp:
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in final.iterdir()] == ["config.json"]  # the new folder replaces the old one
    assert [p.name for p in tmp_path.iterdir()] == ["final"]  # no temp or old folder left
