"""Multiple-choice data: SWAG (as BERT reports it) and RACE (as RoBERTa, ALBERT and ELECTRA report it).

Every reader returns one dict per question:

    {"context": str, "question": str, "options": [str, ...], "label": int, "id": str}

`options` holds the SECOND segment of each (context, option) pair the model reads, already built
the way the reference scripts build it (swag_option, race_option below: the one place each
construction lives); `question` is kept for reference. `label` indexes `options`.

SWAG: the official CSVs in a folder (train.csv, val.csv = dev; test.csv has no labels), columns read by
NAME: video-id, fold-ind, startphrase, sent1, sent2, gold-source, ending0..ending3, label.
RACE: the official layout RACE/{train,dev,test}/{middle,high}/*.txt, each file one JSON object
{"article", "questions": [...], "options": [[4 strings], ...], "answers": ["A".."D", ...], "id"};
the folder may be given as RACE/ or its parent.
A name that is no local path is read from the Hub ("swag" -> swag/regular, "ehovy/race" -> all).

Bad input is one LmforgeError line naming the file and the record (`line N` of a CSV, `question N`
(1-based, in file order) of a RACE file).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pipelines.errors import LmforgeError, one_line

DATASETS = ("swag", "race")
SPLITS = ("train", "dev")
SWAG_FILES = {"train": "train.csv", "dev": "val.csv"}
SWAG_ENDINGS = 4
SWAG_COLUMNS = ("sent1", "sent2", "label") + tuple(f"ending{i}" for i in range(SWAG_ENDINGS))
RACE_LEVELS = ("middle", "high")  # RACE-M then RACE-H, file by file in number order
# dataset -> (Hub name, config, {our split: the Hub's})
HUB = {"swag": ("swag", "regular", {"train": "train", "dev": "validation"}),
       "race": ("ehovy/race", "all", {"train": "train", "dev": "validation"})}


def swag_option(sent2: str, ending: str) -> str:
    """SWAG's second segment: the start of the second sentence and one ending, as transformers'
    examples/pytorch/multiple-choice/run_swag.py builds it (f"{header} {end}"); the first segment is sent1."""
    return f"{sent2} {ending}"


def race_option(question: str, option: str) -> str:
    """RACE's second segment, as fairseq's examples/roberta/preprocess_RACE.py (RoBERTa) and ALBERT's
    race_utils.py build it: a cloze question ("... _ ...") gets the option in its blank, any other
    question is followed by the option."""
    return question.replace("_", option) if "_" in question else f"{question} {option}"


def _squeeze(text: str) -> str:
    """Runs of whitespace (RACE articles are full of line breaks) as one space, as preprocess_RACE.py does."""
    return re.sub(r"\s+", " ", text).strip()


# --- SWAG ---------------------------------------------------------------------------------------


def read_swag(path: str | Path) -> list[dict]:
    """The labelled examples of one official SWAG CSV (train.csv or val.csv)."""
    path = Path(path)
    examples: list[dict] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise LmforgeError(f"swag {path}: empty file (expected a header with sent1, sent2, ending0.., label)")
            columns = _swag_columns(path, header)
            for fields in reader:
                if not fields:
                    continue  # a blank line (e.g. a trailing one)
                where = f"swag {path}, line {reader.line_num}"
                if len(fields) != len(header):
                    raise LmforgeError(f"{where}: expected {len(header)} fields (the header's), found {len(fields)}")
                row = {name: fields[i] for name, i in columns.items()}
                examples.append(swag_example(row, str(len(examples)), where))
    except OSError as exc:
        raise LmforgeError(f"swag {path}: cannot read ({one_line(exc)})") from None
    except UnicodeDecodeError as exc:
        raise LmforgeError(f"swag {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise LmforgeError(f"swag {path}, line {reader.line_num}: unreadable CSV row ({one_line(exc)})") from None
    if not examples:
        raise LmforgeError(f"swag {path}: no examples after the header")
    return examples


def _swag_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Column name -> position of the columns used (SWAG_COLUMNS)."""
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [name for name in SWAG_COLUMNS if name not in index]
    if missing:
        raise LmforgeError(f"swag {path}: missing column '{missing[0]}' (header: {','.join(header)[:120]}; "
                           "test.csv has no labels, use train.csv / val.csv)")
    return {name: index[name] for name in SWAG_COLUMNS}


def swag_example(row: dict, example_id: str, where: str) -> dict:
    """One SWAG row (sent1, sent2, ending0.., label; a CSV row or a Hub record) as an example."""
    endings = [str(row[f"ending{i}"]) for i in range(SWAG_ENDINGS)]
    label = _index(row["label"], len(endings), f"{where}: label")
    return {"context": str(row["sent1"]), "question": str(row["sent2"]),
            "options": [swag_option(str(row["sent2"]), e) for e in endings], "label": label, "id": example_id}


def _index(value, n: int, what: str) -> int:
    try:
        label = int(str(value).strip())
    except ValueError:
        label = -1
    if not 0 <= label < n:
        raise LmforgeError(f"{what} {value!r} is not an option index 0..{n - 1}")
    return label


# --- RACE ---------------------------------------------------------------------------------------


def race_root(folder: str | Path) -> Path:
    """The RACE folder (holding train/ dev/ test/), given as itself or as its parent."""
    folder = Path(folder)
    if any((folder / s).is_dir() for s in SPLITS):
        return folder
    if (folder / "RACE").is_dir():
        return folder / "RACE"
    raise LmforgeError(f"race {folder}: not a RACE folder (expected RACE/{{train,dev,test}}/{{middle,high}}/*.txt, "
                       "given as RACE/ or its parent)")


def race_files(folder: str | Path, split: str) -> list[Path]:
    """The question files of `split`: middle/ then high/, each in number order (2.txt before 10.txt)."""
    root = race_root(folder) / split
    files = [f for level in RACE_LEVELS for f in sorted((root / level).glob("*.txt"), key=_number_order)]
    if not files:
        raise LmforgeError(f"race {root}: no .txt files in middle/ or high/ (the official RACE layout)")
    return files


def _number_order(path: Path) -> tuple:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def read_race_file(path: str | Path) -> list[dict]:
    """The examples (one per question) of one RACE file."""
    from pipelines.data.hub import read_json_file

    path = Path(path)
    raw = read_json_file(path, "race")
    if not isinstance(raw, dict):
        raise LmforgeError(f"race {path}: expected a JSON object with article, questions, options, answers")
    for key, kind in (("article", str), ("questions", list), ("options", list), ("answers", list)):
        if not isinstance(raw.get(key), kind):
            raise LmforgeError(f"race {path}: '{key}' is missing or not a {kind.__name__}")
    counts = [len(raw[k]) for k in ("questions", "options", "answers")]
    if len(set(counts)) > 1:
        raise LmforgeError(f"race {path}: {counts[0]} questions, {counts[1]} option lists and {counts[2]} answers "
                           "(one each per question)")
    file_id = str(raw.get("id") or path.name)
    return [race_example(raw["article"], question, options, answer, f"{file_id}-{q + 1}",
                         f"race {path}, question {q + 1}")
            for q, (question, options, answer) in enumerate(zip(raw["questions"], raw["options"], raw["answers"]))]


def race_example(article: str, question, options, answer, example_id: str, where: str) -> dict:
    """One RACE question (a file's entry or a Hub record) as an example; `answer` is a letter."""
    if not isinstance(question, str):
        raise LmforgeError(f"{where}: the question is not a string")
    if not isinstance(options, list) or not options:
        raise LmforgeError(f"{where}: no options")
    if not all(isinstance(o, str) for o in options):
        raise LmforgeError(f"{where}: an option is not a string")
    letters = "".join(chr(ord("A") + i) for i in range(len(options)))
    if not isinstance(answer, str) or len(answer.strip()) != 1 or answer.strip() not in letters:
        raise LmforgeError(f"{where}: answer {answer!r} is not a letter A..{letters[-1]} ({len(options)} options)")
    question = _squeeze(question)
    return {"context": _squeeze(article), "question": question,
            "options": [_squeeze(race_option(question, _squeeze(o))) for o in options],
            "label": letters.index(answer.strip()), "id": example_id}


def read_race(folder: str | Path, split: str) -> list[dict]:
    return [e for path in race_files(folder, split) for e in read_race_file(path)]


# --- one entry point ----------------------------------------------------------------------------


def load_multiple_choice(dataset: str, data: str, split: str) -> list[dict]:
    """`split` ("train" | "dev") of `dataset` ("swag" | "race") from a local folder or the Hub."""
    if dataset not in DATASETS:
        raise LmforgeError(f"multiple-choice dataset '{dataset}' is not one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise LmforgeError(f"{dataset} data {data}: no split '{split}' (splits: {', '.join(SPLITS)})")
    if Path(data).expanduser().exists():
        folder = Path(data).expanduser()
        if dataset == "swag":
            examples = read_swag(_swag_file(folder, split))
        else:
            examples = read_race(folder, split)
    elif data.startswith((".", "/", "~")):
        raise LmforgeError(f"{dataset} data {data}: no such folder")
    else:
        examples = load_hub(dataset, data, split)
    check_same_option_count(examples, f"{dataset} data {data} ({split})")
    return examples


def _swag_file(folder: Path, split: str) -> Path:
    path = folder / SWAG_FILES[split]
    if not path.is_file():
        raise LmforgeError(f"swag {folder}: no {SWAG_FILES[split]} (the official SWAG CSVs: train.csv, val.csv)")
    return path


def check_same_option_count(examples: list[dict], where: str) -> None:
    """Every example of a set offers the same number of options: a batch is [examples, options, tokens]."""
    if not examples:
        raise LmforgeError(f"{where}: no examples")
    n = len(examples[0]["options"])
    for e in examples:
        if len(e["options"]) != n:
            raise LmforgeError(f"{where}: example {e['id']} has {len(e['options'])} options, example "
                               f"{examples[0]['id']} has {n} (every example needs the same number)")


def load_hub(dataset: str, name: str, split: str) -> list[dict]:
    """A Hub copy of SWAG (swag/regular's columns) or RACE (ehovy/race's: article, question, options, answer)."""
    from pipelines.data.hub import hub_unreachable

    default, config, splits = HUB[dataset]
    unreachable = hub_unreachable()
    if unreachable:
        raise LmforgeError(f"{dataset} data {name}: not a local folder, and the Hub is not reachable ({unreachable})")
    import datasets

    try:
        rows = datasets.load_dataset(name, config if name == default else None, split=splits[split])
    except Exception as exc:  # datasets raises many types for a missing or malformed dataset
        raise LmforgeError(f"{dataset} data {name}: cannot load from the Hub ({one_line(exc)})") from None
    where = f"{dataset} {name} ({splits[split]})"
    if dataset == "swag":
        return [swag_example(r, str(i), f"{where}, row {i}") for i, r in enumerate(rows)]
    return [race_example(r["article"], r["question"], list(r["options"]), r["answer"],
                         str(r.get("example_id", i)), f"{where}, row {i}") for i, r in enumerate(rows)]
