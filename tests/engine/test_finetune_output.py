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
