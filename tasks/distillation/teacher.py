"""The teacher side of every distillation method: load it frozen, check that the student shares its
tokenizer, derive the student's config from it, copy teacher layers into a student, and keep the
teacher out of training (eval mode, no gradients) inside the module the engine trains.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.errors import LmforgeError, one_line

_LAYER = re.compile(r"\.layer\.(\d+)\.")  # encoder.layer.<i>. of BERT, RoBERTa, ELECTRA (ALBERT shares one layer)


def require_teacher(where: str, teacher: str | None, what: str) -> None:
    if not teacher:
        raise LmforgeError(f"{where}: teacher is not set (objective.teacher=<{what} folder>)")


def load_teacher(path: str, auto_cls, where: str, need_head: tuple[str, ...] = ()) -> nn.Module:
    """`auto_cls.from_pretrained(path)` in eval mode with no gradients. `need_head`: name fragments of
    weights the teacher must really have (not freshly initialised), e.g. the MLM head."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the heads a teacher need not have; we check below
    try:
        model, info = auto_cls.from_pretrained(path, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"{where}: cannot load teacher '{path}' as {auto_cls.__name__}: "
                           f"{one_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in info["missing_keys"] if any(h in k for h in need_head)]
    if missing:
        head = auto_cls.__name__.removeprefix("AutoModelFor")
        raise LmforgeError(f"{where}: teacher '{path}' has no trained {head} head ({missing[0]} is missing): this "
                           "method needs a teacher with that head")
    model.eval()
    model.requires_grad_(False)
    return model


def teacher_and_student(recipe, tokenizer, auto_cls, teacher_path: str, need_head: tuple[str, ...] = ()):
    """(teacher, student, fresh) of a corpus method (DistilBERT, TinyBERT's general stage): the teacher
    loaded frozen and checked against the run's tokenizer; the student from model.name_or_path (same
    tokenizer) or, fresh=True, built from student_config() and checked against the recipe."""
    from tasks.shared.modeling import check_positions, check_vocab, init_model

    where = f"recipe '{recipe.name}'"
    teacher = load_teacher(teacher_path, auto_cls, f"{where}, objective.teacher", need_head)
    check_vocab(teacher, tokenizer, f"{where} (teacher)")
    check_same_tokenizer(tokenizer, teacher_path, where, "teacher")
    if recipe.model.name_or_path:
        check_same_tokenizer(tokenizer, recipe.model.name_or_path, where)
        return teacher, init_model(auto_cls, recipe, tokenizer), False
    student = auto_cls.from_config(student_config(teacher.config, recipe))
    check_vocab(student, tokenizer, f"{where} (student)")
    check_positions(student, recipe)
    return teacher, student, True


def check_same_tokenizer(tokenizer, folder: str | None, where: str, role: str = "student") -> None:
    """The run's tokenizer must be the one in `folder` (the student checkpoint's, or the teacher's when
    tokenizer.name_or_path was overridden): logits and embeddings are compared position by position,
    so one id meaning two tokens would silently distil nonsense. A folder without a tokenizer passes."""
    if not folder or not (Path(folder) / "tokenizer_config.json").exists() and \
            not (Path(folder) / "tokenizer.json").exists():
        return
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(folder)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise LmforgeError(f"{where}: the {role} '{folder}' has a different tokenizer from the one this run uses "
                           f"({len(theirs)} vs {len(tokenizer)} tokens, or other ids): teacher and student must "
                           "share the tokenizer")


def student_config(teacher_config, recipe, **fixed):
    """The student's config: the teacher's, changed by the student recipe's model.config (what differs:
    layers, width, heads, ...) when the families match; else the student family's defaults with the
    teacher's vocabulary size and padding id. Without num_hidden_layers: half the teacher's (DistilBERT)."""
    from transformers import AutoConfig

    from pipelines.config import check_model_config

    check_model_config(recipe)
    family = recipe.model.family
    if family == teacher_config.model_type:
        base = {k: v for k, v in teacher_config.to_dict().items()
                if k not in ("architectures", "model_type", "transformers_version", "id2label", "label2id",
                             "problem_type", "_name_or_path", "dtype", "torch_dtype")}
    else:
        base = {"vocab_size": teacher_config.vocab_size, "pad_token_id": teacher_config.pad_token_id}
    depth = {"num_hidden_layers": max(1, teacher_config.num_hidden_layers // 2)}
    return AutoConfig.for_model(family, **{**base, **depth, **recipe.model.config, **fixed})


def copy_teacher_layers(student: nn.Module, teacher: nn.Module, layers: list[int]) -> int:
    """DistilBERT's initialisation: student layer i <- teacher layer layers[i] (0-based), and every other
    weight of the same name and shape (embeddings, MLM head) as it is. Returns the tensors copied;
    refuses when a layer's shapes differ (the widths must match)."""
    t_state = teacher.state_dict()
    new_state, copied = {}, 0
    for name, value in student.state_dict().items():
        match = _LAYER.search(name)
        source = name if match is None else \
            name[:match.start()] + f".layer.{layers[int(match.group(1))]}." + name[match.end():]
        if source in t_state and t_state[source].shape == value.shape:
            new_state[name], copied = t_state[source], copied + 1
        elif match is not None:
            raise LmforgeError(f"cannot initialise the student from the teacher's layers: {name} is "
                               f"{tuple(value.shape)} but the teacher's {source} is "
                               f"{tuple(t_state[source].shape) if source in t_state else 'missing'}; "
                               "use objective.init_from_teacher=false or the teacher's width")
    student.load_state_dict(new_state, strict=False)
    return copied


@torch.no_grad()
def init_word_embeddings(student: nn.Module, teacher: nn.Module) -> None:
    """The student's word embeddings from the teacher's: copied when the widths match, else their top
    principal components (the teacher's table centred, projected on its first d_s right singular
    vectors), rescaled to the student's initial standard deviation. Not part of DistilBERT or TinyBERT
    (TinyBERT gets there by general distillation on a large corpus); a cheap start for a narrow student
    when no such corpus is at hand."""
    source = teacher.get_input_embeddings().weight.float()
    target = student.get_input_embeddings().weight
    if source.shape[0] != target.shape[0]:
        raise LmforgeError(f"the teacher has {source.shape[0]} word embeddings and the student {target.shape[0]}")
    if source.shape[1] == target.shape[1]:
        target.copy_(source)
        return
    if target.shape[1] > source.shape[1]:
        raise LmforgeError(f"the student is wider ({target.shape[1]}) than the teacher ({source.shape[1]}): "
                           "its word embeddings cannot be projected from the teacher's")
    centred = source - source.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[:target.shape[1]].T
    target.copy_(projected * (target.std() / projected.std()))


class WithFrozenTeacher(nn.Module):
    """A student and a teacher in one module, so the engine trains one model whose top-level forward does
    the whole objective (DDP's hooks and autocast live there). The teacher stays in eval mode however
    the engine switches modes, and has no trainable parameters; export writes the student only."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # no dropout in the teacher, ever
        return self

    def get_input_embeddings(self):  # for code that asks the trained model (FLOPs, vocabulary checks)
        return self.student.get_input_embeddings()

    @property
    def config(self):
        return self.student.config


def student_state(state_dict: dict | None) -> dict | None:
    """The student's weights out of a WithFrozenTeacher state dict (gathered by the engine)."""
    if state_dict is None:
        return None
    return {k.removeprefix("student."): v for k, v in state_dict.items() if k.startswith("student.")}


def teacher_fingerprint(path: str) -> str:
    """Identity of a teacher folder: absolute path, and size and mtime of every weight/config file."""
    folder = Path(path).resolve()
    parts = [str(folder)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                             for p in sorted(folder.iterdir()) if p.suffix in (".safetensors", ".bin", ".json")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@torch.no_grad()
def teacher_logits(teacher: nn.Module, examples: list[dict], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """[n, labels] float32 teacher logits of fine-tuning examples (input_ids[, token_type_ids]), computed
    once in length-sorted batches: with the teacher in eval mode they do not change between epochs."""
    from tqdm.auto import tqdm

    from tasks.shared.batching import attention_mask, pad_stack

    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    out = np.zeros((len(examples), teacher.config.num_labels), dtype=np.float32)
    with torch.random.fork_rng():  # the student's initialisation must not depend on the teacher pass
        for start in tqdm(range(0, len(order), batch_size), desc="teacher logits", unit="batch",
                          disable=len(order) <= 10 * batch_size):
            rows = [examples[i] for i in order[start:start + batch_size]]
            ids = pad_stack([r["input_ids"] for r in rows], pad_id)
            lengths = torch.tensor([len(r["input_ids"]) for r in rows])  # not ids != pad: GPT-2 pads with eos
            inputs = {"input_ids": ids, "attention_mask": attention_mask(lengths, ids.size(1))}
            if "token_type_ids" in rows[0]:
                inputs["token_type_ids"] = pad_stack([r["token_type_ids"] for r in rows], 0)
            out[order[start:start + batch_size]] = teacher(**inputs).logits.float().numpy()
    return out


def cached_teacher_logits(teacher_path: str, teacher_loader, examples: list[dict], pad_id: int) -> np.ndarray:
    """teacher_logits(), cached under the prepared-data folder by (teacher files, exact inputs): a second
    student distilled from the same teacher on the same data skips the teacher pass."""
    from pipelines.atomic import atomic_file
    from pipelines.data.sources import cache_home

    digest = hashlib.sha256(teacher_fingerprint(teacher_path).encode())
    for e in examples:
        digest.update(np.asarray(e["input_ids"], dtype=np.int32).tobytes() + b"|")
        digest.update(np.asarray(e.get("token_type_ids", ()), dtype=np.int8).tobytes() + b";")
    path = cache_home() / "teacher-logits" / f"{digest.hexdigest()[:24]}.npy"
    if path.exists():
        return np.load(path)
    logits = teacher_logits(teacher_loader(), examples, pad_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, logits)
    return logits
