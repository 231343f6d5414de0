"""1. RoBERTa-style MLM: lmforge `pretrain roberta-tiny` against the HF run_mlm recipe.

Both sides: roberta-tiny's model (hidden 256, 4 layers, 4 heads, FFN 1024; the config is built by
the same function from the same recipe), the byte-level BPE tokenizer trained once in this
invocation (vocab 8,192), blocks of 128, batch 32, bf16 autocast on the CPU, and the recipe's AdamW
and schedule (lr 5e-4, betas 0.9/0.98, eps 1e-6, weight decay 0.01, linear, warmup 50).
The baseline is examples/pytorch/language-modeling/run_mlm.py with line_by_line=False, written out:
datasets "text" loader + tokenizer map (return_special_tokens_mask) + group_texts(128) +
DataCollatorForLanguageModeling(mlm_probability=0.15) + Trainer(TrainingArguments(bf16=True,
use_cpu=True)) on RobertaForMaskedLM, then save_model() as run_mlm does.
"""

from __future__ import annotations

from bench.common import child_result, trainer_batch_sizes
from bench.sides import Comparison, Context, pretrain_baseline, pretrain_side

RECIPE, FAMILY, TARGET = "roberta-tiny", "roberta", 1.5


def comparison(ctx: Context) -> Comparison:
    hf = pretrain_baseline(ctx, "hf-mlm", RECIPE, FAMILY, "hf-trainer", "HF run_mlm recipe (Trainer)")
    return Comparison("mlm", "RoBERTa-style MLM (roberta-tiny sizes) vs HF Trainer",
                      [pretrain_side(ctx, RECIPE, FAMILY), hf], baseline="hf-trainer", target=TARGET, losses=True)


def hf_mlm(spec: dict) -> None:
    """The baseline process (`python -m bench --child hf-mlm SPEC`)."""
    from itertools import chain

    import datasets
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling, RobertaForMaskedLM, TrainingArguments

    from bench.trainer_probe import StepClock, StepLossTrainer
    from pipelines.config import load_recipe
    from pipelines.data.sources import is_heading, is_subheading
    from tasks.shared.modeling import build_config

    recipe = load_recipe(spec["recipe"])
    t, block = recipe.training, recipe.data.max_seq_length
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    raw = datasets.load_dataset("text", data_files={"train": spec["file"]})
    # the same text lmforge trains on: WikiText's ` = Title = ` / ` = = Section = = ` lines are document
    # boundaries there (pipelines/data/sources.py), and blank lines are not text; left in, the baseline
    # would train on thousands of easy "=" tokens and <s></s> pairs and its loss would not compare
    raw = raw.filter(lambda r: r["text"].strip() and not is_heading(r["text"]) and not is_subheading(r["text"]))

    def tokenize(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):  # run_mlm.py's, block_size = max_seq_length
        joined = {k: list(chain(*examples[k])) for k in examples}
        total = len(joined[next(iter(examples))]) // block * block
        return {k: [v[i:i + block] for i in range(0, total, block)] for k, v in joined.items()}

    tokenized = raw.map(tokenize, batched=True, remove_columns=["text"], desc="tokenize")
    train = tokenized.map(group_texts, batched=True, desc=f"group_texts {block}")["train"]
    model = RobertaForMaskedLM(build_config(recipe, tokenizer))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=recipe.objective["mlm_probability"])
    args = TrainingArguments(
        output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        bf16=t.mixed_precision == "bf16", use_cpu=True, logging_steps=spec["log_every"], save_strategy="no",
        eval_strategy="no", report_to="none", seed=spec["seed"])
    clock = StepClock()
    trainer = StepLossTrainer(model=model, args=args, train_dataset=train, data_collator=collator,
                              processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    trainer.save_model()
    sizes = trainer_batch_sizes(len(train), t.per_device_train_batch_size, len(clock.step_ends))
    child_result({"step_ends": clock.step_ends, "tokens": [n * block for n in sizes],
                  "losses": trainer.losses_every(spec["log_every"]), "blocks": len(train),
                  "model_config": model.config.to_diff_dict()})
