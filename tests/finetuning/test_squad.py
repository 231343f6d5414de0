"""Extractive QA (tasks/finetuning/squad.py): the official JSON reader and its refusals, the official
metric against hand-computed cases, window positions, and a tiny model that learns to extract a
span, also from the second or third window of a long context, whose export answers exactly as
transformers' question-answering pipeline decoded a window (the pipeline itself is gone from
transformers 5)."""

import json
import random

import pytest
from conftest import tiny_bert_checkpoint

from pipelines.errors import LmforgeError
from tasks.finetuning.squad import answer_positions, best_span
from tasks.finetuning.squad_eval import best_threshold, exact, f1, normalize_answer, squad_v1_scores, squad_v2_scores

FILLER = "the value of this object is set by a function and each list returns an item for every name".split()
QUESTION = "what is the secret number ?"
KEY = "the secret number is "


def synthetic_example(rng: random.Random, qid: str, sentences: int, answerable: bool = True) -> dict:
    """Filler sentences, distractor numbers, and (answerable) one 'the secret number is N .'."""
    parts = [" ".join(rng.choices(FILLER, k=6)) + " ." for _ in range(sentences)]
    parts.insert(rng.randrange(len(parts) + 1), f"the other count was {rng.randint(100, 999)} .")
    answer = str(rng.randint(100, 999))
    if answerable:
        parts.insert(rng.randrange(len(parts) + 1), f"{KEY}{answer} .")
    context = " ".join(parts)
    answers = [{"text": answer, "answer_start": context.index(KEY) + len(KEY)}] if answerable else []
    return {"id": qid, "question": QUESTION, "answers": answers, "is_impossible": not answerable, "context": context}


def write_squad(folder, version: str, examples_by_split: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, examples in examples_by_split.items():
        keys = ("id", "question", "answers", "is_impossible")
        paragraphs = [{"context": e["context"], "qas": [{k: e[k] for k in keys}]} for e in examples]
        raw = {"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}
        (folder / f"{split}-{version}.json").write_text(json.dumps(raw))


def synthetic_squad(folder, n_train=480, n_dev=64, v2=False, seed=0):
    rng = random.Random(seed)

    def make(prefix, n):
        return [synthetic_example(rng, f"{prefix}{i}", rng.randint(1, 12), answerable=not v2 or rng.random() < 0.7)
                for i in range(n)]

    write_squad(folder, "v2.0" if v2 else "v1.1", {"train": make("t", n_train), "dev": make("d", n_dev)})
    return folder


# --- the reader ---------------------------------------------------------------------------------

def test_reader_reads_the_official_layout(tmp_path):
    from pipelines.data.squad import load_squad

    synthetic_squad(tmp_path / "squad", n_train=5, n_dev=3)
    dev = load_squad(str(tmp_path / "squad"), "dev", version_2=False)
    assert [e["id"] for e in dev] == ["d0", "d1", "d2"]
    e = dev[0]
    a = e["answers"][0]
    assert e["context"][a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"] and not e["is_impossible"]


@pytest.mark.parametrize("damage, words", [
    (lambda raw: "{not json", "not a readable JSON file"),
    (lambda raw: {"version": "1.1"}, "expected an object with a 'data' list"),
    (lambda raw: _answer(raw, answer_start=0), "is not at answer_start 0 of its context"),
    (lambda raw: _answer(raw, text=None), "an answer needs 'text' and an integer 'answer_start'"),
    (lambda raw: _qa(raw, answers=[], is_impossible=False), "no answers and not marked is_impossible"),
])
def test_bad_files_are_one_line_naming_file_and_question(tmp_path, damage, words):
    from pipelines.data.squad import read_squad

    synthetic_squad(tmp_path, n_train=2, n_dev=2)
    path = tmp_path / "dev-v1.1.json"
    bad = damage(json.loads(path.read_text()))
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(LmforgeError) as err:
        read_squad(path)
    message = str(err.value)
    assert words in message and str(path) in message and "\n" not in message
    if "answer" in words:
        assert "question d0" in message


def _qa(raw, **changes):
    raw["data"][0]["paragraphs"][0]["qas"][0].update(changes)
    return raw


def _answer(raw, **changes):
    answer = raw["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]
    answer.update(changes)
    if changes.get("text", "") is None:
        del answer["text"]
    return raw


def test_v1_refuses_unanswerable_questions(tmp_path):
    from pipelines.data.squad import load_squad

    synthetic_squad(tmp_path, n_train=2, n_dev=12, v2=True)
    with pytest.raises(LmforgeError, match="use --task squad_v2"):
        load_squad(str(tmp_path), "dev", version_2=False)


# --- the official metric ------------------------------------------------------------------------

def test_normalisation_and_token_f1_by_hand():
    assert normalize_answer("The  Cat's, hat!") == "cats hat"
    assert exact("An apple", "apple") == 1.0 and exact("apple pie", "apple") == 0.0
    # pred {quick, fox} vs gold {quick, brown, fox}: 2 shared, precision 1, recall 2/3 -> F1 0.8
    assert f1("the quick brown fox", "quick fox") == pytest.approx(0.8)
    assert f1("", "") == 1.0 and f1("", "x") == 0.0 and f1("yes", "") == 0.0
    assert f1("", "a") == 1.0 and exact("", "The") == 1.0  # an article alone normalises to "": a no-answer


def test_v1_takes_the_best_gold_answer():
    examples = [{"id": "q", "answers": [{"text": "Denver Broncos"}, {"text": "Broncos"}]},
                {"id": "r", "answers": [{"text": "1990"}]}]
    scores = squad_v1_scores(examples, {"q": "the Broncos", "r": "in 1991"})
    assert scores["exact_match"] == pytest.approx(0.5)  # q matches its second answer exactly; r does not
    assert scores["f1"] == pytest.approx(0.5)


def test_v2_fixed_and_best_threshold_by_hand():
    examples = [{"id": "q1", "answers": [{"text": "red car"}]}, {"id": "q2", "answers": []},
                {"id": "q3", "answers": [{"text": "blue sky today"}]}]
    answers = {"q1": "red car", "q2": "green", "q3": "blue"}  # q3: F1 = 2 * 1 * 1/3 / (4/3) = 0.5
    odds = {"q1": -2.0, "q2": 1.0, "q3": 3.0}
    s = squad_v2_scores(examples, answers, odds, threshold=0.0)
    # at 0: q1 answered (right), q2 "" (right), q3 "" (wrong)
    assert s["exact"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(2 / 3)
    assert s["HasAns_exact"] == pytest.approx(0.5) and s["NoAns_exact"] == 1.0 and s["HasAns_total"] == 2
    # from all-"" (1 right): q1 (-2) +1 -> 2 (best); q2 (1) -1 -> 1; q3 (3) +0.5 -> 1.5
    assert (s["best_f1"], s["best_f1_thresh"]) == (pytest.approx(2 / 3), -2.0)
    assert best_threshold({"a": 1.0}, {"a": 0.5}, {"a": True}, {"a": "x"}) == (1.0, 0.5)  # a tie is no gain
    assert best_threshold({"a": 0.0}, {"a": 0.5}, {"a": True}, {"a": "x"}) == (0.0, 0.0)


# --- windows ------------------------------------------------------------------------------------

def test_answer_positions_and_span_search_by_hand():
    import numpy as np

    offsets = [None, None, (0, 3), (4, 9), (10, 12), (12, 15), None]  # [CLS] q [ctx: "the quick br#own"] [SEP]
    assert answer_positions(offsets, 4, 9, 0) == (3, 3)
    assert answer_positions(offsets, 10, 15, 0) == (4, 5)  # a word in two pieces
    assert answer_positions(offsets, 10, 20, 0) == (0, 0)  # runs past the window: [CLS]
    start = np.array([9.0, 8.0, 0.0, 1.0, 5.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 0.0, 6.0, 1.0, 2.0, 7.0])
    # [CLS], the question and [SEP] never answer; end >= start; (4, 5) beats (3, 3) and (4, 4)
    assert best_span(start, end, offsets, n_best=7, max_answer_length=30) == (7.0, (10, 15))
    assert best_span(start, end, offsets, n_best=7, max_answer_length=1) == (7.0, (4, 9))


# --- learning, windows, the pipeline ------------------------------------------------------------

SETTINGS = ["data.max_seq_length=64", "objective.doc_stride=24", "training.num_train_epochs=12",
            "training.learning_rate=2e-3", "training.per_device_train_batch_size=32", "training.mixed_precision=no",
            "training.logging_steps=20"]


def _train(tmp_path):
    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    data = synthetic_squad(tmp_path / "data")
    recipe = load_recipe("squad", [f"model.name_or_path={ckpt}", f"objective.data={data}",
                                   f"training.output_dir={tmp_path / 'run'}", *SETTINGS])
    task = get_task("squad")(recipe)
    return task, train(task, recipe), data


def test_a_tiny_model_learns_to_extract_the_span_in_any_window(tmp_path):
    import transformers

    from pipelines.commands.finetune import run_predict_squad
    from pipelines.data.squad import load_squad

    task, result, data = _train(tmp_path)
    assert result.exported_metrics["f1"] > 0.6 and result.exported_metrics["exact_match"] > 0.5, result.exported_metrics
    assert "eval/exact_match" in result.eval_metrics and "eval/f1" in result.eval_metrics

    final = result.export_dirs[0]
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(final)
    dev = load_squad(str(data), "dev", version_2=False)
    answers, _ = task.predict(model, dev, progress=False)
    windows = {}
    for f in task.features(dev):
        windows.setdefault(f["example_id"], []).append(f)
    late = [e for e in dev if _answer_window(windows[e["id"]], e) >= 1]
    assert len(late) >= 8, "the data must put answers beyond the first window"
    right = sum(answers[e["id"]] == e["answers"][0]["text"] for e in late)
    assert right / len(late) > 0.5, f"{right} of {len(late)} answers found in a later window"

    # transformers 4's question-answering pipeline, as it decoded one window (transformers 5 removed the
    # pipeline): softmax over the context tokens, the outer product of start and end probabilities,
    # spans with end >= start and at most max_answer_len tokens, the argmax, its characters
    single = [e for e in dev if len(windows[e["id"]]) == 1][:20]
    assert len(single) >= 10
    task.params.n_best_size = 64  # every start and end: the pipeline searches them all
    ours, _ = task.predict(model, single, progress=False)
    tok = transformers.AutoTokenizer.from_pretrained(final)
    for e in single:
        assert ours[e["id"]] == _pipeline_answer(model, tok, e, max_answer_len=30), e["id"]

    # make predict: the official predictions file of the export, scored as the run's best evaluation
    out = run_predict_squad("squad", str(final), str(data), str(tmp_path / "pred"))
    assert set(json.loads((out / "predictions.json").read_text())) == {e["id"] for e in dev}
    scores = json.loads((out / "eval_results.json").read_text())
    assert scores["f1"] == pytest.approx(result.exported_metrics["f1"])


def _pipeline_answer(model, tok, example, max_answer_len: int) -> str:
    import numpy as np
    import torch

    enc = tok(example["question"], example["context"], return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    context = np.array([s == 1 for s in enc.sequence_ids(0)])
    with torch.no_grad():
        out = model(**enc)
    probs = []
    for logits in (out.start_logits[0].numpy(), out.end_logits[0].numpy()):
        logits = np.where(context, logits, -10000.0)
        probs.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
    scores = np.tril(np.triu(np.outer(*probs)), max_answer_len - 1)
    start, end = np.unravel_index(scores.argmax(), scores.shape)
    return example["context"][offsets[start][0]:offsets[end][1]]


def _answer_window(features, example) -> int:
    """The index of the first window that holds the whole answer."""
    start = example["answers"][0]["answer_start"]
    end = start + len(example["answers"][0]["text"])
    for i, f in enumerate(features):
        if answer_positions(f["offsets"], start, end, f["cls_index"]) != (f["cls_index"], f["cls_index"]):
            return i
    return -1


def test_v2_through_the_command_reports_both_halves_and_the_best_threshold(tmp_path):
    from pipelines.commands.finetune import run_finetune

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    data = synthetic_squad(tmp_path / "data", v2=True)
    m = run_finetune("squad_v2", str(ckpt), data=str(data), output_dir=str(tmp_path / "run"),
                     overrides=[*SETTINGS, "training.num_train_epochs=6"])
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_f1", "best_f1_thresh"):
        assert key in m, key
    assert m["best_f1"] >= m["f1"] - 1e-9  # threshold 0 answers a prefix of the odds order: one of those tried
    no_answer_share = m["NoAns_total"] / (m["NoAns_total"] + m["HasAns_total"])
    assert m["best_f1"] > no_answer_share + 0.1, m  # better than answering "" everywhere
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["task"] == "squad_v2" and saved["f1"] == m["f1"] and saved["exported"]["metric"] == "f1"

    # the export's card: a model-index entry of the SQuAD 2.0 scores (push --dry_run: no network)
    from huggingface_hub import ModelCard

    from pipelines.runs.push import push_folder

    stage = push_folder(str(tmp_path / "run" / "final"), "someone/tiny-squad2", dry_run=True)
    card = ModelCard.load(f"{stage}/README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["best_f1"].metric_value == pytest.approx(m["best_f1"])
    assert results["f1"].task_type == "question-answering" and results["f1"].dataset_type == "rajpurkar/squad_v2"
    assert "## SQuAD v2.0 (dev)" in card.text


# --- every family with a QA head ----------------------------------------------------------------

FAMILY_CONFIGS = {  # tiny configs; RoBERTa's position table starts after its padding index
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=66),
    "albert": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64),
    "electra": dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64),
    "bart": dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64),
}


def tiny_checkpoint(family: str, folder):
    """A random tiny `family` model with its own 1,000-token tokenizer (lmforge's builder), saved to `folder`."""
    import transformers

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:2000]
    tok = build_tokenizer(family, lines, 1000, folder, model_max_length=64)
    config = transformers.AutoConfig.for_model(family, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                               **FAMILY_CONFIGS[family])
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_every_family_fine_tunes_and_exports_a_qa_head(tmp_path, family):
    import torch
    import transformers

    from pipelines.commands.finetune import run_finetune
    from pipelines.data.squad import load_squad

    ckpt = tiny_checkpoint(family, tmp_path / "ckpt")
    data = synthetic_squad(tmp_path / "data", n_train=96, n_dev=16)
    run_finetune("squad", str(ckpt), data=str(data), output_dir=str(tmp_path / "run"),
                 overrides=[*SETTINGS, "training.num_train_epochs=1"])
    final = tmp_path / "run" / "final"
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(final)
    assert type(model).__name__.lower().startswith(family)
    tok = transformers.AutoTokenizer.from_pretrained(final)
    e = load_squad(str(data), "dev", version_2=False)[0]
    enc = tok(e["question"], e["context"], truncation="only_second", max_length=64, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    assert torch.isfinite(out.start_logits).all() and out.start_logits.shape == enc["input_ids"].shape
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert 0.0 <= saved["exact_match"] <= saved["f1"] <= 1.0
