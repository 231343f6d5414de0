"""GLUE test-set predictions in the server's submission format: test files written here in the exact
GLUE test layouts (../shared/data/glue has none), predicted by tiny exports, checked for header, row
count, label vocabulary and STS-B clipping; and the fine-tune / --do_predict paths that write them."""

import pytest
from conftest import synthetic_glue

from pipelines.errors import LmforgeError

# the GLUE test headers (column counts as in the official files)
HEADERS = {
    "CoLA/test.tsv": "index\tsentence",
    "SST-2/test.tsv": "index\tsentence",
    "MRPC/test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
    "STS-B/test.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
    "QQP/test.tsv": "id\tquestion1\tquestion2",
    "MNLI/test_matched.tsv": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2",
    "MNLI/test_mismatched.tsv": None,  # same header as matched
    "diagnostic/diagnostic.tsv": "index\tsentence1\tsentence2",
    "QNLI/test.tsv": "index\tquestion\tsentence",
    "RTE/test.tsv": "index\tsentence1\tsentence2",
    "WNLI/test.tsv": "index\tsentence1\tsentence2",
}
HEADERS["MNLI/test_mismatched.tsv"] = HEADERS["MNLI/test_matched.tsv"]


def write_test_files(root, n=7):
    """Every GLUE test file with n rows; the text columns hold words, the rest ids."""
    for rel, header in HEADERS.items():
        cols = header.split("\t")
        rows = [header] + ["\t".join([str(i)] + [f"the value {i} is good" if "sentence" in c or "String" in c
                                                  or "question" in c else f"x{i}" for c in cols[1:]])
                           for i in range(n)]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("tok")
    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:2000]
    build_tokenizer("bert", lines, 1000, out, model_max_length=64)
    return out


def tiny_export(tokenizer_dir, out, task, bias=None):
    """A BERT classification export for `task` (its label names), optionally with a fixed output bias."""
    import torch
    import transformers

    from pipelines.data.glue import get_glue_task

    spec = get_glue_task(task)
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    labels = spec.labels or ("score",)
    config = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64,
                                     id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(bias)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def read_submission(path):
    lines = path.read_text().splitlines()
    return lines[0], [ln.split("\t") for ln in lines[1:]]


@pytest.mark.parametrize("task,names,vocab", [
    ("cola", ["CoLA"], {"0", "1"}), ("sst2", ["SST-2"], {"0", "1"}), ("mrpc", ["MRPC"], {"0", "1"}),
    ("qqp", ["QQP"], {"0", "1"}), ("wnli", ["WNLI"], {"0", "1"}),
    ("qnli", ["QNLI"], {"entailment", "not_entailment"}), ("rte", ["RTE"], {"entailment", "not_entailment"}),
    ("mnli", ["MNLI-m", "MNLI-mm", "AX"], {"entailment", "neutral", "contradiction"})])
def test_submission_files_per_task(task, names, vocab, tokenizer_dir, tmp_path):
    from tasks.finetuning.submission import write_submission

    glue = write_test_files(tmp_path / "glue")
    written = write_submission(tiny_export(tokenizer_dir, tmp_path / "m", task), task, glue, tmp_path / "sub")
    assert sorted(p.name for p in written) == sorted(f"{n}.tsv" for n in names)
    for p in written:
        header, rows = read_submission(p)
        assert header == "index\tprediction"
        assert [r[0] for r in rows] == [str(i) for i in range(7)]  # one row per test row, the test's index
        assert {r[1] for r in rows} <= vocab


@pytest.mark.parametrize("bias,expected", [(9.0, "5.000"), (-3.0, "0.000"), (2.34567, "2.346")])
def test_stsb_scores_are_clipped_with_three_decimals(bias, expected, tokenizer_dir, tmp_path):
    from tasks.finetuning.submission import write_submission

    glue = write_test_files(tmp_path / "glue", n=3)
    (path,) = write_submission(tiny_export(tokenizer_dir, tmp_path / "m", "stsb", bias), "stsb", glue, tmp_path / "s")
    header, rows = read_submission(path)
    assert path.name == "STS-B.tsv" and header == "index\tprediction" and len(rows) == 3
    assert {r[1] for r in rows} == {expected}


def test_finetune_writes_submission_and_do_predict_rewrites_it(tokenizer_dir, tmp_path):
    from pipelines.commands.finetune import run_finetune, run_predict

    glue = synthetic_glue(tmp_path / "glue")
    (glue / "SST-2" / "test.tsv").write_text("index\tsentence\n" + "".join(f"{i}\tthe value is good\n"
                                                                            for i in range(11)))
    base = tiny_export(tokenizer_dir, tmp_path / "base", "sst2")
    run_finetune("glue/sst2", str(base), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                 overrides=["training.max_steps=2", "training.per_device_train_batch_size=8",
                            "objective.max_eval_examples=16"])
    header, rows = read_submission(tmp_path / "ft" / "submission" / "SST-2.tsv")
    assert header == "index\tprediction" and len(rows) == 11

    (written,) = run_predict("glue", str(tmp_path / "ft"), str(glue), str(tmp_path / "again"))  # a run folder
    assert written.read_text() == (tmp_path / "ft" / "submission" / "SST-2.tsv").read_text()
    (one,) = run_predict("glue/sst2", str(tmp_path / "ft" / "sst2" / "final"), str(glue), str(tmp_path / "one"))
    assert one.read_text() == written.read_text()


def test_submission_user_mistakes(tokenizer_dir, tmp_path):
    from pipelines.commands.finetune import run_predict
    from tasks.finetuning.submission import write_submission

    glue = write_test_files(tmp_path / "glue", n=2)
    export = tiny_export(tokenizer_dir, tmp_path / "m", "sst2")
    with pytest.raises(LmforgeError, match="2 labels, GLUE 'mnli' has 3"):
        write_submission(export, "mnli", glue, tmp_path / "s")
    (glue / "SST-2" / "test.tsv").write_text("index\tsentence\n0\ttoo\tmany\n")
    with pytest.raises(LmforgeError, match="test.tsv:2: expected 2 tab-separated fields"):
        write_submission(export, "sst2", glue, tmp_path / "s")
    with pytest.raises(LmforgeError, match="--task glue/<task>"):
        run_predict("glue", str(export), str(glue))
    with pytest.raises(LmforgeError, match="needs --glue_dir"):
        run_predict("glue/sst2", str(export), None)
    with pytest.raises(LmforgeError, match="no GLUE test file"):
        run_predict("glue/cola", str(tiny_export(tokenizer_dir, tmp_path / "c", "cola")), str(tmp_path))


def test_cli_do_predict_writes_without_training(tokenizer_dir, tmp_path, capsys):
    from pipelines.commands.cli import main

    glue = write_test_files(tmp_path / "glue", n=4)
    export = tiny_export(tokenizer_dir, tmp_path / "run" / "rte" / "final", "rte")
    assert main(["finetune", "--do_predict", "--task", "glue/rte", "--model", str(export),
                 "--glue_dir", str(glue)]) == 0
    header, rows = read_submission(tmp_path / "run" / "rte" / "submission" / "RTE.tsv")
    assert len(rows) == 4 and not (tmp_path / "run" / "rte" / "metrics.jsonl").exists()
    assert "GLUE submission files (1)" in capsys.readouterr().out
