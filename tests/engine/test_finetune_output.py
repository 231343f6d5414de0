"""Fine-tuning's default output folder tells models apart even when every export is called `final` (issue #13)."""

import os

from pipelines.runs.run_folder import default_output_root


def test_models_named_final_get_different_default_folders(tmp_path, monkeypatch):
    for model in ("runs/bert-tiny/final", "runs/roberta-tiny/final", "elsewhere/bert-tiny/final"):
        (tmp_path / model).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    bert, roberta = default_output_root("runs/bert-tiny/final"), default_output_root("runs/roberta-tiny/final")
    elsewhere = default_output_root("elsewhere/bert-tiny/final")
    assert len({bert, roberta, elsewhere}) == 3
    assert bert.parent.as_posix() == "runs/finetune" and bert.name.startswith("bert-tiny-final-")
    assert roberta.name.startswith("roberta-tiny-final-")
    assert default_output_root(os.path.abspath("runs/bert-tiny/final")) == bert  # the same folder, however named
    assert default_output_root("google/electra-small-discriminator").as_posix() == \
        "runs/finetune/google--electra-small-discriminator"


def test_other_settings_get_their_own_default_folder(tmp_path, monkeypatch):
    """A second `make finetune` with another learning rate is a new run beside the first (issue #23)."""
    (tmp_path / "runs/bert-tiny/final").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    plain = default_output_root("runs/bert-tiny/final")
    lr = default_output_root("runs/bert-tiny/final", ["training.learning_rate=3e-5"])
    both = default_output_root("runs/bert-tiny/final", ["training.seed=7", "training.learning_rate=3e-5"])
    assert lr == plain.with_name(plain.name + "@learning_rate-3e-5")
    assert both == default_output_root("runs/bert-tiny/final", ["training.learning_rate=3e-5", "training.seed=7"])
    assert both.name.endswith("@learning_rate-3e-5_seed-7") and len({plain, lr, both}) == 3
    long = default_output_root("runs/bert-tiny/final", [f"objective.lora.target_modules=[q{i},v{i}]" for i in range(9)])
    assert long.name.split("@")[1].startswith("settings-") and "/" not in long.name.split("@")[1]
