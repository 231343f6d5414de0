"""What the GLUE distillation tasks (logit KD, TinyBERT's task stage) add to GLUE fine-tuning: the
teacher's folder in the objective, and a student that is either a checkpoint (model.name_or_path,
e.g. TinyBERT's general student) or built fresh from the student recipe on the teacher's config."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import LmforgeError
from tasks.distillation.teacher import require_teacher
from tasks.finetuning.common import checkpoint_config, fit_max_length
from tasks.finetuning.glue import GlueClassification, GlueParams


@dataclass
class GlueDistillParams(GlueParams):
    teacher: str | None = None  # a fine-tuned classification checkpoint for this GLUE task
    # a student built from its config: word embeddings from the teacher's (projected when narrower)
    teacher_embeddings: bool = False

    def check(self, where: str) -> None:
        super().check(where)
        require_teacher(where, self.teacher, "fine-tuned teacher")
        if self.peft != "none":
            raise LmforgeError(f"{where}: peft={self.peft}: distillation trains the whole student")


class GlueStudent(GlueClassification):
    """GlueClassification whose model is a student of objective.teacher."""

    Params = GlueDistillParams
    needs_checkpoint = False

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
