"""LoRA fine-tuning through peft for the classification tasks: which modules each family adapts,
which head is trained in full, and the export (the adapter folder + a merged plain model).

    make finetune TASK=glue/sst2 MODEL=... ARGS="objective.peft=lora objective.lora.r=16"

The export stays an ordinary transformers folder: `final/` holds the merged model
(merge_and_unload), loading with AutoModelForSequenceClassification; `final-adapter/` holds the
adapter alone (PeftModel.from_pretrained on the base checkpoint gives the same outputs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import check_probability, check_range
from pipelines.errors import LmforgeError

# model_type -> (attention projections LoRA adapts, the classification head trained in full);
# query/value follows Hu et al. (2021). GPT-2's fused c_attn is a Conv1D (weights stored transposed).
FAMILY_TARGETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bert": (("query", "value"), ("classifier",)),
    "roberta": (("query", "value"), ("classifier",)),
    "roberta-prelayernorm": (("query", "value"), ("classifier",)),
    "modernbert": (("Wqkv",), ("classifier",)),  # one fused query/key/value projection
    "electra": (("query", "value"), ("classifier",)),
    "albert": (("query", "value"), ("classifier",)),  # AlbertAttention's own query/value (shared layers)
    "gpt2": (("c_attn",), ("score",)),
    "t5": (("q", "v"), ("classification_head",)),
    "bart": (("q_proj", "v_proj"), ("classification_head",)),
}
FAN_IN_FAN_OUT = ("gpt2",)


@dataclass
class LoraParams:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] | None = None  # None: the family's default (FAMILY_TARGETS)

    def check(self, where: str) -> None:
        check_range(where, "lora.r", self.r, lo=1)
        check_range(where, "lora.alpha", self.alpha, lo=0, lo_open=True)
        check_probability(where, "lora.dropout", self.dropout)
        if self.target_modules is not None and not self.target_modules:
            raise LmforgeError(f"{where}, lora.target_modules: empty list (omit it for the family default)")


def wrap_lora(model, p: LoraParams, where: str, missing_keys=(), head: tuple[str, ...] | None = None,
              task_type: str = "SEQ_CLS"):
    """`model` as a PeftModel with LoRA adapters and a fully trained head; prints the trainable count.
    Modules the checkpoint lacked (`missing_keys`: BERT's pooler after an MLM-only pretraining) are
    trained and saved too: frozen random weights would make the adapter useless on the base.
    `head`: the head modules (default: the family's sequence-classification head); `task_type`: peft's
    TaskType name (SEQ_CLS, TOKEN_CLS, QUESTION_ANS; multiple choice has none and uses SEQ_CLS's wrapper)."""
    from peft import LoraConfig, TaskType, get_peft_model

    model_type = model.config.model_type
    if model_type not in FAMILY_TARGETS and p.target_modules is None:
        raise LmforgeError(f"{where}: no default LoRA target modules for model_type '{model_type}'; set "
                           f"objective.lora.target_modules (known families: {', '.join(FAMILY_TARGETS)})")
    targets, family_head = FAMILY_TARGETS.get(model_type, ((), ()))
    head = family_head if head is None else head
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    wanted = list(p.target_modules or targets)
    missing = [t for t in wanted if t not in names]
    if missing:
        raise LmforgeError(f"{where}, lora.target_modules: {', '.join(missing)} not found in {type(model).__name__}")
    fresh = sorted({k.rsplit(".", 1)[0] for k in missing_keys if k.split(".", 1)[0] not in head})
    config = LoraConfig(task_type=getattr(TaskType, task_type), r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                        target_modules=wanted, modules_to_save=list(head) + fresh or None,
                        fan_in_fan_out=model_type in FAN_IN_FAN_OUT)
    model = get_peft_model(model, config)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    total = sum(q.numel() for q in model.parameters())
    print(f"lora: {trainable:,} trainable parameters of {total:,} ({100 * trainable / total:.2f}%)")
    return model


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def export_lora(model, tokenizer, out_dir: Path, recipe) -> list[Path]:
    """`out_dir`: the merged plain model; `<out_dir>-adapter`: the adapter. The model being trained is
    not changed (the merge happens on a copy). Sharded (ZeRO-3 / FSDP) LoRA exports are not supported."""
    from pipelines.atomic import atomic_folder
    from tasks.base import write_pretrained

    adapter_dir = out_dir.with_name(f"{out_dir.name}-adapter")
    with atomic_folder(adapter_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    merged = copy.deepcopy(model).merge_and_unload()
    write_pretrained(merged, tokenizer, out_dir, recipe)
    return [out_dir, adapter_dir]
