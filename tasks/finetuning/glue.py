"""GLUE fine-tuning with a classification head: encoders, GPT-2 (last non-pad token) and BART
(eos representation), all through AutoModelForSequenceClassification.

Every eval split of a task is evaluated in the engine's final evaluation; MNLI reports
matched and mismatched accuracy (the examples carry a split id). Metrics are GLUE's official
ones through `evaluate` with a local module (tasks/metrics): nothing touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from pipelines.errors import LmforgeError, one_line
from tasks.base import Task, register
from tasks.finetuning import padding_free
from tasks.finetuning.common import checkpoint_config, fit_max_length, gather
from tasks.finetuning.lora import LoraParams
from tasks.shared.batching import attention_mask, pad_stack


@dataclass
class GlueParams:
    glue_task: str = "sst2"
    glue_dir: str | None = None  # GLUE TSV layout; None: the Hub (nyu-mll/glue)
    max_train_examples: int | None = None  # cap for quick runs
    max_eval_examples: int | None = None
    random_init: bool = False  # same architecture, fresh weights: the baseline pretraining must beat
    # evaluate every epoch (or every training.eval_steps) and export the best dev evaluation (best.py)
    export_best: bool = True
    early_stopping_patience: int = 0  # stop after this many evaluations without a better one; 0: off
    init_from: str | None = None  # start from another fine-tuned checkpoint, e.g. MNLI's (init_from.py)
    peft: str = "none"  # none | lora (tasks/finetuning/lora.py)
    lora: LoraParams = field(default_factory=LoraParams)

    def check(self, where: str) -> None:
        from tasks.finetuning.downstream import check_fine_tuning

        check_fine_tuning(self, where)
        if self.init_from is not None and self.random_init:
            raise LmforgeError(f"{where}: random_init and init_from={self.init_from} together: pick one")


def load_glue_splits(p: GlueParams, seed: int):
    """(train rows, [(split id, eval rows), ...]) of p.glue_task, capped by p.max_*_examples
    (train: a seeded random subset; eval: the first rows, so every run scores the same ones)."""
    from pipelines.data.glue import get_glue_task, load_glue

    train = load_glue(p.glue_task, "train", p.glue_dir)
    if p.max_train_examples:
        train = train.shuffle(seed=seed).select(range(min(p.max_train_examples, len(train))))
    evals = []
    for split_id, split in enumerate(get_glue_task(p.glue_task).eval_splits):
        rows = load_glue(p.glue_task, split, p.glue_dir)
        if p.max_eval_examples:
            rows = rows.select(range(min(p.max_eval_examples, len(rows))))
        evals.append((split_id, rows))
    return train, evals


@register("glue")
class GlueClassification(Task):
    Params = GlueParams
    needs_checkpoint: ClassVar[bool] = True  # distillation students may instead be built from a config
    packed: bool = False  # training.padding_free resolved for this model by setup() (padding_free.py)

    def __init__(self, recipe):
        super().__init__(recipe)
        from pipelines.data.glue import get_glue_task

        self.spec = get_glue_task(self.params.glue_task)
        if not recipe.model.name_or_path and self.needs_checkpoint:
            raise LmforgeError(f"recipe '{recipe.name}': fine-tuning needs model.name_or_path (a checkpoint)")
        if padding_free.setting(recipe) == "true" and not self._packs():
            raise LmforgeError(f"recipe '{recipe.name}', training.padding_free=true: task '{self.name}' has its own "
                               "loss or collation, not shown exact when packed; set training.padding_free=auto or "
                               "false")

    def _packs(self) -> bool:
        """Padding-free batches are for GLUE's own collation and loss (distillation subclasses pad)."""
        own = GlueClassification
        return type(self).loss is own.loss and type(self).collate is own.collate and type(self).setup is own.setup

    def load_tokenizer(self):
        tok = super().load_tokenizer()
        if tok.pad_token is None:  # GPT-2 has none; its end-of-text token pads (never attended)
            tok.pad_token = tok.eos_token
        return tok

    def setup(self, tokenizer):
        super().setup(tokenizer)
        init = self.params.init_from
        if init:  # the weights come from there: its position table limits the length
            from tasks.finetuning.init_from import init_config

            config = init_config(init)
        else:
            config = checkpoint_config(self.recipe.model.name_or_path)
        config.update(dict(self.recipe.model.config))  # as build_model will load it
        self.max_length = fit_max_length(self.recipe, tokenizer, config)
        self.packed = self._packs() and padding_free.resolve(self.recipe, config)

    def _encode(self, rows, split_id: int) -> list[dict]:
        cols = [rows[c] for c in self.spec.text_columns]
        enc = self.tokenizer(*cols, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        return [{**{k: enc[k][i] for k in keys}, "label": rows["label"][i], "split": split_id}
                for i in range(len(rows["label"]))]

    def prepare(self, tokenizer):
        self.setup_once(tokenizer)
        train, evals = load_glue_splits(self.params, self.recipe.training.seed)
        train_data = self._encode(train[:], 0)
        eval_data = [e for split_id, rows in evals for e in self._encode(rows[:], split_id)]
        if self.recipe.training.max_eval_batches == 0:
            # every example is evaluated, so the order is free: eval batches of similar lengths pad less
            # (metrics come from (split, prediction, label) rows). With a cap, keep the first rows of the
            # file: sorted, the cap would pick the longest. Test-set predictions (submission.py) keep their order.
            eval_data.sort(key=lambda e: -len(e["input_ids"]))  # stable: ties keep the file order
        return train_data, eval_data

    def example_lengths(self, train_data):
        return [len(e["input_ids"]) for e in train_data]

    def collate(self, examples, generator):
        pad = self.tokenizer.pad_token_id
        labels = torch.tensor([e["label"] for e in examples],
                              dtype=torch.float if self.spec.is_regression else torch.long)
        split = torch.tensor([e["split"] for e in examples])
        if self.packed:  # auto: only where packing removes rows; true: always
            always = padding_free.setting(self.recipe) == "true"
            batch = padding_free.collate_packed(examples, pad, 0.0 if always else padding_free.MIN_ROW_SAVING)
            if batch is not None:
                return {**batch, "labels": labels, "split": split}
        input_ids = pad_stack([e["input_ids"] for e in examples], pad)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch = {"input_ids": input_ids,
                 "attention_mask": attention_mask(lengths, input_ids.size(1)), "labels": labels, "split": split}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad_stack([e["token_type_ids"] for e in examples], 0)
        return batch

    def build_model(self, tokenizer):
        from transformers import AutoModelForSequenceClassification

        from tasks.shared.modeling import check_vocab

        # id2label alone sets num_labels: passing num_labels too makes transformers warn against the
        # checkpoint's own id2label (BartConfig saves three labels by default)
        labels = self.spec.labels or ("score",)
        kwargs = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
        # set either way: a checkpoint fine-tuned on STS-B (init_from) saved "regression"
        kwargs["problem_type"] = "regression" if self.spec.is_regression else "single_label_classification"
        # model.config changes the checkpoint's config (classifier_pooling, dropout), as run_glue's
        # --config_overrides does; pipelines/commands/finetune.py checked its keys against that config
        kwargs.update(self.recipe.model.config)
        path, init = self.recipe.model.name_or_path, self.params.init_from
        where = f"objective.init_from={init}" if init else f"--model {path}"
        if init:
            from tasks.finetuning.init_from import check_same_tokenizer

            check_same_tokenizer(tokenizer, init, path)
        missing: list[str] = []  # weights the checkpoint lacks or (init_from) has in another shape: new here
        try:
            if self.params.random_init:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(path, pad_token_id=tokenizer.pad_token_id, **kwargs)
                model = AutoModelForSequenceClassification.from_config(config)
            else:
                # init_from: a head of another label count (MNLI 3 -> RTE 2, STS-B 1) is made anew
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    init or path, pad_token_id=tokenizer.pad_token_id, output_loading_info=True,
                    ignore_mismatched_sizes=bool(init), **kwargs)
                missing = list(info["missing_keys"]) + sorted(k for k, *_ in info.get("mismatched_keys", ()))
        except (OSError, ValueError) as exc:
            raise LmforgeError(f"{where}: cannot load for sequence classification: "
                               f"{one_line(exc)}") from None
        check_vocab(model, tokenizer, where)
        if init:
            print(f"init_from {init}: new weights: {', '.join(missing) or 'none (same head shape)'}")
        if self.params.peft == "lora":
            from tasks.finetuning.lora import wrap_lora

            model = wrap_lora(model, self.params.lora, f"recipe '{self.recipe.name}', section 'objective'", missing)
        return model

    def export(self, model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> list[Path]:
        from tasks.finetuning.lora import export_lora, is_peft

        if is_peft(model):  # the merged model in out_dir, the adapter next to it
            return export_lora(model, tokenizer, Path(out_dir), self.recipe)
        return super().export(model, tokenizer, out_dir, state_dict=state_dict)

    def loss_counts(self, batch):
        return {"loss": torch.tensor(batch["labels"].numel())}

    def _logits(self, model, batch):
        if padding_free.is_packed(batch):
            return padding_free.packed_logits(model, batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return model(**inputs).logits

    def loss(self, model, batch):
        return self._loss_from_logits(self._logits(model, batch), batch)

    def _loss_from_logits(self, logits, batch):
        if self.spec.is_regression:
            return {"loss": torch.nn.functional.mse_loss(logits.squeeze(-1).float(), batch["labels"], reduction="sum")}
        return {"loss": torch.nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")}

    def _predictions(self, logits):
        logits = logits.float()
        return logits.squeeze(-1) if self.spec.is_regression else logits.argmax(-1)

    def eval_batch(self, model, batch):
        """The loss and the predictions from one forward pass."""
        if type(self).loss is not GlueClassification.loss:
            # a subclass's own loss (distillation: teacher terms, or a teacher in the forward): its terms
            # here, the predictions from eval_metrics' own pass
            return super().eval_batch(model, batch)
        logits = self._logits(model, batch)
        return self._loss_from_logits(logits, batch), self._predictions(logits)

    @torch.no_grad()
    def eval_metrics(self, model, batches, outputs=None):
        """outputs: eval_batch's predictions per batch; None: predict here (a second forward pass)."""
        rows = []
        for i, b in enumerate(batches):
            preds = outputs[i] if outputs is not None else self._predictions(self._logits(model, b))
            rows += list(zip(b["split"].tolist(), preds.tolist(), b["labels"].tolist()))
        return split_metrics(self.spec, gather(rows))

    def eval_every(self, steps_per_epoch: int) -> int:
        """training.eval_steps when set; otherwise every epoch while the best evaluation is kept."""
        return self.recipe.training.eval_steps or (steps_per_epoch if self.keep_best() else 0)

    def keep_best(self) -> tuple[str, int] | None:
        """The task's main metric (first split) when objective.export_best (the default)."""
        return (self.spec.metrics[0], self.params.early_stopping_patience) if self.params.export_best else None


def split_metrics(spec, rows: list[tuple]) -> dict[str, float]:
    """GLUE metrics per eval split; the first split unprefixed, others as '<split>/<metric>'."""
    from tasks.metrics import glue_metric

    out = {}
    for split_id, split in enumerate(spec.eval_splits):
        mine = [(p, r) for s, p, r in rows if s == split_id]
        if not mine:
            continue
        preds, refs = zip(*mine)
        scores = glue_metric(spec.name, list(preds), list(refs))
        prefix = "" if split_id == 0 else f"{split.removeprefix('validation_')}/"
        out.update({f"{prefix}{k}": float(v) for k, v in scores.items()})
    return out
