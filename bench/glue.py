"""4. GLUE fine-tuning of a small real BERT (all-MiniLM-L6-v2: 6 layers, hidden 384, uncased
WordPiece) against Trainer + DataCollatorWithPadding (run_glue.py with --pad_to_max_length False).

Same everything on both sides: the train rows (lmforge's TSV reader and its seeded subset,
objective.max_train_examples, with the same seed), the dev rows, the tokenizer call
(tokenizer(sentence1[, sentence2], truncation=True, max_length=128): what tasks/finetuning/glue.py
does), dynamic padding per batch, batch 32, AdamW lr --glue-lr, weight decay 0.01, linear schedule
with warmup int(0.1 x total steps), bf16 autocast (--glue-precision), one evaluation of the dev
set at the end, the model saved at the end, metrics from the same local GLUE metric module. Each
repetition uses seed --seed + rep on both sides (its own subset, head init and order), so the dev
scores are medians over seeds. Compared: training samples/s over the steady window (target >= 1.2x)
and the dev scores (equal within 1 point).
"""

from __future__ import annotations

from pathlib import Path

from bench.common import child_command, child_result, steady_from_step_ends, trainer_batch_sizes
from bench.sides import Comparison, Context, Side, glue_side

TARGET, SCORE_TOLERANCE = 1.2, 1.0  # points


def comparison(ctx: Context) -> Comparison:
    g = ctx.glue

    def command(scratch: Path, rep: int) -> list[str]:
        return child_command("hf-glue", {**g, "log_every": ctx.log_every, "seed": ctx.seed + rep,
                                         "out": str(scratch / "out")})

    def read(result: dict, scratch: Path) -> dict:
        return {"steady": steady_from_step_ends(result.get("step_ends", []), ctx.warmup, samples=result.get("samples")),
                "dev": result.get("dev", {})}

    hf = Side("hf-trainer", "Trainer + DataCollatorWithPadding", command, read, lmforge=False)
    return Comparison("glue", f"GLUE {g['name']} fine-tuning (all-MiniLM-L6-v2) vs Trainer",
                      [glue_side(ctx), hf], unit="samples", baseline="hf-trainer", target=TARGET)


def hf_glue(spec: dict) -> None:
    """The baseline process (`python -m bench --child hf-glue SPEC`)."""
    import math

    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from bench.trainer_probe import StepClock
    from pipelines.data.glue import get_glue_task
    from tasks.finetuning.glue import GlueParams, load_glue_splits
    from tasks.metrics import glue_metric

    task = get_glue_task(spec["task"])
    train, evals = load_glue_splits(GlueParams(glue_task=task.name, glue_dir=spec["dir"],
                                               max_train_examples=spec.get("examples"),
                                               max_eval_examples=spec.get("eval_examples")), spec["seed"])
    dev = evals[0][1]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])

    def preprocess(rows):
        return tokenizer(*(rows[c] for c in task.text_columns), truncation=True, max_length=spec["max_length"])

    train = train.map(preprocess, batched=True, desc="tokenize train")
    dev = dev.map(preprocess, batched=True, desc="tokenize dev")
    labels = task.labels
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["model"], id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    total = math.ceil(len(train) / spec["batch"]) * int(spec["epochs"])
    args = TrainingArguments(
        output_dir=spec["out"], num_train_epochs=spec["epochs"], per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=128, learning_rate=spec["lr"], weight_decay=0.01, lr_scheduler_type="linear",
        warmup_steps=int(spec["warmup_ratio"] * total), bf16=spec["precision"] == "bf16", use_cpu=True,
        logging_steps=spec["log_every"], save_strategy="no", eval_strategy="no", report_to="none", seed=spec["seed"],
        # bench/padding_free.py compares at equal batching: grouped on both sides (the suite: the default, random)
        train_sampling_strategy="group_by_length" if spec.get("trainer_group_by_length") else "random")
    clock = StepClock()
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    trainer.save_model()
    predictions = trainer.predict(dev).predictions.argmax(-1)
    dev_scores = glue_metric(task.name, predictions.tolist(), dev["label"])
    child_result({"step_ends": clock.step_ends, "samples": trainer_batch_sizes(len(train), spec["batch"],
                                                                               len(clock.step_ends)),
                  "dev": {k: float(v) for k, v in dev_scores.items()}, "train_rows": len(train), "dev_rows": len(dev)})
