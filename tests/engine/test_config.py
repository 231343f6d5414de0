"""Recipes: every shipped recipe validates, bases merge, typos and bad types fail loudly."""

import pytest

from pipelines.config import RECIPE_DIR, load_recipe
from pipelines.errors import LmforgeError


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
def test_every_recipe_loads_and_names_a_known_task(name):
    from tasks.base import get_task
    from tasks.finetuning.downstream import DownstreamTask
    from tasks.finetuning.text_to_text import TextToTextFinetune

    recipe = load_recipe(name)
    task = get_task(recipe.task)
    assert recipe.name == name
    needs_checkpoint = task.name.startswith(("glue", "distill")) or issubclass(task, (DownstreamTask,
                                                                                      TextToTextFinetune))
    if needs_checkpoint:  # `finetune` / `distill` set the checkpoint (and the data): validate the parameters
        from pipelines.config import validate_params

        teacher = {"teacher": "folder"} if task.name.startswith("distill") else {}  # `make distill` sets it
        validate_params(task.Params, {**recipe.objective, **teacher}, name)
    else:
        task(recipe)  # objective parameters validate


def test_base_recipe_is_extended_not_replaced():
    tiny, base = load_recipe("bert-tiny"), load_recipe("bert-base")
    assert tiny.model.config["hidden_size"] == 256 and base.model.config["hidden_size"] == 768
    assert "adam_epsilon" not in open(RECIPE_DIR / "bert-tiny.yaml").read()
    assert tiny.training.adam_epsilon == base.training.adam_epsilon == 1e-6  # inherited from the base
    assert tiny.objective == base.objective
    assert tiny.training.output_dir == "runs/bert-tiny"


def test_overrides_are_typed():
    r = load_recipe("bert-tiny", ["training.learning_rate=3e-4", "data.max_seq_length=64"])
    assert r.training.learning_rate == pytest.approx(3e-4) and r.data.max_seq_length == 64


@pytest.mark.parametrize("override, words", [
    (["training.learning_rte=1"], "learning_rte"),
    (["training.max_steps=ten"], "max_steps"),
    (["nonsense"], "key=value"),
])
def test_bad_overrides_name_the_field(override, words):
    with pytest.raises(LmforgeError, match=words):
        load_recipe("bert-tiny", override)


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(LmforgeError, match="bert-tiny"):
        load_recipe("bert-tinny")


def test_unknown_objective_parameter_is_refused():
    from tasks.base import get_task

    recipe = load_recipe("bert-tiny", ["objective.mlm_probabilty=0.2"])
    with pytest.raises(LmforgeError, match="mlm_probabilty"):
        get_task(recipe.task)(recipe)


def test_unknown_model_config_key_is_refused(tmp_path):
    """At load, before a tokenizer is trained; build_config refuses it too (recipes built by hand)."""
    from tasks.shared.modeling import build_config

    overrides = ["model.config.hiden_size=64", f"training.output_dir={tmp_path}"]
    with pytest.raises(LmforgeError, match="model.config.hiden_size"):
        load_recipe("bert-tiny", overrides)
    recipe = load_recipe("bert-tiny", [f"training.output_dir={tmp_path}"])
    recipe.model.config["hiden_size"] = 64
    with pytest.raises(LmforgeError, match="hiden_size"):
        build_config(recipe, tokenizer=None)
    assert not (tmp_path / "tokenizer").exists()


def test_a_value_the_config_class_rejects_is_refused_in_one_line():
    """transformers' own field checks (here ModernBERT's pooling choices) run at load, not as a
    traceback from deep inside the model's construction."""
    with pytest.raises(LmforgeError, match=r"model.config.classifier_pooling: .*expected one of .*got max") as e:
        load_recipe("modernbert-mini-cram", ["model.config.classifier_pooling=max"])
    assert "\n" not in str(e.value)


def test_modernbert_config_takes_the_tokenizers_special_ids(tmp_path):
    """ModernBERT's defaults are its released vocabulary's ids (50281/50282): cls and sep come from our
    WordPiece tokenizer, and bos/eos, which it lacks, are cleared rather than left out of range."""
    from pipelines.data.default_corpus import default_corpus_path
    from tasks.shared.modeling import build_config
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:500]
    tok = build_tokenizer("modernbert", lines, 500, tmp_path, model_max_length=64)
    config = build_config(load_recipe("modernbert-mini-cram"), tok)
    assert (config.cls_token_id, config.sep_token_id) == (tok.cls_token_id, tok.sep_token_id)
    assert config.bos_token_id is None and config.eos_token_id is None
    assert config.pad_token_id == tok.pad_token_id and config.vocab_size == len(tok)


# --- value ranges: every bad value fails at load, naming the field ------------------------------

@pytest.mark.parametrize("overrides, field", [
    (["training.per_device_train_batch_size=0"], "training.per_device_train_batch_size"),
    (["training.per_device_eval_batch_size=0"], "training.per_device_eval_batch_size"),
    (["training.gradient_accumulation_steps=0"], "training.gradient_accumulation_steps"),
    (["training.learning_rate=0"], "training.learning_rate"),
    (["training.learning_rate=-1e-4"], "training.learning_rate"),
    (["training.learning_rate=nan"], "training.learning_rate"),
    (["training.max_steps=0"], "training.max_steps"),
    (["training.max_steps=-5"], "training.max_steps"),
    (["training.max_steps=-1", "training.num_train_epochs=0"], "training.num_train_epochs"),
    (["training.logging_steps=0"], "training.logging_steps"),
    (["training.eval_steps=-1"], "training.eval_steps"),
    (["training.save_steps=-1"], "training.save_steps"),
    (["training.save_total_limit=-1"], "training.save_total_limit"),
    (["training.warmup_steps=-1"], "training.warmup_steps"),
    (["training.warmup_ratio=1.0"], "training.warmup_ratio"),
    (["training.warmup_ratio=-0.1"], "training.warmup_ratio"),
    (["training.weight_decay=-0.01"], "training.weight_decay"),
    (["training.max_grad_norm=-1"], "training.max_grad_norm"),
    (["training.adam_beta1=1.0"], "training.adam_beta1"),
    (["training.adam_beta2=-0.5"], "training.adam_beta2"),
    (["training.adam_epsilon=0"], "training.adam_epsilon"),
    (["training.lr_scheduler_type=cosin"], "training.lr_scheduler_type"),
    (["training.mixed_precision=fp8"], "training.mixed_precision"),
    (["training.report_to=mlflow"], "training.report_to"),
    (["data.max_seq_length=4"], "data.max_seq_length"),
    (["data.validation_fraction=1.0"], "data.validation_fraction"),
    (["data.validation_fraction=-0.1"], "data.validation_fraction"),
    (["data.dupe_factor=0"], "data.dupe_factor"),
    (["data.max_documents=0"], "data.max_documents"),
    (["tokenizer.vocab_size=20"], "tokenizer.vocab_size"),  # BERT: 5 specials + 16 learned at least
    (["tokenizer.model_max_length=0"], "tokenizer.model_max_length"),
    (["model.config.num_hidden_layers=two"], "model.config.num_hidden_layers"),
    (["model.config.hidden_dropout_prob=high"], "model.config.hidden_dropout_prob"),
])
def test_out_of_range_values_fail_at_load(overrides, field):
    with pytest.raises(LmforgeError) as err:
        load_recipe("bert-tiny", overrides)
    text = str(err.value)
    assert field in text and "recipe 'bert-tiny'" in text and "\n" not in text


def test_boundary_values_load():
    r = load_recipe("bert-tiny", [
        "training.max_steps=-1", "training.num_train_epochs=0.5", "training.eval_steps=0", "training.save_steps=0",
        "training.save_total_limit=0", "training.warmup_ratio=0", "training.weight_decay=0", "training.adam_beta1=0",
        "data.validation_fraction=0", "data.max_seq_length=8", "tokenizer.vocab_size=21",
        "training.lr_scheduler_type=cosine"])
    assert r.training.max_steps == -1 and r.tokenizer.vocab_size == 21


def test_vocab_size_minimum_follows_the_family():
    """Byte-level BPE needs its 256 byte symbols on top of the special tokens."""
    with pytest.raises(LmforgeError, match="tokenizer.vocab_size: 200 is out of range"):
        load_recipe("gpt2-tiny", ["tokenizer.vocab_size=200"])


def test_check_range_helpers():
    from pipelines.config import check_choice, check_probability, check_range

    check_range("w", "x", None, lo=1)  # unset optional fields pass
    check_range("w", "x", 1, lo=1)
    check_probability("w", "p", 0.0)
    check_probability("w", "p", 1.0)
    for value in (-0.1, 1.5, float("nan")):
        with pytest.raises(LmforgeError, match=r"w, p: .* is out of range \(must be in \[0.0, 1.0\]\)"):
            check_probability("w", "p", value)
    with pytest.raises(LmforgeError, match=r"must be > 0"):
        check_range("w", "x", 0, lo=0, lo_open=True)
    with pytest.raises(LmforgeError, match=r"must be in \(0, 1\)"):
        check_range("w", "x", 1, lo=0, hi=1, lo_open=True, hi_open=True)
    with pytest.raises(LmforgeError, match="'c' is not one of a, b"):
        check_choice("w", "x", "c", ("a", "b"))


def test_params_check_hook_runs_after_typing():
    from dataclasses import dataclass

    from pipelines.config import check_probability, validate_params

    @dataclass
    class P:
        rate: float = 0.15

        def check(self, where):
            check_probability(where, "rate", self.rate)

    assert validate_params(P, {"rate": 0.5}, "here").rate == 0.5
    with pytest.raises(LmforgeError, match="here, rate: 1.5 is out of range"):
        validate_params(P, {"rate": 1.5}, "here")


@pytest.mark.parametrize("recipe, override, field", [
    ("glue", "objective.max_train_examples=0", "max_train_examples"),
    ("glue", "objective.max_eval_examples=-1", "max_eval_examples"),
    ("glue-t5", "objective.max_new_tokens=0", "max_new_tokens"),
    ("summarization", "objective.num_beams=0", "num_beams"),
    ("summarization", "objective.max_target_length=0", "max_target_length"),
    ("summarization", "objective.no_repeat_ngram_size=-1", "no_repeat_ngram_size"),
])
def test_finetuning_params_are_range_checked(recipe, override, field):
    from pipelines.config import validate_params
    from tasks.base import get_task

    r = load_recipe(recipe, [override])
    with pytest.raises(LmforgeError, match=f"section 'objective', {field}: "):
        validate_params(get_task(r.task).Params, r.objective, f"recipe '{r.name}', section 'objective'")


def test_bad_yaml_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining: [unclosed\n")
    with pytest.raises(LmforgeError, match="not valid YAML") as exc:
        load_recipe(str(bad))
    assert "\n" not in str(exc.value)
