"""Fine-tuning beyond encoders: T5 GLUE as text-to-text, GPT-2 / BART classification heads through
task "glue", summarization with beam search + ROUGE / BLEU, and the user mistakes around them.

The checkpoints are built here (tiny T5 / BART / GPT-2 with tokenizers trained on the embedded
corpus), saved with save_pretrained: exactly what the pretraining recipes export.
"""

import json
import random

import pytest
from conftest import synthetic_glue

from pipelines.commands.finetune import run_finetune
from pipelines.errors import LmforgeError

_RUN = ["training.logging_steps=5", "training.per_device_train_batch_size=16", "training.warmup_ratio=0.05"]


@pytest.fixture(scope="module")
def corpus_lines():
    from pipelines.data.default_corpus import default_corpus_path

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:2000]


def _tiny_checkpoint(family, lines, out):
    """A save_pretrained folder (model + tokenizer) of a freshly initialised tiny model."""
    import torch
    import transformers

    from tokenizer import build_tokenizer

    tok = build_tokenizer(family, lines, 1000, out, model_max_length=64)
    torch.manual_seed(0)  # the same initial weights every run
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if family == "t5":
        config = transformers.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32, dropout_rate=0.0,
                                       decoder_start_token_id=tok.pad_token_id, **ids)
        model = transformers.T5ForConditionalGeneration(config)
    elif family == "bart":
        config = transformers.BartConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                                         decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                         max_position_embeddings=64, dropout=0.0, bos_token_id=tok.bos_token_id,
                                         decoder_start_token_id=tok.eos_token_id, **ids)
        model = transformers.BartForConditionalGeneration(config)
    else:
        config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=64, resid_pdrop=0.0,
                                         embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id, **ids)
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, corpus_lines):
    root = tmp_path_factory.mktemp("ckpt")
    return {f: _tiny_checkpoint(f, corpus_lines, root / f) for f in ("t5", "bart", "gpt2")}


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return str(synthetic_glue(tmp_path_factory.mktemp("glue") / "glue"))


# --- GLUE ---------------------------------------------------------------------------------------


def test_t5_learns_glue_label_words(checkpoints, sst2, tmp_path):
    summary = run_finetune("glue/sst2", checkpoints["t5"], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.num_train_epochs=8", "training.learning_rate=3e-3"])
    metrics = summary["sst2"]
    assert metrics["accuracy"] > 0.9, metrics  # the label word is readable from the sentence
    assert 0.0 <= metrics["unparsable"] < 0.1, metrics
    recipe = json.loads((tmp_path / "sst2" / "recipe.json").read_text())
    assert recipe["task"] == "glue-t5"  # chosen from the checkpoint's model_type


def test_t5_glue_counts_unparsable_output_as_wrong(checkpoints, sst2, tmp_path):
    """Untrained, the model emits no label word: all of it is unparsable and scored as wrong."""
    summary = run_finetune("glue/sst2", checkpoints["t5"], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.max_steps=1", "training.learning_rate=1e-9"])
    assert summary["sst2"]["unparsable"] == 1.0
    assert summary["sst2"]["accuracy"] == 0.0


def test_t5_glue_parses_and_scores_regression_and_pairs(checkpoints):
    """STS-B: numbers parse, non-numbers and NaN fall back to the training mean; MRPC: an unparsable
    output becomes the other class, which binary F1 accepts (an id of -1 would not)."""
    from pipelines.config import load_recipe
    from tasks.base import get_task
    from tasks.metrics import glue_metric

    def task(name):
        recipe = load_recipe("glue-t5", [f"model.name_or_path={checkpoints['t5']}", f"objective.glue_task={name}"])
        return get_task(recipe.task)(recipe)

    stsb = task("stsb")
    stsb.mean_label = 2.5
    assert stsb.parse("3.8", 1.0) == (3.8, True)
    assert stsb.parse("nan", 1.0) == (2.5, False) and stsb.parse("similar", 1.0) == (2.5, False)
    assert len(stsb.label_words()) == 26 and stsb.label_words()[-1] == "5.0"
    mrpc = task("mrpc")
    assert mrpc.parse("equivalent", 0) == (1, True)
    assert mrpc.parse("maybe", 1) == (0, False) and mrpc.parse("maybe", 0) == (1, False)
    scores = glue_metric("mrpc", [mrpc.parse(t, r)[0] for t, r in (("maybe", 1), ("equivalent", 1))], [1, 1])
    assert scores["accuracy"] == 0.5 and 0 < scores["f1"] < 1


@pytest.mark.parametrize("family,lr", [("gpt2", "3e-3"), ("bart", "1e-3")])  # post-LN BART wants less
def test_decoder_and_encoder_decoder_classify_through_glue(family, lr, checkpoints, sst2, tmp_path):
    from transformers import AutoConfig

    summary = run_finetune("glue/sst2", checkpoints[family], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.num_train_epochs=6", f"training.learning_rate={lr}"])
    assert summary["sst2"]["accuracy"] > 0.85, summary
    export = tmp_path / "sst2" / "final"
    config = AutoConfig.from_pretrained(export)
    assert config.architectures[0].endswith("ForSequenceClassification")
    assert config.pad_token_id == 1  # the tokenizer's <pad>, not <|endoftext|> / </s>


def test_bart_pair_rows_keep_their_eos_tokens_when_truncated(checkpoints, tmp_path):
    """BartForSequenceClassification reads the last </s> and refuses rows with different </s> counts:
    the pair template <s> A </s></s> B </s> must survive truncation in every row."""
    import torch

    from pipelines.config import load_recipe
    from tasks.base import get_task

    long = " ".join(["the value of the object is returned"] * 8)
    rows = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"] + [
        f"{i % 2}\t{i}\t{i}\t{long if i % 2 else 'short one'}\t{'short two' if i % 2 else long}" for i in range(6)]
    (tmp_path / "MRPC").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "MRPC" / name).write_text("\n".join(rows) + "\n")
    recipe = load_recipe("glue", [f"model.name_or_path={checkpoints['bart']}", "objective.glue_task=mrpc",
                                  f"objective.glue_dir={tmp_path}", "data.max_seq_length=24"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    train, _ = task.prepare(tok)
    batch = task.collate(train, torch.Generator())
    eos = (batch["input_ids"] == tok.eos_token_id).sum(1)
    assert eos.tolist() == [3] * 6
    assert max(len(e["input_ids"]) for e in train) == 24  # the long rows were cut
    model = task.build_model(tok)
    assert torch.isfinite(task.loss(model, batch)["loss"])


def test_setup_fits_the_length_to_the_checkpoint_without_writing_the_recipe(checkpoints, sst2):
    """The 64-position checkpoints cannot take the recipe's 128 tokens: the task uses 64, and the
    recipe (saved as recipe.json) keeps what the user asked for."""
    from pipelines.config import load_recipe
    from tasks.base import get_task
    from tasks.finetuning.glue_t5 import glue_recipe_for

    assert (glue_recipe_for("t5"), glue_recipe_for("bart"), glue_recipe_for("gpt2")) == ("glue-t5", "glue", "glue")
    for family in ("bart", "gpt2"):
        recipe = load_recipe("glue", [f"model.name_or_path={checkpoints[family]}", f"objective.glue_dir={sst2}",
                                      "data.max_seq_length=128"])
        task = get_task(recipe.task)(recipe)
        tok = task.load_tokenizer()
        task.setup(tok)
        assert task.tokenizer is tok and task.max_length == 64 and recipe.data.max_seq_length == 128
        train, _ = task.prepare(tok)  # after setup: does not redo it
        assert max(len(e["input_ids"]) for e in train) <= 64


# --- summarization ------------------------------------------------------------------------------


def _lead_dataset(path, lines, n=360):
    """Summaries that are the source's first sentence (one of 16 'headlines'; two filler sentences
    from a different pool follow): learnable by a tiny model in seconds, scored by ROUGE / BLEU."""
    rng = random.Random(0)
    short = sorted({ln for ln in lines if 5 <= len(ln.split()) <= 8})
    rng.shuffle(short)
    heads, filler = short[:16], short[16:]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            head = rng.choice(heads)
            f.write(json.dumps({"document": " ".join([head] + rng.sample(filler, 2)), "summary": head}) + "\n")
    return str(path)


_S2S = ["data.max_seq_length=64", "objective.max_target_length=32", "objective.num_beams=2",
        "data.validation_fraction=0.1", "training.per_device_train_batch_size=16", "training.logging_steps=20"]


def test_t5_summarization_learns_the_lead_and_reports_rouge_bleu(checkpoints, corpus_lines, tmp_path, capsys):
    data = _lead_dataset(tmp_path / "lead.jsonl", corpus_lines)
    metrics = run_finetune("summarization", checkpoints["t5"], data=data, output_dir=str(tmp_path / "out"),
                           overrides=_S2S + ["training.num_train_epochs=8", "training.learning_rate=2e-3"])
    # a constant output (one headline for every source) scores about 1/16 of exact matches
    assert metrics["rouge1"] > 0.7 and metrics["rouge2"] > 0.5 and metrics["bleu"] > 40, metrics
    assert metrics["rouge2"] <= metrics["rouge1"] and metrics["rougeL"] <= metrics["rouge1"]
    assert 0 < metrics["rougeLsum"] <= 1 and metrics["gen_len"] > 3
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert saved["rouge1"] == metrics["rouge1"] and saved["data"] == data
    recipe = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert recipe["task"] == "seq2seq" and recipe["model"]["name_or_path"] == checkpoints["t5"]
    assert "rouge1=" in capsys.readouterr().out


def test_bart_summarization_from_csv_with_named_columns(checkpoints, tmp_path):
    """BART (decoder starts at </s>, targets start with <s>), a csv, columns named in the recipe; the
    default max_target_length (128) is cut to the 64-position decoder, for targets and generation."""
    import csv

    with open(tmp_path / "pairs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "tldr"])
        writer.writerows([(f"the value {i} is returned by the object.", f"value {i}.") for i in range(40)])
    metrics = run_finetune("summarization", checkpoints["bart"], data=str(tmp_path / "pairs.csv"),
                           output_dir=str(tmp_path / "out"),
                           overrides=["data.max_seq_length=64", "objective.num_beams=2", "training.max_steps=3",
                                      "objective.source_column=body", "objective.target_column=tldr"])
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "gen_len", "loss"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("rouge1", "rouge2", "rougeL")) and 0 <= metrics["bleu"] <= 100
    assert 0 <= metrics["gen_len"] <= 63


def test_bart_targets_and_generation_fit_the_decoder_position_table(checkpoints, tmp_path):
    """BART's decoder has learned positions (64 here): longer targets are cut, and a model that never
    says </s> stops generating at the table's end instead of failing with an index error."""
    import torch

    from pipelines.config import load_recipe
    from tasks.base import get_task

    data = _rows(tmp_path / "d.jsonl", [{"document": "a b c.", "summary": "a."}] * 3)
    recipe = load_recipe("summarization", [f"model.name_or_path={checkpoints['bart']}", f"objective.dataset={data}",
                                           "objective.max_target_length=500", "data.max_seq_length=64"])
    task = get_task(recipe.task)(recipe)
    tok = task.tokenizer = task.load_tokenizer()
    examples = task.encode(["the value of the object"], [" ".join(["value"] * 300)])
    assert len(examples[0]["labels"]) == 64 and examples[0]["labels"][-1] == tok.eos_token_id
    batch = task.collate(examples, torch.Generator())
    model = task.build_model(tok)
    assert torch.isfinite(task.loss(model, batch)["loss"])
    _, lengths = task.generate(model, batch, max_new_tokens=500, num_beams=1, suppress_tokens=[tok.eos_token_id],
                               forced_eos_token_id=None)
    assert lengths == [63]  # 64 positions: the start token and 63 new ones


# --- user mistakes ------------------------------------------------------------------------------


def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("case,message", [
    ("missing", "not found"),
    ("empty", "empty"),
    ("no_summary", "none of the columns summary, highlights, target, output (columns: document, headline)"),
    ("named_missing", "no column 'body' (columns: document, summary); set objective.source_column"),
    ("blank", "no row with both a source and a target text (3 rows read)"),
    ("format", "unknown format '.txt'"),
    ("hub", "cannot load it"),  # a Hub name while offline (conftest sets HF_HUB_OFFLINE=1)
])
def test_bad_summarization_data_is_one_line_error(case, message, checkpoints, tmp_path):
    overrides = []
    if case == "missing":
        data = str(tmp_path / "nope.jsonl")
    elif case == "empty":
        data = str(tmp_path / "empty.jsonl")
        (tmp_path / "empty.jsonl").write_text("\n")
    elif case == "no_summary":
        data = _rows(tmp_path / "d.jsonl", [{"document": "a b c.", "headline": "a."}] * 3)
    elif case == "named_missing":
        data = _rows(tmp_path / "d.jsonl", [{"document": "a b c.", "summary": "a."}] * 3)
        overrides = ["objective.source_column=body"]
    elif case == "blank":
        data = _rows(tmp_path / "d.jsonl", [{"document": "a b c.", "summary": " "}, {"document": None, "summary": "x"},
                                             {"document": "", "summary": "y"}])
    elif case == "hub":
        data = "lmforge-tests/no-such-dataset"
    else:
        data = str(tmp_path / "d.txt")
        (tmp_path / "d.txt").write_text("some text\n")
    with pytest.raises(LmforgeError) as err:
        run_finetune("summarization", checkpoints["t5"], data=data, output_dir=str(tmp_path / "out"),
                     overrides=overrides)
    text = str(err.value)
    assert message in text and "\n" not in text
    if case != "missing":
        assert data in text  # the file is named


def test_summarization_needs_data_and_an_encoder_decoder(checkpoints, tmp_path):
    data = _rows(tmp_path / "d.jsonl", [{"document": "a b c.", "summary": "a."}] * 3)
    with pytest.raises(LmforgeError, match="--data"):
        run_finetune("summarization", checkpoints["t5"], output_dir=str(tmp_path / "out"))
    with pytest.raises(LmforgeError, match="model_type 'gpt2' is not an encoder-decoder"):
        run_finetune("summarization", checkpoints["gpt2"], data=data, output_dir=str(tmp_path / "out"))
