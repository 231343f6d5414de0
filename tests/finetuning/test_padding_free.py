"""training.padding_free: GLUE examples packed into fewer rows give the padded path's logits and
gradients (fp32 within float noise, bf16 within its rounding) for BERT, RoBERTa, ALBERT and ELECTRA
with their real tokenizers; losses, counts and metrics are unchanged (classification and STS-B
regression); auto packs only where it removes rows; unsupported settings fall back or are refused in
one line; a whole fine-tuning run gives the same losses and dev metrics packed and padded."""

import json
import random

import pytest
import torch
from test_grouped_batching import varied_glue
from test_lora import _tiny_checkpoint

from pipelines.config import load_recipe
from pipelines.errors import LmforgeError
from tasks.base import get_task
from tasks.finetuning import padding_free
from tasks.finetuning.padding_free import collate_packed, pack_rows

FAMILIES = ("bert", "roberta", "roberta-prelayernorm", "albert", "electra", "modernbert")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {f: _tiny_checkpoint(f, root / f) for f in FAMILIES + ("gpt2",)}


def glue_task(path, glue_task="mrpc", *overrides):
    recipe = load_recipe("glue", [f"model.name_or_path={path}", f"objective.glue_task={glue_task}",
                                  "training.mixed_precision=no", *overrides])
    task = get_task("glue")(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    return task, tok


def pair_examples(task, n=12, seed=0, regression=False):
    """Sentence pairs of 1 to 20 words each (token types 0 and 1), tokenized as GLUE's _encode does."""
    rng = random.Random(seed)
    words = "the value of an object is what it holds and returns when asked".split()
    a = [" ".join(rng.choices(words, k=rng.randint(1, 20))) for _ in range(n)]
    b = [" ".join(rng.choices(words, k=rng.randint(1, 20))) for _ in range(n)]
    labels = [round(rng.uniform(0, 5), 2) if regression else rng.randint(0, 1) for _ in range(n)]
    return task._encode({"sentence1": a, "sentence2": b, "label": labels}, 0)


def test_first_fit_decreasing_packs_each_example_once_within_the_width():
    lengths = [7, 3, 10, 2, 5, 5, 1, 10, 4]
    rows = pack_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    assert len(rows) == 5 == -(-sum(lengths) // 10)  # 47 tokens: 5 full-ish rows, the least possible here
    assert rows == pack_rows(lengths, 10) and all(r == sorted(r) for r in rows)

    ex = [{"input_ids": list(range(100, 100 + n))} for n in lengths]
    b = collate_packed(ex, pad_id=0)
    assert b["input_ids"].shape == (5, 10) and int(b["attention_mask"].sum()) == sum(lengths)
    for i, n in enumerate(lengths):  # each example at its offset, positions from 0, its own segment
        flat = b["cls_positions"][i].item()
        r, s = divmod(flat, 10)
        assert b["input_ids"][r, s:s + n].tolist() == ex[i]["input_ids"]
        assert b["position_ids"][r, s:s + n].tolist() == list(range(n))
        assert (b["segment_ids"][r, s:s + n] == i).all()
    assert (b["input_ids"][b["segment_ids"] < 0] == 0).all()


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _logits_and_grads(task, model, batch):
    model.zero_grad(set_to_none=True)
    logits = task._logits(model, batch)
    task._loss_from_logits(logits, batch)["loss"].backward()
    return logits.detach(), _grads(model)


@pytest.mark.parametrize("case", FAMILIES + ("bert-eager", "bert-lora", "modernbert-mean"))
def test_packed_logits_and_gradients_equal_the_padded_ones(checkpoints, case):
    family, _, variant = (case, "", "") if case in FAMILIES else case.partition("-")
    extra = {"lora": ["objective.peft=lora", "objective.lora.dropout=0.0"],
             "mean": ["model.family=modernbert", "model.config.classifier_pooling=mean"]}.get(variant, [])
    packed, tok = glue_task(checkpoints[family], "mrpc", "training.padding_free=true", *extra)
    padded, _ = glue_task(checkpoints[family], "mrpc", "training.padding_free=false", *extra)
    assert packed.packed and not padded.packed
    torch.manual_seed(0)
    model = packed.build_model(tok)
    assert model.config.classifier_pooling == "mean" if variant == "mean" else True
    if variant == "eager":
        model.set_attn_implementation("eager")
    model.eval()  # dropout off: both layouts must see the same function
    examples = pair_examples(packed)
    gen = torch.Generator()
    pb, db = packed.collate(examples, gen), padded.collate(examples, gen)
    assert pb["input_ids"].shape[0] < db["input_ids"].shape[0], "the test needs a batch that packs"
    assert torch.equal(pb["labels"], db["labels"]) and packed.tokens_in(pb) == padded.tokens_in(db)
    assert packed.loss_counts(pb)["loss"] == padded.loss_counts(db)["loss"] == len(examples)

    lp, gp = _logits_and_grads(packed, model, pb)
    ld, gd = _logits_and_grads(padded, model, db)
    assert lp.shape == ld.shape == (len(examples), 2)
    torch.testing.assert_close(lp, ld, rtol=1e-5, atol=1e-5)
    assert gp.keys() == gd.keys() and len(gp) > 2
    for name in gp:  # float noise scales with the tensor (mean pooling sums every token's share of a row)
        scale = max(1.0, gd[name].abs().max().item())
        torch.testing.assert_close(gp[name], gd[name], rtol=1e-4, atol=1e-6 * scale, msg=name)
    base = padding_free._transformers_model(model).base_model
    assert not getattr(base, "encoder", base)._forward_hooks  # the hook is gone

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bp, bd = packed._logits(model, pb).float(), padded._logits(model, db).float()
    torch.testing.assert_close(bp, ld, rtol=0, atol=5e-2)  # bf16 keeps ~3 significant digits
    torch.testing.assert_close(bp, bd, rtol=0, atol=5e-2)


@pytest.mark.parametrize("glue_name", ["mrpc", "stsb"])
def test_glue_losses_and_metrics_are_unchanged(checkpoints, glue_name):
    """The loss sums, their counts and GLUE's metrics over several eval batches, through the engine's
    evaluate(), are the padded path's (STS-B: MSE on float scores, Pearson/Spearman)."""
    from pipelines.engine.accelerator import make_accelerator
    from pipelines.engine.step import evaluate

    regression = glue_name == "stsb"
    packed, tok = glue_task(checkpoints["roberta"], glue_name, "training.padding_free=true")
    padded, _ = glue_task(checkpoints["roberta"], glue_name, "training.padding_free=false")
    torch.manual_seed(0)
    model = packed.build_model(tok)
    examples = pair_examples(packed, n=48, seed=1, regression=regression)
    gen = torch.Generator()
    results = []
    for task in (packed, padded):
        batches = [task.collate(examples[i:i + 16], gen) for i in range(0, 48, 16)]
        assert any(padding_free.is_packed(b) for b in batches) == (task is packed)
        results.append(evaluate(make_accelerator(task.recipe.training), model, task, batches))
    assert results[0].keys() == results[1].keys()
    assert ("eval/pearson" in results[0]) == regression
    for key in results[0]:  # a random model's correlations are ill-conditioned: 1e-7 logit noise moves them ~1e-6
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-5, abs=1e-5), key


def test_auto_packs_only_where_it_removes_rows(checkpoints):
    auto, _ = glue_task(checkpoints["bert"], "sst2")
    always, _ = glue_task(checkpoints["bert"], "sst2", "training.padding_free=true")
    never, _ = glue_task(checkpoints["bert"], "sst2", "training.padding_free=false")
    assert auto.recipe.training.padding_free == "auto" and auto.packed and always.packed and not never.packed
    row = lambda n: {"input_ids": [2] * n, "token_type_ids": [0] * n, "label": 1, "split": 0}  # noqa: E731
    gen = torch.Generator()
    even = [row(12)] * 9 + [row(7)]  # as length-grouped batches are: one row saved of 10, too little
    skewed = [row(30)] + [row(3)] * 9  # as random SST-2 batches are
    assert not padding_free.is_packed(auto.collate(even, gen))
    assert padding_free.is_packed(always.collate(even, gen))
    packed = auto.collate(skewed, gen)
    assert padding_free.is_packed(packed) and packed["input_ids"].shape == (2, 30)
    assert not padding_free.is_packed(never.collate(skewed, gen))


def test_unsupported_settings_fall_back_or_are_refused_in_one_line(checkpoints, tmp_path):
    gpt2, _ = glue_task(checkpoints["gpt2"], "sst2")  # auto: GPT-2 reads its last token, it pads
    assert not gpt2.packed
    with pytest.raises(LmforgeError, match=r"training.padding_free=true: not supported for model type 'gpt2'") as e:
        glue_task(checkpoints["gpt2"], "sst2", "training.padding_free=true")
    assert "\n" not in str(e.value)
    with pytest.raises(LmforgeError, match=r"training.padding_free: 'sometimes' is not one of auto, true, false"):
        load_recipe("glue", ["training.padding_free=sometimes"])
    # a distillation student's loss and collation are its own: not shown exact packed
    recipe = load_recipe("distill-kd", [f"model.name_or_path={checkpoints['bert']}", f"objective.teacher={tmp_path}",
                                        "training.padding_free=true"])
    with pytest.raises(LmforgeError, match=r"task 'distill-kd' has its own loss or collation"):
        get_task("distill-kd")(recipe)
    auto = get_task("distill-kd")(load_recipe("distill-kd", [f"model.name_or_path={checkpoints['bert']}",
                                                             f"objective.teacher={tmp_path}"]))
    assert not auto.packed


def test_modernbert_packs_with_either_pooling_and_only_global_attention():
    from transformers import ModernBertConfig

    full = {"num_hidden_layers": 2, "layer_types": ["full_attention"] * 2}
    assert padding_free.unsupported_reason(ModernBertConfig(**full)) is None
    assert "sliding-window" in padding_free.unsupported_reason(ModernBertConfig(num_hidden_layers=3))  # its default
    assert padding_free.unsupported_reason(ModernBertConfig(**full, classifier_pooling="mean")) is None


def test_a_finetuning_run_packed_gives_the_padded_runs_losses_and_metrics(checkpoints, tmp_path, monkeypatch):
    """Dropout off (a checkpoint saved without it): its masks would differ with the layout."""
    import shutil

    from transformers import AutoConfig

    from pipelines.commands.finetune import run_finetune

    base = tmp_path / "no-dropout"
    shutil.copytree(checkpoints["bert"], base)
    config = AutoConfig.from_pretrained(base)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(base)
    glue = varied_glue(tmp_path / "glue")
    calls = []
    real = padding_free.packed_logits
    monkeypatch.setattr(padding_free, "packed_logits", lambda *a: calls.append(1) or real(*a))
    runs = {}
    for setting in ("true", "false"):
        out = tmp_path / setting
        runs[setting] = run_finetune("glue/sst2", str(base), glue_dir=str(glue), output_dir=str(out), overrides=[
            f"training.padding_free={setting}", "training.per_device_train_batch_size=16", "training.max_steps=8",
            "training.logging_steps=1", "training.mixed_precision=no", "training.learning_rate=1e-3"])["sst2"]
        rows = [json.loads(ln) for ln in (out / "sst2" / "metrics.jsonl").read_text().splitlines()]
        runs[setting]["losses"] = [r["loss"] for r in rows if "loss" in r]
        if setting == "true":
            assert len(calls) >= 8  # every training step (and the evaluation's skewed batches) went packed
    assert len(runs["true"]["losses"]) == 8
    assert runs["true"]["losses"] == pytest.approx(runs["false"]["losses"], rel=1e-4)
    assert runs["true"]["accuracy"] == runs["false"]["accuracy"]
