"""Local evaluate metrics against numbers worked out by hand, and loading them offline."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.data.glue import GLUE_TASKS
from pipelines.errors import LmforgeError
from tasks.metrics import generation_metrics, glue_metric

REPO = Path(__file__).resolve().parents[2]

# (reference, prediction) pairs: (1,1) x4 -> TP=4, (1,0) x2 -> FN=2, (0,0) x3 -> TN=3, (0,1) x1 -> FP=1
REFS = [1, 1, 1, 1, 0, 0, 0, 1, 0, 1]
PREDS = [1, 1, 0, 1, 0, 1, 0, 1, 0, 0]
TP, FN, TN, FP = 4, 2, 3, 1


def test_confusion_counts_written_above_are_right():
    pairs = list(zip(REFS, PREDS))
    counts = (pairs.count((1, 1)), pairs.count((1, 0)), pairs.count((0, 0)), pairs.count((0, 1)))
    assert counts == (TP, FN, TN, FP)


def test_cola_matthews_from_the_confusion_matrix():
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(5*6*4*5) = 10/sqrt(600)
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert expected == pytest.approx(10 / math.sqrt(600))
    result = glue_metric("cola", PREDS, REFS)
    assert result == {"matthews_correlation": pytest.approx(expected)}
    # one predicted class only: the denominator is 0 and MCC is defined as 0
    assert glue_metric("cola", [1] * 10, REFS)["matthews_correlation"] == 0.0


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli"])
def test_accuracy_tasks(task):
    assert glue_metric(task, PREDS, REFS) == {"accuracy": pytest.approx((TP + TN) / 10)}  # 7/10


def test_mrpc_and_qqp_f1_accuracy_and_combined():
    # F1 of the positive class = 2TP / (2TP + FP + FN) = 8 / 11
    f1, acc = 2 * TP / (2 * TP + FP + FN), 7 / 10
    assert f1 == pytest.approx(8 / 11)
    for task in ("mrpc", "qqp"):
        result = glue_metric(task, PREDS, REFS)
        assert result == {"f1": pytest.approx(f1), "accuracy": pytest.approx(acc),
                          "combined_score": pytest.approx((f1 + acc) / 2)}
    # no positive prediction: F1 = 0 (not a warning and NaN)
    assert glue_metric("mrpc", [0] * 10, REFS)["f1"] == 0.0


def test_mnli_three_classes():
    refs, preds = [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]  # right: positions 0, 2, 3, 4
    assert glue_metric("mnli", preds, refs) == {"accuracy": pytest.approx(4 / 6)}


def test_stsb_pearson_and_spearman_by_definition():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 9.0, 5.0, 4.0]  # predictions x, gold y
    # Pearson: mean x 2.5, mean y 5; dx = -1.5 -.5 .5 1.5, dy = -3 4 0 -1
    # sum dx*dy = 4.5 - 2 + 0 - 1.5 = 1; sum dx^2 = 5; sum dy^2 = 26 -> r = 1 / sqrt(130)
    mx, my = sum(x) / 4, sum(y) / 4
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    r = sxy / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert r == pytest.approx(1 / math.sqrt(130))
    # Spearman: ranks x 1 2 3 4, ranks y 1 4 3 2; d = 0 -2 0 2; rho = 1 - 6*8 / (4*(16-1)) = 0.2
    rho = 1 - 6 * (0 + 4 + 0 + 4) / (4 * (4**2 - 1))
    assert rho == pytest.approx(0.2)
    result = glue_metric("stsb", x, y)
    assert result == {"pearson": pytest.approx(r, rel=1e-6), "spearmanr": pytest.approx(rho, rel=1e-6),
                      "combined_score": pytest.approx((r + rho) / 2, rel=1e-6)}


def test_every_task_reports_the_metrics_of_its_table_entry():
    for task, spec in GLUE_TASKS.items():
        preds = [0.5, 1.5, 2.0, 4.0] if spec.is_regression else [0, 1, 1, 0]
        refs = [1.0, 1.0, 3.0, 5.0] if spec.is_regression else [0, 1, 0, 0]
        keys = set(glue_metric(task, preds, refs))
        assert keys == set(spec.metrics) | ({"combined_score"} if len(spec.metrics) > 1 else set()), task


def test_glue_metric_user_errors():
    assert "cola" in str(pytest.raises(LmforgeError, glue_metric, "glue", [1], [1]).value)
    assert "2 predictions but 1" in str(pytest.raises(LmforgeError, glue_metric, "rte", [1, 0], [1]).value)
    assert "no predictions" in str(pytest.raises(LmforgeError, glue_metric, "rte", [], []).value)


def test_rouge_by_counting_ngrams():
    preds = ["the cat sat on the mat", "hello world"]
    refs = ["the cat is on the mat", "hello there world"]
    # pair 1: unigram overlap the x2, cat, on, mat = 5 of 6 both ways -> F 5/6
    #         bigrams: the cat, on the, the mat shared = 3 of 5 -> 3/5;  LCS 'the cat on the mat' = 5 -> 5/6
    # pair 2: unigrams 2 of 2 (P=1), 2 of 3 (R=2/3) -> F = 2PR/(P+R) = 0.8
    #         no shared bigram -> 0; LCS 'hello world' = 2 -> 0.8
    f = 2 * 1 * (2 / 3) / (1 + 2 / 3)
    result = generation_metrics(preds, refs, metrics=("rouge",))
    assert result == {"rouge1": pytest.approx((5 / 6 + f) / 2), "rouge2": pytest.approx((3 / 5 + 0) / 2),
                      "rougeL": pytest.approx((5 / 6 + f) / 2), "rougeLsum": pytest.approx((5 / 6 + f) / 2)}


def test_rouge_lsum_uses_newline_sentences():
    # same two sentences in swapped order: LCS over the whole text 'the cat sat' = 3 of 6 -> 0.5,
    # summary-level LCS matches each reference sentence fully -> 1.0
    # bigrams: 'sat the' (pred) and 'ran the' (ref) cross the boundary; 4 of 5 shared -> 0.8
    pred, ref = "the cat sat\nthe dog ran", "the dog ran\nthe cat sat"
    result = generation_metrics([pred], [ref], metrics=("rouge",))
    assert result == {"rouge1": pytest.approx(1.0), "rouge2": pytest.approx(4 / 5),
                      "rougeL": pytest.approx(3 / 6), "rougeLsum": pytest.approx(1.0)}


def test_bleu_from_clipped_ngram_precisions():
    # 'the cat sat on the mat' vs 'the cat sat on a mat': 6 tokens each, brevity penalty 1
    # p1 = 5/6 (second 'the' clipped), p2 = 3/5, p3 = 2/4, p4 = 1/3
    # BLEU = (p1 p2 p3 p4)^(1/4) = (1/12)^(1/4)
    bleu = generation_metrics(["the cat sat on the mat"], ["the cat sat on a mat"], metrics=("bleu",))["bleu"]
    assert bleu == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # a 5-token prefix of a 6-token reference: all precisions 1, brevity penalty exp(1 - 6/5)
    bleu = generation_metrics(["the cat sat on the"], ["the cat sat on the mat"], metrics=("bleu",))["bleu"]
    assert bleu == pytest.approx(100 * math.exp(1 - 6 / 5))
    # several references: the second one matches exactly
    multi = generation_metrics(["the cat sat on the mat"], [["a dog ran", "the cat sat on the mat"]],
                               metrics=("bleu",))
    assert multi == {"bleu": pytest.approx(100.0)}


def test_generation_metrics_user_errors():
    with pytest.raises(LmforgeError, match="meteor"):
        generation_metrics(["a"], ["a"], metrics=("meteor",))
    with pytest.raises(LmforgeError, match="one reference string"):
        generation_metrics(["a b"], [["a b", "a c"]], metrics=("rouge",))


_OFFLINE_LOAD = textwrap.dedent("""
    import time
    import evaluate
    from tasks.metrics import METRICS_DIR
    t0 = time.time()
    glue = evaluate.load(str(METRICS_DIR / "glue_metric"), "mrpc", keep_in_memory=True)
    rouge = evaluate.load(str(METRICS_DIR / "rouge_metric"), keep_in_memory=True)
    bleu = evaluate.load(str(METRICS_DIR / "bleu_metric"), keep_in_memory=True)
    seconds = time.time() - t0
    f1 = glue.compute(predictions=[1, 0, 1], references=[1, 1, 1])["f1"]
    r1 = rouge.compute(predictions=["a b"], references=["a b"])["rouge1"]
    b = bleu.compute(predictions=["a b c d"], references=[["a b c d"]])["bleu"]
    print(f"{seconds:.3f} {f1:.4f} {r1:.4f} {b:.4f}")
""")


def test_evaluate_load_by_path_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _OFFLINE_LOAD], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, f1, r1, bleu = (float(v) for v in out.stdout.split())
    assert seconds < 5  # three local loads; a Hub metric would fail here instead
    assert f1 == pytest.approx(2 * 2 / (2 * 2 + 0 + 1), abs=1e-4)  # TP=2, FN=1 -> 0.8
    assert (r1, bleu) == (1.0, 100.0)
