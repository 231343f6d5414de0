"""W&B (WANDB_MODE=offline, no mocks): a tiny run leaves an offline run folder holding the config,
losses, eval metrics, throughput and the final results table, and results.json names that run."""

import json
import os

from report_samples import sample_runs


def test_offline_run_folder_holds_the_results():
    assert os.environ["WANDB_MODE"] == "offline"  # tests/conftest.py: nothing leaves the machine
    out = sample_runs() / "bert-tiny"
    results = json.loads((out / "results.json").read_text())
    wb = results["wandb"]
    assert wb["offline"] is True and wb["url"] is None and wb["project"] == "lmforge" and wb["name"] == "bert-tiny"
    folders = list((out / "wandb").glob("offline-run-*"))
    assert [f.name.rsplit("-", 1)[1] for f in folders] == [wb["id"]] and wb["dir"] == str(folders[0])

    # the final results table: a W&B Table file, (field, value) rows equal to results.json
    tables = list(folders[0].glob("files/media/table/results_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["field", "value"]
    rows = dict(table["data"])
    assert rows["tokens"] == results["tokens"] and rows["steps"] == 4
    assert rows["tokens_per_sec"] == results["tokens_per_sec"]
    assert {k: rows[k] for k in results["metrics"]} == results["metrics"]

    # the run log (protobuf records, `wandb sync` uploads it): config, losses, eval metrics and throughput
    log = next(folders[0].glob("run-*.wandb")).read_bytes()
    for key in (b"learning_rate", b"per_device_train_batch_size", b"loss/mlm", b"loss/nsp", b"eval/loss",
                b"eval/nsp_accuracy", b"tokens_per_sec", b"grad_norm", b"results/tokens"):
        assert key in log, key
