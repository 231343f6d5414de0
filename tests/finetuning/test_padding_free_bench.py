"""`python -m bench padding-free` compares at equal batching: the three sides' command lines carry the
same batch, rows, seed and length grouping, and differ only in the layout (lmforge padded / packed)
or the trainer; its summary divides by the Trainer and compares the median dev accuracy."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import padding_free as bench  # noqa: E402
from bench.sides import Context  # noqa: E402

GLUE = {"task": "sst2", "name": "SST-2", "dir": "/glue", "model": "/m", "examples": 2000, "eval_examples": None,
        "epochs": 1, "lr": 1e-4, "batch": 32, "warmup_ratio": 0.1, "precision": "bf16", "max_length": 128}


@pytest.mark.parametrize("grouped", [False, True])
def test_every_side_runs_the_same_batches_and_only_the_layout_differs(tmp_path, grouped):
    cfg = {**GLUE, "group_by_length": grouped, "trainer_group_by_length": grouped}
    ctx = Context(tmp_path, None, {}, 0, 10, 10, 42, cfg)
    padded, packed, hf = bench.sides(ctx, "true")
    a, b = padded.command(tmp_path, 1), packed.command(tmp_path, 1)
    assert "training.padding_free=false" in a and "training.padding_free=true" in b
    same = [x for x in a if x != "training.padding_free=false"]
    assert same == [x for x in b if x != "training.padding_free=true"]
    for flag in ("training.per_device_train_batch_size=32", "objective.max_train_examples=2000", "training.seed=43",
                 f"training.group_by_length={str(grouped).lower()}"):
        assert flag in a, flag
    spec = json.loads(hf.command(tmp_path, 1)[-1])
    assert (spec["batch"], spec["examples"], spec["seed"], spec["trainer_group_by_length"]) == (32, 2000, 43, grouped)


def test_summary_ratios_and_dev_difference():
    def run(rate, acc):
        return {"steady": {"samples_per_s": rate}, "dev": {"accuracy": acc}}

    runs = {"lmforge-padded": [run(50, 0.78), run(46, 0.80), run(48, 0.79)],
            "lmforge-packed": [run(110, 0.79), run(100, 0.81), run(105, 0.80)],
            "hf-trainer": [run(47, 0.80), run(49, 0.79), run(40, 0.81)]}
    s = bench.summarize(runs)
    assert s["packed_vs_trainer"] == pytest.approx(105 / 47) and s["packed_vs_padded"] == pytest.approx(105 / 48)
    assert s["target_met"] and s["dev_diff_points"] == pytest.approx(0.0) and s["dev_within_tolerance"]
    table = bench.markdown({"groupings": {"random": s}})
    assert "| random | 48.0 | 105.0 | 47.0 | 2.23x | 2.19x | 80.00, 79.00, 80.00 |" in table
    runs["hf-trainer"] = [{"error": "exit 1"}]  # a failed side: no ratio, no claim
    assert "packed_vs_trainer" not in bench.summarize(runs)
