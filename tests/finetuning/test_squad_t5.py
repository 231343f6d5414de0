"""SQuAD as text-to-text for T5 (tasks/finetuning/squad_t5.py): `finetune --task squad` picks it from the
checkpoint's model_type, a tiny T5 built from the t5-tiny recipe's architecture learns to write the answer
on generated data, its export reloads and answers the same through `predict`; v2.0's no-answer text."""

import json
import random

import pytest

from pipelines.errors import LmforgeError

NAMES = ("apple", "river", "stone", "cloud", "tiger", "music", "bread", "chair", "glass", "horse", "paper", "smoke")
FILLER = "the value of this object is set by a function and each list returns an item".split()


def example(rng: random.Random, qid: str, answerable: bool = True) -> dict:
    """Filler sentences and, when answerable, one 'the secret word is X .' somewhere among them: the
    answer is written in the context (a model that ignores it gets 1 in 12 right)."""
    parts = [" ".join(rng.choices(FILLER, k=rng.randint(3, 6))) + " ." for _ in range(rng.randint(1, 3))]
    answer = rng.choice(NAMES)
    if answerable:
        parts.insert(rng.randrange(len(parts) + 1), f"the secret word is {answer} .")
    context = " ".join(parts)
    key = "the secret word is "
    answers = [{"text": answer, "answer_start": context.index(key) + len(key)}] if answerable else []
    return {"id": qid, "question": "what is the secret word ?", "context": context, "answers": answers,
            "is_impossible": not answerable}


def write_squad(folder, n_train: int, n_dev: int, v2: bool = False, seed: int = 0):
    rng = random.Random(seed)
    version = "v2.0" if v2 else "v1.1"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [example(rng, f"{split[0]}{i}", answerable=not v2 or rng.random() < 0.7) for i in range(n)]
        qas = [{"context": e["context"], "qas": [{k: e[k] for k in ("id", "question", "answers", "is_impossible")}]}
               for e in rows]
        (folder / f"{split}-{version}.json").write_text(json.dumps({"version": version, "data": [
            {"title": "t", "paragraphs": qas}]}))
    return folder


def tiny_t5(folder, **shrink):
    """A random T5 with the t5-tiny recipe's architecture (gated-GELU, untied embeddings), narrowed by
    `shrink` so it trains in seconds, and a 1,000-token Unigram tokenizer: what `pretrain t5-tiny` exports."""
    import torch
    import transformers

    from pipelines.config import load_recipe
    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:2000]
    tok = build_tokenizer("t5", lines + [" ".join(NAMES)] * 20, 1000, folder, model_max_length=64)
    config = {**load_recipe("t5-tiny").model.config, **shrink}
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id, **config)).save_pretrained(folder)
    return str(folder)


SMALL = dict(d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=32)
RUN = ["data.max_seq_length=64", "training.per_device_train_batch_size=32", "training.learning_rate=3e-3",
       "training.mixed_precision=no", "training.logging_steps=20", "training.warmup_ratio=0.05",
       "training.num_train_epochs=4"]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return tiny_t5(tmp_path_factory.mktemp("t5"), **SMALL)


def test_t5_learns_to_write_the_answer_and_its_export_predicts_the_same(t5, tmp_path):
    from pipelines.commands.finetune import run_finetune, run_predict_squad

    data = write_squad(tmp_path / "data", n_train=640, n_dev=64)
    m = run_finetune("squad", t5, data=str(data), output_dir=str(tmp_path / "run"), overrides=RUN)
    assert m["exact_match"] > 0.8 and m["f1"] >= m["exact_match"], m  # chance: 1 in 12
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recipe["task"] == "squad-t5"  # chosen from the checkpoint's model_type
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "run" / "final" / "README.md")  # the export's card carries its scores
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == pytest.approx(m)

    out = run_predict_squad("squad", str(tmp_path / "run" / "final"), str(data), str(tmp_path / "pred"))
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 64 and not (out / "null_odds.json").exists()
    scores = json.loads((out / "eval_results.json").read_text())
    assert scores["exact_match"] == pytest.approx(m["exact_match"])  # the export is the evaluated model


def test_v2_writes_unanswerable_and_scores_both_halves(t5, tmp_path):
    from pipelines.commands.finetune import run_finetune, run_predict_squad

    data = write_squad(tmp_path / "data", n_train=640, n_dev=64, v2=True)
    m = run_finetune("squad_v2", t5, data=str(data), output_dir=str(tmp_path / "run"),
                     overrides=[*RUN, "training.report_to=wandb"])
    assert m["HasAns_total"] + m["NoAns_total"] == 64 and "best_f1" not in m  # a generator has no null score
    assert m["HasAns_exact"] > 0.8 and m["NoAns_exact"] > 0.8, m
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["task"] == "squad_v2" and saved["f1"] == m["f1"]

    out = run_predict_squad("squad_v2", str(tmp_path / "run" / "final"), str(data), str(tmp_path / "pred"))
    predictions = json.loads((out / "predictions.json").read_text())
    assert "" in predictions.values() and "unanswerable" not in predictions.values()  # the official "" no-answer

    # W&B (offline): the dev scores and a sample of generated answers vs gold as tables of the run
    run_dir = next((tmp_path / "run" / "wandb").glob("offline-run-*"))
    dev = json.loads(next(run_dir.glob("files/media/table/squad_v2/dev_*.table.json")).read_text())
    assert dict(dev["data"])["f1"] == pytest.approx(m["f1"])
    sample = json.loads(next(run_dir.glob("files/media/table/squad_v2/predictions_*.table.json")).read_text())
    assert sample["columns"] == ["id", "question", "prediction", "gold", "exact_match", "f1"]
    assert len(sample["data"]) == 20 and any(row[3] == "" for row in sample["data"])


def test_the_recipe_follows_the_checkpoint_and_mistakes_are_one_line(t5, tmp_path):
    from pipelines.config import load_recipe
    from tasks.base import get_task
    from tasks.finetuning.squad_t5 import squad_recipe_for

    assert [squad_recipe_for(t) for t in ("t5", "mt5", "bert", "bart")] == ["squad-t5", "squad-t5", "squad", "squad"]
    base = [f"model.name_or_path={t5}", f"objective.data={tmp_path}"]
    for change, words in (("objective.no_answer_text=the", "empty once normalised"),
                          ("objective.peft=lora", "not supported by text-to-text SQuAD"),
                          ("objective.max_answer_length=0", "max_answer_length")):
        with pytest.raises(LmforgeError, match=words) as err:
            recipe = load_recipe("squad-t5", [*base, change])
            get_task(recipe.task)(recipe)
        assert "\n" not in str(err.value)
    with pytest.raises(LmforgeError, match="no data"):
        recipe = load_recipe("squad-t5", [f"model.name_or_path={t5}"])
        get_task(recipe.task)(recipe)
