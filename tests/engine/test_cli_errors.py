"""Bad input ends in ONE clear line on stderr, exit status 2, and nothing left looking complete."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY_BERT


def run_cli(*args, cwd=REPO):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("lmforge: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in errors[0], errors[0]


@pytest.mark.parametrize("args, words", [
    (["pretrain", "bert-tinyy"], ["unknown recipe", "bert-tiny"]),
    (["pretrain", "bert-tiny", "training.learning_rte=1"], ["learning_rte"]),
    (["pretrain", "bert-tiny", "data.corpus=/no/such/corpus.txt"], ["/no/such/corpus.txt", "not found"]),
    (["pretrain", "bert-tiny", "task=bert-mlm-nspp"], ["unknown task", "bert-mlm-nspp"]),
    (["finetune", "--task", "glue/sst2", "--model", "runs/none/final"], ["runs/none/final"]),
])
def test_bad_arguments(args, words, tmp_path):
    assert_one_line_error(run_cli(*args, f"training.output_dir={tmp_path}") if args[0] == "pretrain"
                          else run_cli(*args), *words)


def test_out_of_range_value_fails_before_any_tokenizer_is_trained(tmp_path):
    import time

    start = time.perf_counter()
    proc = run_cli("pretrain", "bert-tiny", "training.per_device_train_batch_size=0", f"training.output_dir={tmp_path}")
    assert_one_line_error(proc, "training.per_device_train_batch_size", "0")
    assert time.perf_counter() - start < 60  # no corpus read, no tokenizer trained (about 2 s)
    assert not any(tmp_path.iterdir())


def test_unknown_glue_task(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    assert_one_line_error(run_cli("finetune", "--task", "glue/sst3", "--model", str(model)), "sst3")


def test_empty_corpus_leaves_no_export(tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n\n   \n")
    out = tmp_path / "run"
    proc = run_cli("pretrain", "bert-tiny", *TINY_BERT, f"data.corpus={corpus}", f"training.output_dir={out}")
    assert_one_line_error(proc, str(corpus), "no text")
    assert not (out / "final").exists() and not (out / "results.json").exists()


def test_corpus_without_document_boundaries_for_nsp(tmp_path):
    corpus = tmp_path / "one_sentence_docs.txt"
    corpus.write_text("".join(f"Sentence number {i} stands alone here.\n\n" for i in range(50)))
    proc = run_cli("pretrain", "bert-tiny", *TINY_BERT, f"data.corpus={corpus}",
                   f"training.output_dir={tmp_path / 'r'}")
    assert_one_line_error(proc, "2 sentences")


def test_missing_glue_dir_file(tmp_path, glue_dir):
    import shutil

    partial = tmp_path / "glue"
    shutil.copytree(glue_dir / "RTE", partial / "RTE")
    (partial / "RTE" / "dev.tsv").unlink()
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    out = tmp_path / "out"  # not the default runs/finetune/... of the working copy
    proc = run_cli("finetune", "--task", "glue/rte", "--model", str(model), "--glue_dir", str(partial),
                   "--output_dir", str(out))
    assert_one_line_error(proc, "dev.tsv")
    assert not (out / "rte" / "final").exists() and not (out / "glue_results.json").exists()


def test_push_offline_is_one_line(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    assert_one_line_error(run_cli("push", str(folder), "--repo_id", "someone/model"), "someone/model")
    assert_one_line_error(run_cli("push", str(tmp_path), "--repo_id", "someone/model"), "not a complete export")
