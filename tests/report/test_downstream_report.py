"""The report's table of SQuAD / SWAG / RACE / NER results: the eval_results.json that `finetune` writes
for them becomes a row with the task's reported metrics (x 100), the median with several seeds; a
malformed one is one error naming the file."""

import json

import pytest

from pipelines.errors import LmforgeError
from pipelines.runs.report import build_report


def _write(path, content):
    path.mkdir(parents=True, exist_ok=True)
    (path / "eval_results.json").write_text(json.dumps(content))


def test_downstream_rows_show_each_tasks_metrics(tmp_path):
    runs = tmp_path / "runs"
    _write(runs / "bert-squad", {"task": "squad", "model": "runs/bert/final", "exact_match": 0.8125, "f1": 0.8843,
                                 "exported": None})
    _write(runs / "bert-ner", {"task": "ner", "model": "m", "exported": {},
                               "median": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "accuracy": 0.97},
                               "mean": {}, "std": {}, "seeds": {"42": {}, "43": {}, "44": {}}})
    _write(runs / "glue" / "sst2", {"task": "sst2", "model": "m", "accuracy": 0.9})  # GLUE's: not a row here
    page = build_report(runs, tmp_path / "report").read_text()
    table = page[page.index('<table id="downstream">'):]
    table = table[:table.index("</table>")]
    assert table.count('class="downstream-row"') == 2
    assert "exact_match <b>81.25</b>" in table and "f1 <b>88.43</b>" in table and "runs/bert/final" in table
    assert "precision <b>90.00</b>" in table and "recall <b>80.00</b>" in table and "(median of 3 seeds)" in table
    assert "accuracy" not in table  # NER's token accuracy is not a reported score


def test_a_malformed_downstream_file_names_itself(tmp_path):
    _write(tmp_path / "runs" / "x", {"task": "squad", "exact_match": "high", "f1": 0.5})
    with pytest.raises(LmforgeError, match=r"eval_results.json: metrics.exact_match is 'high', expected a number"):
        build_report(tmp_path / "runs", tmp_path / "report")


def test_model_paths_show_relative_to_the_runs_folder_or_as_their_last_parts(tmp_path):
    runs = tmp_path / "runs"
    _write(runs / "squad-a", {"task": "squad", "model": str(runs / "bert" / "final"), "exact_match": 0.5, "f1": 0.6})
    _write(runs / "squad-b", {"task": "squad", "model": str(tmp_path / "models" / "bert-x"), "exact_match": 0.5,
                              "f1": 0.6})
    _write(runs / "squad-c", {"task": "squad", "model": "google-bert/bert-base-uncased", "exact_match": 0.5, "f1": 0.6})
    page = build_report(runs, tmp_path / "report").read_text()
    assert str(tmp_path) not in page
    for shown in ('"muted">bert/final<', '"muted">…/models/bert-x<', '"muted">google-bert/bert-base-uncased<'):
        assert shown in page, shown
