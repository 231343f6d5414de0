"""Every engine run writes one results.json: metrics, recipe, tokens, wall time, throughput, hardware,
package versions, git commit (issue #10); the keys of the original layout stay."""

import json
import os
import subprocess
from importlib import metadata

import pytest
from report_samples import sample_runs

from pipelines.runs.results import git_state, run_kind, throughput


def _results(label: str) -> dict:
    return json.loads((sample_runs() / label / "results.json").read_text())


def test_pretraining_run_writes_the_full_results_file():
    out = sample_runs() / "bert-tiny"
    r = _results("bert-tiny")
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    train = [x for x in records if "lr" in x]
    # the original layout, which other tests and users read
    assert r["recipe"] == "bert-tiny" and r["steps"] == 4 and r["world_size"] == 1 and r["global_batch"] == 16
    assert r["tokens"] == train[-1]["tokens"] > 0
    assert r["eval/loss"] == r["metrics"]["eval/loss"] == records[-1]["eval/loss"]
    assert r["format"] == "lmforge-results/1" and r["kind"] == "pretrain" and r["task"] == "bert-mlm-nsp"
    assert r["recipe_config"] == json.loads((out / "recipe.json").read_text())
    assert r["exports"] == [str(out / "final")]
    assert 0 < r["train_time_s"] <= r["wall_time_s"] < 600
    assert r["tokens_per_sec"] == pytest.approx(r["tokens"] / r["train_time_s"], rel=1e-6)
    assert r["last_tokens_per_sec"] == train[-1]["tokens_per_sec"]
    hw = r["hardware"]
    assert hw["cpu_count"] == os.cpu_count() and hw["device"] == "cpu" and hw["num_processes"] == 1
    assert hw["gpu_name"] is None and hw["gpu_count"] == 0 and hw["device_name"]
    for name in ("torch", "transformers", "accelerate", "datasets", "tokenizers", "lmforge"):
        assert r["packages"][name] == metadata.version(name)


def test_git_commit_is_the_checkout_of_the_working_directory():
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)  # the sample run's cwd
    if head.returncode != 0:
        pytest.skip("the tests do not run from a git checkout")
    r = _results("bert-tiny")
    assert r["git_commit"] == head.stdout.strip() and isinstance(r["git_dirty"], bool)


def test_git_commit_is_null_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no checkout above tmp either
    assert git_state() == {"git_commit": None, "git_dirty": None}
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert git_state() == {"git_commit": None, "git_dirty": None}


def test_finetuning_runs_write_it_too():
    for seed in (42, 43):
        r = _results(f"finetune/tiny-sst2/sst2/seed-{seed}")
        assert r["kind"] == "finetune" and r["task"] == "glue" and r["steps"] == 3
        assert r["recipe_config"]["training"]["seed"] == seed
        assert 0.0 <= r["metrics"]["eval/accuracy"] <= 1.0 and r["tokens"] > 0


def test_kind_of_each_task_family():
    assert [run_kind(t) for t in ("bert-mlm-nsp", "electra-rtd", "glue", "glue-t5", "seq2seq", "distill-kd",
                                  "distill-tinybert")] == \
        ["pretrain", "pretrain", "finetune", "finetune", "finetune", "distill", "distill"]


def test_throughput_counts_each_logged_window_once():
    # windows of 100 tokens at 50 tok/s (2 s) and 300 tokens at 100 tok/s (3 s); eval records have no tokens/s
    records = [{"step": 1, "tokens": 100, "tokens_per_sec": 50.0}, {"step": 1, "eval/loss": 2.0},
               {"step": 2, "tokens": 400, "tokens_per_sec": 100.0, "mfu": 0.3}]
    t = throughput(records)
    assert t["train_time_s"] == pytest.approx(5.0) and t["tokens_per_sec"] == pytest.approx(80.0)
    assert t["last_tokens_per_sec"] == 100.0 and t["mfu"] == 0.3
    assert throughput([]) == {"train_time_s": None, "tokens_per_sec": None, "last_tokens_per_sec": None, "mfu": None}
