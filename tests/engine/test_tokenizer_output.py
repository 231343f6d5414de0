"""`tokenizer --output_dir DIR` never deletes what lmforge did not write (issue #13)."""

import pytest
from test_cli_errors import assert_one_line_error, run_cli

from pipelines.errors import LmforgeError
from tokenizer import build_tokenizer
from tokenizer.publish import MARKER, check_tokenizer_folder

LINES = [f"sentence number {i} of a tiny corpus about values and objects" for i in range(300)]


def test_folder_with_other_files_is_refused_before_training(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = run_cli("tokenizer", "--family", "bert", "--corpus", str(corpus), "--vocab_size", "100",
                   "--output_dir", str(out))
    assert_one_line_error(proc, str(out), "notes.txt", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_only_the_tokenizer_files(tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "tokenizer.json").write_text("not at the top: not a tokenizer file of this folder")
    (out / "merges.txt").write_text("stale")  # a tokenizer file of an earlier (BPE) tokenizer
    with pytest.raises(LmforgeError, match="--overwrite"):
        build_tokenizer("bert", LINES, 100, out)
    build_tokenizer("bert", LINES, 100, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "sub" / "tokenizer.json").read_text().startswith("not at the top")
    assert not (out / "merges.txt").exists() and (out / MARKER).exists()
    assert AutoTokenizer.from_pretrained(out)("sentence number 3")["input_ids"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temp folder left
    build_tokenizer("bert", LINES, 100, out, overwrite=True)  # again: still only the tokenizer files change
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_tokenizer_lmforge_did_not_write_is_not_replaced(tmp_path):
    out = tmp_path / "downloaded"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")
    (out / "tokenizer_config.json").write_text("{}")
    with pytest.raises(LmforgeError, match="holds a tokenizer lmforge did not write"):
        check_tokenizer_folder(out)
    check_tokenizer_folder(out, overwrite=True)
    check_tokenizer_folder(tmp_path / "new")  # a new folder, or an empty one
