"""SQuAD v1.1 / v2.0 in the official JSON layout: one example per question.

    {"version": "v2.0", "data": [{"title": ..., "paragraphs": [{"context": ...,
        "qas": [{"id": ..., "question": ..., "answers": [{"text": ..., "answer_start": 12}],
                 "is_impossible": false}]}]}]}

A folder holds train-v1.1.json + dev-v1.1.json (or train-v2.0.json + dev-v2.0.json, or
train.json + dev.json); a Hub name ("squad", "rajpurkar/squad_v2") is read through `datasets`.
Every example comes out as {"id", "question", "context", "answers": [{"text", "answer_start"}],
"is_impossible"}. The official evaluation scores against every gold answer; training uses the
first, as BERT and HF's run_qa.py do.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import LmforgeError, one_line

FILE_NAMES = {  # split -> the names tried in a folder, in order
    "train": ("train-v2.0.json", "train-v1.1.json", "train.json"),
    "dev": ("dev-v2.0.json", "dev-v1.1.json", "dev.json", "validation.json"),
}


def squad_file(data: str, split: str, version_2: bool) -> Path:
    """The JSON file of `split` in folder `data` (a file path is taken as is for dev)."""
    folder = Path(data)
    names = FILE_NAMES[split]
    if not version_2:  # a folder may hold both versions: the matching one first
        names = tuple(sorted(names, key=lambda n: "v2.0" in n))
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise LmforgeError(f"squad data {data}: no {split} file (looked for {', '.join(names)})")


def read_squad(path: str | Path) -> list[dict]:
    """The examples of one official SQuAD JSON file; one line naming the file and question on bad input."""
    from pipelines.data.hub import read_json_file

    path = Path(path)
    raw = read_json_file(path, "squad")
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise LmforgeError(f"squad {path}: expected an object with a 'data' list (the official SQuAD layout)")
    examples = []
    for a, article in enumerate(raw["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise LmforgeError(f"squad {path}, data[{a}]: no 'paragraphs' list")
        for p, para in enumerate(paragraphs):
            where = f"squad {path}, data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) \
                    or not isinstance(para.get("qas"), list):
                raise LmforgeError(f"{where}: needs a 'context' string and a 'qas' list")
            examples += [_example(qa, para["context"], f"{where}, question {_qid(qa, q)}") for q, qa in
                         enumerate(para["qas"])]
    _check_unique_ids(path, examples)
    return examples


def _qid(qa, index: int) -> str:
    return str(qa.get("id", f"#{index}")) if isinstance(qa, dict) else f"#{index}"


def _example(qa, context: str, where: str) -> dict:
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "id" not in qa:
        raise LmforgeError(f"{where}: needs 'id' and a 'question' string")
    impossible = bool(qa.get("is_impossible", False))
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise LmforgeError(f"{where}: 'answers' is not a list")
    checked = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) \
                or not isinstance(answer.get("answer_start"), int):
            raise LmforgeError(f"{where}: an answer needs 'text' and an integer 'answer_start'")
        start, text = answer["answer_start"], answer["text"]
        if context[start:start + len(text)] != text:
            raise LmforgeError(f"{where}: answer {text!r} is not at answer_start {start} of its context "
                               f"(found {context[start:start + len(text)]!r})")
        checked.append({"text": text, "answer_start": start})
    if not checked and not impossible:
        raise LmforgeError(f"{where}: no answers and not marked is_impossible")
    return {"id": str(qa["id"]), "question": qa["question"], "context": context,
            "answers": [] if impossible else checked, "is_impossible": impossible}


def _check_unique_ids(path: Path, examples: list[dict]) -> None:
    seen = set()
    for e in examples:
        if e["id"] in seen:
            raise LmforgeError(f"squad {path}: question id {e['id']} appears twice (predictions are keyed by id)")
        seen.add(e["id"])


def load_squad(data: str, split: str, version_2: bool) -> list[dict]:
    """`split` ("train" | "dev") of a local folder or a Hub dataset (squad, squad_v2 layouts)."""
    if Path(data).exists():
        path = Path(data) if Path(data).is_file() and split == "dev" else squad_file(data, split, version_2)
        examples = read_squad(path)
    else:
        examples = _load_hub(data, split)
    if not version_2 and any(e["is_impossible"] for e in examples):
        raise LmforgeError(f"squad data {data}: has unanswerable questions (SQuAD 2.0); use --task squad_v2")
    return examples


def _load_hub(name: str, split: str) -> list[dict]:
    from pipelines.data.hub import hub_unreachable

    if "/" not in name and name not in ("squad", "squad_v2"):
        raise LmforgeError(f"squad data {name}: no such folder, and not a Hub dataset name")
    unreachable = hub_unreachable()
    if unreachable:
        raise LmforgeError(f"squad data {name}: not a local folder, and the Hub is not reachable ({unreachable})")
    import datasets

    try:
        rows = datasets.load_dataset(name, split="train" if split == "train" else "validation")
    except Exception as exc:  # datasets raises many types for a missing or malformed dataset
        raise LmforgeError(f"squad data {name}: cannot load from the Hub ({one_line(exc)})") from None
    return [{"id": str(r["id"]), "question": r["question"], "context": r["context"],
             "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"],
                                                                        r["answers"]["answer_start"])],
             "is_impossible": not r["answers"]["text"]} for r in rows]
