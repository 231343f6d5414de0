"""Several seeds per GLUE task (--seeds N / SEEDS=n): each seed's run kept, median / mean / std in
glue_results.json and the printed table, the submission made by the best dev seed."""

import json

import pytest
from conftest import synthetic_glue, tiny_bert_checkpoint

from pipelines.errors import LmforgeError


def test_seed_summary_statistics():
    from tasks.finetuning.seeds import best_seed, seed_list, seed_summary

    assert seed_list(42, 3) == [42, 43, 44]
    per_seed = {42: {"accuracy": 0.5, "f1": 0.4}, 43: {"accuracy": 0.9, "f1": 0.8}, 44: {"accuracy": 0.6, "f1": 0.3}}
    s = seed_summary(per_seed)
    assert s["median"] == {"accuracy": 0.6, "f1": 0.4}
    assert s["mean"]["accuracy"] == pytest.approx(2 / 3) and s["std"]["accuracy"] == pytest.approx(0.2081666, 1e-5)
    assert s["seeds"]["43"] == per_seed[43] and best_seed(per_seed, "accuracy") == 43
    assert seed_summary({1: {"accuracy": 0.7}})["std"] == {"accuracy": 0.0}


def test_glue_runs_each_seed_and_reports_median_mean_std(tmp_path, capsys):

    from pipelines.commands.finetune import run_finetune

    tiny_bert_checkpoint(tmp_path / "base")
    glue = synthetic_glue(tmp_path / "glue")
    (glue / "SST-2" / "test.tsv").write_text("index\tsentence\n0\tgood value\n1\tthe bad object\n")
    summary = run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                           seeds=2, overrides=["training.max_steps=3", "training.per_device_train_batch_size=8",
                                               "objective.max_eval_examples=16", "training.seed=7"])
    saved = json.loads((tmp_path / "ft" / "glue_results.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    s = saved["sst2"]
    assert sorted(s["seeds"]) == ["7", "8"] and set(s) == {"median", "mean", "std", "seeds"}
    accs = [m["accuracy"] for m in s["seeds"].values()]
    assert s["median"]["accuracy"] == pytest.approx(sum(accs) / 2) and s["std"]["accuracy"] >= 0
    for seed in (7, 8):
        recipe = json.loads((tmp_path / "ft" / "sst2" / f"seed-{seed}" / "recipe.json").read_text())
        assert recipe["training"]["seed"] == seed
    assert "[median of 2 seeds]" in capsys.readouterr().out
    assert len((tmp_path / "ft" / "submission" / "SST-2.tsv").read_text().splitlines()) == 3
    with pytest.raises(LmforgeError, match="--seeds 0"):
        run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), seeds=0)
    with pytest.raises(LmforgeError, match="several seeds are supported for GLUE and squad, squad_v2, swag, race"):
        run_finetune("summarization", str(tmp_path / "base"), seeds=2)
