"""The card in every exported folder (pipelines/runs/model_card.py): built with huggingface_hub's
ModelCardData, with the run's own dev results as a model-index once it has evaluated, the pipeline the
export serves, and no local path."""

import json

from conftest import synthetic_glue, tiny_bert_checkpoint


def test_a_fine_tuned_export_carries_its_results_before_any_push(tmp_path):
    from huggingface_hub import ModelCard

    from pipelines.commands.finetune import run_finetune

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    glue = synthetic_glue(tmp_path / "glue")
    summary = run_finetune("glue/sst2", str(ckpt), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                           overrides=["training.num_train_epochs=2", "data.max_seq_length=32"])
    card = ModelCard.load(tmp_path / "ft" / "sst2" / "final" / "README.md")
    data = card.data
    assert data.pipeline_tag == "text-classification" and data.base_model is None  # a local checkpoint
    [result] = [r for r in data.eval_results if r.metric_type == "accuracy"]
    assert result.metric_value == summary["sst2"]["accuracy"] and result.dataset_config == "sst2"
    assert result.task_type == "text-classification"
    assert "/tmp" not in card.content and "world size" not in card.content
    assert "task: `glue` on `sst2`" in card.text and "corpus" not in card.text  # the task's data, not a corpus
    assert f"| accuracy | {summary['sst2']['accuracy']:.4g} |" in card.text
    assert json.loads((tmp_path / "ft" / "sst2" / "results.json").read_text())["steps"] > 0


def test_a_pretraining_export_names_its_pipeline_and_corpus(tmp_path):
    from huggingface_hub import ModelCard

    from pipelines.runs.model_card import card_text

    class Recipe:  # the fields a card reads
        name, task, objective = "bert-tiny", "bert-mlm-nsp", {}

        class model:
            name_or_path = None

        class data:
            corpus, max_seq_length = str(tmp_path / "my-corpus.txt"), 128

        class training:
            per_device_train_batch_size, gradient_accumulation_steps, max_steps = 32, 2, 1000
            learning_rate, lr_scheduler_type, mixed_precision, num_train_epochs = 1e-4, "linear", "bf16", 1.0

    (tmp_path / "my-corpus.txt").write_text("text")
    card = ModelCard(card_text("BertForPreTraining", 4_400_000, Recipe, {"loss": 2.5}, world_size=4))
    assert card.data.pipeline_tag == "fill-mask" and not card.data.eval_results  # no benchmark: no model-index
    assert "corpus: `my-corpus.txt (local)`" in card.text and str(tmp_path) not in card.content
    assert "global batch 256 (32 x 2 accumulation x 4 processes)" in card.text and "| loss | 2.5 |" in card.text
