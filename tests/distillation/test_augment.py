"""TinyBERT-style augmentation: neighbours come from the teacher's embedding table, replacements happen
at the asked rate, and augmented examples reach the KD loss and both TinyBERT task stages unlabelled
(soft targets only); the prediction stage trains the student alone on the cached teacher logits."""

import numpy as np
import pytest
import torch
from conftest import reset_accelerate, synthetic_glue, tiny_bert_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("aug") / "ckpt")


def test_neighbours_are_the_nearest_word_tokens(folder):
    from transformers import AutoTokenizer

    from tasks.distillation.augment import neighbours, word_start_candidates

    tok = AutoTokenizer.from_pretrained(folder)
    ids, words = word_start_candidates(tok)
    assert len(ids) > 50 and all(w.isalpha() for w in words)
    assert not any(tok.convert_ids_to_tokens(int(i)).startswith("##") for i in ids)
    table = torch.randn(len(tok), 8)
    a, b = words[0], words[1]
    table[tok.convert_tokens_to_ids(b)] = table[tok.convert_tokens_to_ids(a)] * 2.0  # same direction: cosine 1
    near = neighbours(tok, table, {a, "qqqzzzxx"}, k=3)
    assert near[a][0] == b and len(near[a]) == 3 and a not in near[a]
    assert "qqqzzzxx" not in near  # not one token: left as it is


def test_augment_replaces_at_the_asked_rate():
    from tasks.distillation.augment import augment_texts

    near = {"good": ["great", "fine"], "film": ["movie"]}
    texts = ["a good film " * 50]
    never = augment_texts(texts, near, 2, 0.0, np.random.default_rng(0))
    assert never == [[texts[0].strip()] * 2]
    out = augment_texts(texts, near, 20, 0.4, np.random.default_rng(0))[0]
    words = [w for v in out for w in v.split()]
    replaced = sum(w in ("great", "fine", "movie") for w in words) / (20 * 100)  # 100 replaceable words each
    assert replaced == pytest.approx(0.4, abs=0.03)
    assert all(len(v.split()) == 150 for v in out) and "a" in words


STUDENT = {"model": {"family": "bert", "config": {"hidden_size": 16, "num_hidden_layers": 1,
                                                   "num_attention_heads": 1, "intermediate_size": 32}}}


def _augmented_task(folder, tmp_path, recipe_name, *overrides):
    """(task, tokenizer, train rows, teacher folder) of a distillation recipe with 2 augmented copies."""
    import transformers

    from pipelines.config import load_recipe
    from tasks.base import get_task

    reset_accelerate()
    teacher = tmp_path / "teacher"
    transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2).save_pretrained(teacher)
    transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(teacher)
    glue = synthetic_glue(tmp_path / "glue")
    recipe = load_recipe(recipe_name, [f"objective.teacher={teacher}", f"tokenizer.name_or_path={teacher}",
                                       f"objective.glue_dir={glue}", "objective.augment_copies=2",
                                       "objective.augment_prob=1.0", f"training.output_dir={tmp_path / 'out'}",
                                       *overrides], STUDENT)
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train, _ = task.prepare(tok)
    return task, tok, train, teacher


def test_augmented_examples_carry_teacher_logits_and_no_label(folder, tmp_path):
    task, tok, train, _ = _augmented_task(folder, tmp_path, "distill-kd")
    assert len(train) == 3 * 320  # 320 originals + 2 copies each
    originals, extra = train[:320], train[320:]
    assert all(e["label"] in (0, 1) for e in originals) and all(e["label"] == -100 for e in extra)
    assert sum(e["input_ids"] != o["input_ids"] for e, o in zip(extra[::2], originals)) > 200  # words were swapped
    batch = task.collate(train[310:330], torch.Generator())
    counts = task.loss_counts(batch)
    assert int(counts["hard"]) == 10 and int(counts["soft"]) == 20
    model = task.build_model(tok)
    terms = task.loss(model, batch)
    assert torch.isfinite(terms["hard"]) and terms["soft"] > 0


@pytest.mark.parametrize("stage", ["intermediate", "prediction"])
def test_tinybert_task_stages_see_the_augmented_examples(folder, tmp_path, stage):
    from transformers import AutoModelForSequenceClassification

    from tasks.distillation.losses import soft_ce_sum

    task, tok, train, teacher = _augmented_task(folder, tmp_path, "distill-tinybert", f"objective.stage={stage}")
    assert len(train) == 3 * 320 and all(e["label"] == -100 for e in train[320:])
    batch = task.collate(train[310:330], torch.Generator())
    model = task.build_model(tok)
    terms = task.loss(model, batch)
    if stage == "intermediate":  # the teacher runs live: its layers are the targets
        assert "teacher_logits" not in batch and set(terms) == {"embedding", "hidden", "attention"}
        return
    # the prediction stage: the student alone, against logits the teacher computed once before training
    live = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    assert not hasattr(model, "teacher") and isinstance(model, type(live))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        # the cache ran other batch shapes (padding): fp32 summation order differs, not the values
        torch.testing.assert_close(batch["teacher_logits"], live(**inputs).logits, atol=1e-4, rtol=1e-4)
        expected = soft_ce_sum(model(**inputs).logits, live(**inputs).logits)
    torch.testing.assert_close(terms["prediction"].detach(), expected, atol=1e-4, rtol=1e-4)  # a sum of 20 terms
    assert int(task.loss_counts(batch)["prediction"]) == 20
