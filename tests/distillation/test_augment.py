"""TinyBERT-style augmentation: neighbours come from the teacher's embedding table, replacements happen
at the asked rate, and augmented examples reach the KD loss unlabelled (soft targets only)."""

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


def test_augmented_examples_carry_teacher_logits_and_no_label(folder, tmp_path):
    import transformers

    from pipelines.config import load_recipe
    from tasks.base import get_task

    reset_accelerate()
    teacher = tmp_path / "teacher"
    transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2).save_pretrained(teacher)
    transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(teacher)
    glue = synthetic_glue(tmp_path / "glue")
    recipe = load_recipe("distill-kd", [f"objective.teacher={teacher}", f"tokenizer.name_or_path={teacher}",
                                        f"objective.glue_dir={glue}", "objective.augment_copies=2",
                                        "objective.augment_prob=1.0", f"training.output_dir={tmp_path / 'out'}"],
                         {"model": {"family": "bert", "config": {"hidden_size": 16, "num_hidden_layers": 1,
                                                                  "num_attention_heads": 1, "intermediate_size": 32}}})
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train, _ = task.prepare(tok)
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
