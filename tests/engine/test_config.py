"""Recipes: every shipped recipe validates, bases merge, typos and bad types fail loudly."""

import pytest

from pipelines.config import RECIPE_DIR, load_recipe
from pipelines.errors import LmforgeError


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
def test_every_recipe_loads_and_names_a_known_task(name):
    from tasks.base import get_task

    recipe = load_recipe(name)
    task = get_task(recipe.task)
    assert recipe.name == name
    if task.name.startswith("glue") or task.name == "seq2seq":  # fine-tuning: a checkpoint is needed to build
        from pipelines.config import validate_params

        validate_params(task.Params, recipe.objective, name)
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
    from tasks.base import get_task

    recipe = load_recipe("bert-tiny", ["model.config.hiden_size=64", f"training.output_dir={tmp_path}",
                                       "tokenizer.vocab_size=500", "data.max_documents=20"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    with pytest.raises(LmforgeError, match="hiden_size"):
        task.build_model(tok)


def test_bad_yaml_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining: [unclosed\n")
    with pytest.raises(LmforgeError, match="not valid YAML") as exc:
        load_recipe(str(bad))
    assert "\n" not in str(exc.value)
