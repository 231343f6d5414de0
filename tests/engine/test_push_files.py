"""`push` uploads only an export's own files, lists them first, and fails in one line offline (issue #13)."""

from test_cli_errors import assert_one_line_error, run_cli

from pipelines.runs.push import export_files

EXPORT = ["README.md", "added_tokens.json", "config.json", "generation_config.json", "merges.txt",
          "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
          "special_tokens_map.json", "spiece.model", "tokenizer.json", "tokenizer_config.json", "vocab.json",
          "vocab.txt"]
STRAY = [".env", "notes.txt", "optimizer.bin", "pytorch_model.bin", "training_args.bin"]


def _folder(root):
    folder = root / "export"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "model.safetensors").write_text("x")
    for name in EXPORT + STRAY:
        (folder / name).write_text("x")
    (folder / "config.json").write_text('{"model_type": "bert"}')  # the model card reads it
    return folder


def test_only_export_files_are_chosen(tmp_path):
    chosen, left = export_files(_folder(tmp_path))
    assert chosen == sorted(EXPORT)
    assert sorted(left) == sorted(STRAY + ["checkpoints/"])


def test_offline_push_lists_the_files_and_fails_in_one_line(tmp_path):
    proc = run_cli("push", str(_folder(tmp_path)), "--repo_id", "someone/model")  # HF_HUB_OFFLINE=1 (conftest)
    assert_one_line_error(proc, "push to someone/model", "cannot be reached", "HF_HUB_OFFLINE")
    listed = next(ln for ln in proc.stdout.splitlines() if ln.startswith("push: 14 files to someone/model: "))
    assert listed.split(": ", 2)[2].split(", ") == sorted(EXPORT)
    left = next(ln for ln in proc.stdout.splitlines() if ln.startswith("push: not uploaded"))
    assert all(name in left for name in (".env", "optimizer.bin", "checkpoints/"))
