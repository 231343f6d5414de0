"""What the GLUE distillation tasks (logit KD, TinyBERT's task stage) add to GLUE fine-tuning: the
teacher's folder in the objective; a student that is either a checkpoint (model.name_or_path,
e.g. TinyBERT's general student) or built fresh from the student recipe on the teacher's config;
TinyBERT's data augmentation (augment.py: objective.augment_copies new examples per training example,
unlabelled); and, for the losses that need only the teacher's logits (KD, TinyBERT's prediction
stage), those logits computed once before training and carried in the batch: the teacher runs in
eval mode (no dropout), so they are a fixed function of each example."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.config import check_range
from pipelines.errors import LmforgeError
from tasks.distillation.teacher import require_teacher
from tasks.finetuning.common import checkpoint_config, fit_max_length
from tasks.finetuning.glue import GlueClassification, GlueParams


@dataclass
class GlueDistillParams(GlueParams):
    teacher: str | None = None  # a fine-tuned classification checkpoint for this GLUE task
    # a student built from its config: word embeddings from the teacher's (projected when narrower)
    teacher_embeddings: bool = False
    # TinyBERT's data augmentation (augment.py): new examples per training example (0: off; the paper
    # uses 20), word replacement probability, neighbours per word
    augment_copies: int = 0
    augment_prob: float = 0.4
    augment_neighbours: int = 15

    def check(self, where: str) -> None:
        super().check(where)
        require_teacher(where, self.teacher, "fine-tuned teacher")
        check_range(where, "augment_copies", self.augment_copies, lo=0)
        check_range(where, "augment_prob", self.augment_prob, lo=0.0, hi=1.0)
        check_range(where, "augment_neighbours", self.augment_neighbours, lo=1)
        if self.peft != "none":
            raise LmforgeError(f"{where}: peft={self.peft}: distillation trains the whole student")


class GlueStudent(GlueClassification):
    """GlueClassification whose model is a student of objective.teacher."""

    Params = GlueDistillParams
    needs_checkpoint = False
    # the loss needs only the teacher's logits: cached before training, carried as batch["teacher_logits"]
    cached_teacher_logits = False

    def __init__(self, recipe):
        super().__init__(recipe)
        if self.params.teacher_embeddings and recipe.model.name_or_path:
            raise LmforgeError(f"recipe '{recipe.name}', objective.teacher_embeddings=true: the student starts from "
                               f"the checkpoint {recipe.model.name_or_path}, whose word embeddings it keeps; the "
                               "switch is for a student built from a recipe (STUDENT=<recipe>)")

    def setup(self, tokenizer):
        from tasks.distillation.teacher import check_same_tokenizer

        self.tokenizer = tokenizer
        where = f"recipe '{self.recipe.name}'"
        self.teacher_config = checkpoint_config(self.params.teacher)
        if self.teacher_config.num_labels != self.spec.num_labels:
            raise LmforgeError(f"{where}: teacher '{self.params.teacher}' has {self.teacher_config.num_labels} "
                               f"labels but {self.spec.name} has {self.spec.num_labels}: the teacher must be "
                               f"fine-tuned on {self.spec.name}")
        check_same_tokenizer(tokenizer, self.params.teacher, where, "teacher")  # tokenizer.name_or_path overridden
        check_same_tokenizer(tokenizer, self.recipe.model.name_or_path, where)
        path = self.recipe.model.name_or_path
        config = checkpoint_config(path) if path else self.student_config(tokenizer)
        self.max_length = fit_max_length(self.recipe, tokenizer, config=config, label=path or "the student")

    def prepare(self, tokenizer):
        from tasks.distillation.teacher import cached_teacher_logits

        train, evals = super().prepare(tokenizer)
        if self.params.augment_copies:
            train = train + self.augmented(tokenizer)
        if self.cached_teacher_logits:
            pad = tokenizer.pad_token_id
            for rows in (train, evals):
                logits = cached_teacher_logits(self.params.teacher, self.load_teacher, rows, pad)
                for row, z in zip(rows, logits):
                    row["teacher_logits"] = z
        return train, evals

    def augmented(self, tokenizer) -> list[dict]:
        """augment_copies new examples per training example, unlabelled (the teacher is their only
        target: label -100, NaN for a regression task, which the hard-label losses skip)."""
        import numpy as np

        from tasks.distillation.augment import augment_texts, neighbours
        from tasks.finetuning.glue import load_glue_splits

        p, seed = self.params, self.recipe.training.seed
        rows, _ = load_glue_splits(p, seed)
        columns = [list(rows[c]) for c in self.spec.text_columns]
        words = {w for col in columns for text in col for w in text.split()}
        table = self.load_teacher().get_input_embeddings().weight.detach()
        near = neighbours(tokenizer, table, words, p.augment_neighbours)
        rng = np.random.default_rng(seed)
        variants = [augment_texts(col, near, p.augment_copies, p.augment_prob, rng) for col in columns]
        texts = [[v[i][c] for i in range(len(v)) for c in range(p.augment_copies)] for v in variants]
        no_label = float("nan") if self.spec.is_regression else -100
        fake = {c: t for c, t in zip(self.spec.text_columns, texts)} | {"label": [no_label] * len(texts[0])}
        return self._encode(fake, 0)

    def collate(self, examples, generator):
        batch = super().collate(examples, generator)
        if self.cached_teacher_logits:
            batch["teacher_logits"] = torch.stack([torch.from_numpy(e["teacher_logits"]) for e in examples])
        return batch

    def student_config(self, tokenizer):
        from tasks.distillation.teacher import student_config

        labels = self.spec.labels or ("score",)
        kwargs = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)},
                  "pad_token_id": tokenizer.pad_token_id}
        if self.spec.is_regression:
            kwargs["problem_type"] = "regression"
        return student_config(self.teacher_config, self.recipe, **kwargs)

    def build_student(self, tokenizer):
        """The student classifier: the checkpoint's (head new where missing) or fresh from its config."""
        from transformers import AutoModelForSequenceClassification

        from tasks.shared.modeling import check_vocab

        if self.recipe.model.name_or_path:
            return super().build_model(tokenizer)
        model = AutoModelForSequenceClassification.from_config(self.student_config(tokenizer))
        check_vocab(model, tokenizer, f"recipe '{self.recipe.name}' (student)")
        if self.params.teacher_embeddings:
            from tasks.distillation.teacher import init_word_embeddings

            init_word_embeddings(model, self.load_teacher())
        return model

    def load_teacher(self):
        from transformers import AutoModelForSequenceClassification

        from tasks.distillation.teacher import load_teacher

        return load_teacher(self.params.teacher, AutoModelForSequenceClassification,
                            f"recipe '{self.recipe.name}', objective.teacher", need_head=("classifier", "score"))
