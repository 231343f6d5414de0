"""The official SQuAD evaluation (v1.1 and v2.0 scripts, Rajpurkar et al.), as functions.

Written out because the official scripts are command-line files and `evaluate`'s "squad" /
"squad_v2" metrics load them from the Hub (no network here). The rules are the scripts':
answers are normalised (lower case, punctuation removed, the articles a/an/the removed,
whitespace collapsed), EM and token F1 take the maximum over the gold answers, an unanswerable
question's only gold answer is "" (F1 1 when the prediction is empty, else 0). Scores are
fractions (0-1) like every other metric here; the scripts print them x 100.

v2.0: `null_odds[id]` = the null score minus the best span's score (BERT's run_squad.py writes
them to null_odds.json); "" is predicted when they exceed the threshold (0 by default), and
best_exact / best_f1 are what the best threshold on this dev set would give (the v2.0 script's
find_best_thresh with the odds as its no-answer probabilities, applied to the always-answer
predictions), reported beside the fixed-threshold scores.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    gold_tokens, pred_tokens = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_tokens or not pred_tokens:  # a no-answer on either side: right only if both are
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example: dict) -> list[str]:
    """The texts scored against: those that normalise to something; [""] for an unanswerable question."""
    texts = [a["text"] for a in example["answers"] if normalize_answer(a["text"])]
    return texts or [""]


def raw_scores(examples: list[dict], predictions: dict[str, str]) -> tuple[dict, dict]:
    """({id: EM}, {id: F1}), each the maximum over the example's gold answers."""
    em, f = {}, {}
    for e in examples:
        golds, pred = gold_answers(e), predictions.get(e["id"], "")
        em[e["id"]] = max(exact(g, pred) for g in golds)
        f[e["id"]] = max(f1(g, pred) for g in golds)
    return em, f


def squad_v1_scores(examples: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    em, f = raw_scores(examples, predictions)
    n = max(len(examples), 1)
    return {"exact_match": sum(em.values()) / n, "f1": sum(f.values()) / n}


def best_threshold(scores: dict[str, float], null_odds: dict[str, float], has_answer: dict[str, bool],
                   answers: dict[str, str]) -> tuple[float, float]:
    """(best score, its threshold): the v2.0 script's find_best_thresh. Starting from predicting ""
    everywhere (right on every unanswerable question), questions are switched to their answer in
    order of rising null odds; each switch gains the answer's score on an answerable question and
    loses 1 on an unanswerable one."""
    current = best = sum(not has for has in has_answer.values())
    threshold = 0.0
    for qid in sorted(null_odds, key=null_odds.get):
        if has_answer[qid]:
            current += scores[qid]
        elif answers[qid]:
            current -= 1
        if current > best:
            best, threshold = current, null_odds[qid]
    return best / max(len(scores), 1), threshold


def squad_v2_scores(examples: list[dict], answers: dict[str, str], null_odds: dict[str, float],
                    threshold: float = 0.0) -> dict[str, float]:
    """The v2.0 script's report for the predictions at `threshold` ("" where the null odds exceed it),
    its HasAns / NoAns halves, and the best thresholds. `answers`: the best non-null span per id."""
    predictions = {qid: "" if null_odds[qid] > threshold else text for qid, text in answers.items()}
    out = squad_v2_halves(examples, predictions)
    has_answer = {e["id"]: bool(e["answers"]) for e in examples}
    answer_em, answer_f1 = raw_scores(examples, answers)
    out["best_exact"], out["best_exact_thresh"] = best_threshold(answer_em, null_odds, has_answer, answers)
    out["best_f1"], out["best_f1_thresh"] = best_threshold(answer_f1, null_odds, has_answer, answers)
    return out


def squad_v2_halves(examples: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    """The v2.0 script's exact / f1 / total and their HasAns / NoAns halves for final predictions
    ("" = no answer). A text-to-text model has no null score, so this is its whole v2.0 report."""
    em, f = raw_scores(examples, predictions)
    out = _averages(em, f, list(em))
    for name, ids in (("HasAns", [e["id"] for e in examples if e["answers"]]),
                      ("NoAns", [e["id"] for e in examples if not e["answers"]])):
        if ids:
            out.update({f"{name}_{k}": v for k, v in _averages(em, f, ids).items()})
    return out


def _averages(em: dict, f: dict, ids: list[str]) -> dict[str, float]:
    n = max(len(ids), 1)
    return {"exact": sum(em[q] for q in ids) / n, "f1": sum(f[q] for q in ids) / n, "total": float(len(ids))}


SAMPLE_SIZE = 20  # predictions vs gold in the trackers' table (the first dev questions evaluated)


def prediction_table(pairs: list[tuple[dict, str]]) -> tuple[list[str], list[list]]:
    """(columns, rows) of (example, prediction) pairs for a tracker table: id, question, prediction,
    the gold answers and the pair's EM and F1 ("" is no answer)."""
    em, f = raw_scores([e for e, _ in pairs], {e["id"]: p for e, p in pairs})
    rows = [[e["id"], e["question"], p, " | ".join(a["text"] for a in e["answers"]), em[e["id"]], f[e["id"]]]
            for e, p in pairs]
    return ["id", "question", "prediction", "gold", "exact_match", "f1"], rows
