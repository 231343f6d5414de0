"""The QA row of `make bench` compares equal work: its Trainer side (bench/qa.py: run_qa.py's window
preprocessing and utils_qa.py's answer search, re-implemented) cuts the same windows with the same
labels as lmforge's squad task, but for run_qa's own edge case (an answer that ends a window's context
gets its start on the [SEP] after it), and picks the same answer text from the same logits."""

import sys

import numpy as np
from conftest import REPO

from pipelines.config import load_recipe
from pipelines.data.squad import load_squad
from tasks.base import get_task
from tasks.finetuning.squad import postprocess

sys.path.insert(0, str(REPO))  # bench/ ships in no package: importable from the checkout's root only
from bench.qa import best_answers, tiny_bert, train_features, validation_features, write_data  # noqa: E402


def _columns(rows: list[dict]) -> dict:
    return {"id": [e["id"] for e in rows], "question": [e["question"] for e in rows],
            "context": [e["context"] for e in rows],
            "answers": [{"text": [a["text"] for a in e["answers"]],
                         "answer_start": [a["answer_start"] for a in e["answers"]]} for e in rows]}


def test_both_sides_cut_the_same_windows_and_pick_the_same_answers(tmp_path):
    data = write_data(tmp_path / "data", n_train=60, n_dev=30, seed=0)
    model = tiny_bert(tmp_path / "model", data)
    recipe = load_recipe("squad", [f"model.name_or_path={model}", f"objective.data={data}",
                                   "data.max_seq_length=96", "objective.doc_stride=24"])
    task = get_task("squad")(recipe)
    task.setup(task.load_tokenizer())

    train = load_squad(str(data), "train", False)
    ours, theirs = task.features(train), train_features(task.tokenizer, _columns(train), 96, 24)
    assert [f["input_ids"] for f in ours] == theirs["input_ids"]
    differ = [(f, s, e) for f, s, e in zip(ours, theirs["start_positions"], theirs["end_positions"])
              if (f["start_positions"], f["end_positions"]) != (s, e)]
    for f, start, end in differ:  # run_qa's edge case: an answer that ends the window's context starts on [SEP]
        last_context = max(i for i, o in enumerate(f["offsets"]) if o is not None)
        assert f["end_positions"] == end == last_context and start == last_context + 1, (f["feature"], start, end)
    assert len(differ) < len(ours) / 20
    late = [f for f in ours if f["start_positions"] != f["cls_index"] and f["input_ids"] != ours[0]["input_ids"]]
    assert len(ours) > 2 * len(train) and late  # long contexts: several windows, answers in later ones

    dev = load_squad(str(data), "dev", False)
    features, hf_features = task.features(dev), validation_features(task.tokenizer, _columns(dev), 96, 24)
    assert hf_features["example_id"] == [f["example_id"] for f in features]
    rng = np.random.default_rng(0)
    logits = {i: (rng.normal(size=len(f["input_ids"])), rng.normal(size=len(f["input_ids"])))
              for i, f in enumerate(features)}
    width = max(len(f["input_ids"]) for f in features)  # the Trainer pads its logits with -100 across batches
    padded = [np.full((len(features), width), -100.0) for _ in range(2)]
    for i, (s, e) in logits.items():
        padded[0][i, :len(s)], padded[1][i, :len(e)] = s, e
    answers, _ = postprocess(dev, features, logits, task.params)
    assert answers == best_answers(dev, hf_features, padded[0], padded[1], n_best=20, max_answer=30)
