"""RTE / MRPC / STS-B started from an MNLI checkpoint (objective.init_from, --init_from): the encoder
is the MNLI model's, the head is new where its shape differs, the tokenizers must agree."""

import json
import shutil

import pytest
from conftest import tiny_bert_checkpoint

from pipelines.errors import LmforgeError

MNLI_LABELS = ("entailment", "neutral", "contradiction")


def mnli_checkpoint(base, folder):
    """A 3-label classifier from `base` whose every weight moved (as fine-tuning would move them),
    saved with base's tokenizer, as a finetune export is."""
    import torch
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        base, id2label=dict(enumerate(MNLI_LABELS)), label2id={n: i for i, n in enumerate(MNLI_LABELS)})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def synthetic_rte(root, n_train=64, n_dev=16):
    """RTE in the GLUE TSV layout (index, sentence1, sentence2, label name)."""
    (root / "RTE").mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            label = ("entailment", "not_entailment")[i % 2]
            rows.append(f"{i}\tthe object value is good\tthe value is {'good' if i % 2 == 0 else 'bad'}\t{label}")
        (root / "RTE" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def _built(base, task, init_from):
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("glue", [f"model.name_or_path={base}", f"objective.glue_task={task}",
                                  f"objective.init_from={init_from}"])
    glue = get_task(recipe.task)(recipe)
    tokenizer = glue.load_tokenizer()
    glue.setup(tokenizer)
    return glue.build_model(tokenizer)


@pytest.mark.parametrize("task, labels", [("rte", 2), ("stsb", 1)])
def test_encoder_comes_from_the_mnli_checkpoint_and_the_head_is_new(tmp_path, capsys, task, labels):
    import torch
    import transformers

    base = tiny_bert_checkpoint(tmp_path / "base")
    mnli = mnli_checkpoint(base, tmp_path / "mnli")
    model = _built(base, task, mnli)
    ours = model.state_dict()
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(mnli).state_dict()
    pretrained = transformers.AutoModel.from_pretrained(base).state_dict()
    encoder = [k for k in ours if k.startswith("bert.")]
    assert len(encoder) > 20 and all(torch.equal(ours[k], theirs[k]) for k in encoder)
    query = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(ours[f"bert.{query}"], pretrained[query])  # the MNLI weights, not the base's
    assert ours["classifier.weight"].shape == (labels, 32) != theirs["classifier.weight"].shape
    assert model.config.num_labels == labels
    assert model.config.problem_type == ("regression" if labels == 1 else "single_label_classification")
    assert "new weights: classifier.bias, classifier.weight" in capsys.readouterr().out


def test_a_checkpoint_with_another_tokenizer_is_refused(tmp_path):
    import transformers

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    base = tiny_bert_checkpoint(tmp_path / "base")
    other = shutil.copytree(mnli_checkpoint(base, tmp_path / "mnli"), tmp_path / "other")
    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][4000:6000]
    build_tokenizer("bert", lines, 900, other, model_max_length=64, overwrite=True)  # replaces the tokenizer files
    assert len(transformers.AutoTokenizer.from_pretrained(other)) != 1000
    with pytest.raises(LmforgeError, match=r"objective\.init_from=.*other: its tokenizer differs from "
                                           r"model\.name_or_path=.*base's \(\d+ tokens vs \d+\)"):
        _built(base, "rte", other)


def test_finetune_init_from_starts_rte_and_refuses_other_tasks(tmp_path):
    from pipelines.commands.finetune import run_finetune

    base = tiny_bert_checkpoint(tmp_path / "base")
    mnli = mnli_checkpoint(base, tmp_path / "mnli")
    glue = synthetic_rte(tmp_path / "glue")
    run_finetune("glue/rte", str(base), glue_dir=str(glue), output_dir=str(tmp_path / "ft"), init_from=str(mnli),
                 overrides=["training.max_steps=2", "training.warmup_ratio=0.2"])
    recipe = json.loads((tmp_path / "ft" / "rte" / "recipe.json").read_text())
    assert recipe["objective"]["init_from"] == str(mnli.resolve())
    # RTE's per-task batch (16) applies through the driver, the command line's warmup wins over RTE's 0.06
    assert (recipe["training"]["per_device_train_batch_size"], recipe["training"]["warmup_ratio"]) == (16, 0.2)
    assert (tmp_path / "ft" / "rte" / "final" / "model.safetensors").exists()
    with pytest.raises(LmforgeError, match="--init_from .*only rte, mrpc, stsb start from it"):
        run_finetune("glue/sst2", str(base), init_from=str(mnli))
    with pytest.raises(LmforgeError, match="--init_from .*nope: no such checkpoint folder"):
        run_finetune("glue/rte", str(base), glue_dir=str(glue), init_from=str(tmp_path / "nope"))
