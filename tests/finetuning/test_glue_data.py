"""GLUE loaders: every real TSV in ../shared/data/glue against the official counts, and the errors a
user can cause (bad rows, bad labels, missing or empty files, the Hub while offline)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.data.glue import (
    GLUE_TASKS,
    from_hub_columns,
    get_glue_task,
    glue_tasks_present,
    load_glue_local,
    split_file,
    t5_input,
    t5_parse_target,
    t5_target,
)
from pipelines.errors import LmforgeError

REPO = Path(__file__).resolve().parents[2]
GLUE_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"

# Official sizes (GLUE paper table 1 / nyu-mll/glue): (task, split) -> rows
OFFICIAL_ROWS = {
    ("cola", "train"): 8551, ("cola", "validation"): 1043,
    ("sst2", "train"): 67349, ("sst2", "validation"): 872,
    ("mrpc", "train"): 3668, ("mrpc", "validation"): 408,
    ("stsb", "train"): 5749, ("stsb", "validation"): 1500,
    ("qqp", "train"): 363846, ("qqp", "validation"): 40430,
    ("mnli", "train"): 392702, ("mnli", "validation_matched"): 9815, ("mnli", "validation_mismatched"): 9832,
    ("qnli", "train"): 104743, ("qnli", "validation"): 5463,
    ("rte", "train"): 2490, ("rte", "validation"): 277,
    ("wnli", "train"): 635, ("wnli", "validation"): 71,
}
# dev label counts by class name
DEV_LABELS = {
    "cola": {"acceptable": 721, "unacceptable": 322},
    "sst2": {"positive": 444, "negative": 428},
    "mrpc": {"equivalent": 279, "not_equivalent": 129},
    "rte": {"entailment": 146, "not_entailment": 131},
    "wnli": {"entailment": 31, "not_entailment": 40},
    "qnli": {"entailment": 2702, "not_entailment": 2761},
}


@pytest.fixture(scope="module")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"no local GLUE copy at {GLUE_DIR} (the TSV layout CoLA/, SST-2/, ... is expected there)")
    return GLUE_DIR


def _file_or_skip(glue_dir: Path, task: str, split: str) -> None:
    path = glue_dir / get_glue_task(task).dir_name / split_file(task, split)
    if not path.is_file():
        pytest.skip(f"{path} is not in the local GLUE copy")


@pytest.mark.parametrize("task,split", sorted(OFFICIAL_ROWS))
def test_real_file_has_official_row_count(glue_dir, task, split):
    _file_or_skip(glue_dir, task, split)
    ds = load_glue_local(glue_dir, task, split)
    assert ds.num_rows == OFFICIAL_ROWS[task, split]
    assert ds.column_names == list(GLUE_TASKS[task].text_columns) + ["label", "idx"]
    # quoting off: no row swallowed its neighbours (a quoting reader joins lines after a stray '"')
    for column in GLUE_TASKS[task].text_columns:
        assert not any("\t" in s or "\n" in s or "\r" in s for s in ds[column])
    assert len(set(ds["idx"])) == ds.num_rows


def test_every_tsv_in_the_copy_parses(glue_dir):
    """Every TSV under a known task folder is a split the table knows, and loads."""
    by_dir = {spec.dir_name: spec for spec in GLUE_TASKS.values()}
    seen = 0
    for path in sorted(glue_dir.glob("*/*.tsv")):
        spec = by_dir.get(path.parent.name)
        if spec is None:
            continue  # e.g. GLUE's diagnostic/ folder
        splits = {split_file(spec.name, s): s for s in ("train",) + spec.eval_splits}
        if path.name.startswith("test"):
            continue  # unlabelled test files are not loaded
        assert path.name in splits, f"{path} is no split of {spec.name}"
        assert load_glue_local(glue_dir, spec.name, splits[path.name]).num_rows > 0
        seen += 1
    assert seen >= 1


@pytest.mark.parametrize("task", sorted(DEV_LABELS))
def test_dev_label_counts(glue_dir, task):
    ds = load_glue_local(glue_dir, task, "validation")
    names = ds.features["label"].names
    assert tuple(names) == GLUE_TASKS[task].labels
    assert dict(collections.Counter(names[i] for i in ds["label"])) == DEV_LABELS[task]


def test_stsb_scores_are_floats_in_range(glue_dir):
    ds = load_glue_local(glue_dir, "stsb", "validation")
    scores = ds["label"]
    assert min(scores) == 0.0 and max(scores) == 5.0
    assert ds[0]["label"] == 5.0 and ds[1]["label"] == 4.75  # dev rows 0 and 1: 5.000, 4.750
    assert len({round(s, 3) for s in scores}) > 20  # real-valued, not collapsed to classes


def test_rte_row_starting_with_a_quote_is_intact(glue_dir):
    ds = load_glue_local(glue_dir, "rte", "validation")
    row = ds[137]
    assert row["idx"] == 137
    assert row["sentence1"].startswith('"It\'s Only a Play" is Terrence McNally\'s "Give My Regards')
    assert row["sentence1"].endswith("hit/flop mentality.")
    assert row["sentence2"] == "Broadway is in New York."
    assert row["label"] == 0  # entailment
    assert ds[138]["idx"] == 138 and not ds[138]["sentence1"].startswith('"It')


def test_mrpc_bom_and_header(glue_dir):
    path = glue_dir / "MRPC" / "dev.tsv"
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"  # the copy does start with a BOM
    ds = load_glue_local(glue_dir, "mrpc", "validation")
    assert ds[0]["sentence1"].startswith("He said the foodservice pie business")
    assert ds[0]["label"] == 1
    assert not any("\ufeff" in s for s in list(ds["sentence1"]) + list(ds["sentence2"]))


def test_sst2_text_header_and_cola_without_header(glue_dir):
    assert (glue_dir / "SST-2" / "dev.tsv").read_text().startswith("text\tlabel")
    assert load_glue_local(glue_dir, "sst2", "validation")[0]["sentence1"].startswith("it 's a charming")
    cola = load_glue_local(glue_dir, "cola", "validation")  # no header, no trailing newline
    assert cola[0]["sentence1"] == "The sailors rode the breeze clear of the rocks."
    assert cola[-1]["sentence1"] == "John talked to Bill about himself."


def test_tasks_present(glue_dir, tmp_path):
    def complete(t):
        splits = ("train",) + GLUE_TASKS[t].eval_splits
        return all((glue_dir / GLUE_TASKS[t].dir_name / split_file(t, s)).is_file() for s in splits)

    assert glue_tasks_present(glue_dir) == [t for t in GLUE_TASKS if complete(t)]
    assert {"cola", "sst2", "mrpc", "stsb", "rte", "wnli"} <= set(glue_tasks_present(glue_dir))
    (tmp_path / "MNLI").mkdir()
    for name in ("train.tsv", "dev_matched.tsv"):
        (tmp_path / "MNLI" / name).write_text("x\n")
    assert glue_tasks_present(tmp_path) == []  # dev_mismatched.tsv missing
    (tmp_path / "MNLI" / "dev_mismatched.tsv").write_text("x\n")
    assert glue_tasks_present(tmp_path) == ["mnli"]


# --- synthetic files ------------------------------------------------------------------------------


def _write(root: Path, task: str, split: str, text: str, encoding="utf-8") -> Path:
    path = root / get_glue_task(task).dir_name / split_file(task, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _error(fn, *args) -> str:
    with pytest.raises(LmforgeError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_windows_line_endings_and_bom(tmp_path):
    _write(tmp_path, "rte", "train", "\ufeff" + (RTE_HEADER + '0\t"Quoted" start.\tB.\tentailment\n'
                                                  "1\tC.\tD.\tnot_entailment\n").replace("\n", "\r\n"))
    ds = load_glue_local(tmp_path, "rte", "train")
    assert ds["sentence1"] == ['"Quoted" start.', "C."] and ds["sentence2"] == ["B.", "D."]
    assert ds["label"] == [0, 1] and ds["idx"] == [0, 1]


def test_sst2_sentence_header_variant_and_numeric_or_named_labels(tmp_path):
    _write(tmp_path, "sst2", "train", "sentence\tlabel\ngood .\t1\nbad .\tnegative\n")
    assert load_glue_local(tmp_path, "sst2", "train")["label"] == [1, 0]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = _write(tmp_path, "rte", "train", RTE_HEADER + "0\tA.\tB.\tentailment\n1\tA. B.\tentailment\n")
    message = _error(load_glue_local, tmp_path, "rte", "train")
    assert f"{path}:3:" in message and "expected 4" in message and "found 3" in message


def test_header_with_wrong_width(tmp_path):
    path = _write(tmp_path, "sst2", "train", "sentence\tlabel\textra\ngood .\t1\textra\n")
    assert f"{path}:1:" in _error(load_glue_local, tmp_path, "sst2", "train")


def test_unknown_label(tmp_path):
    path = _write(tmp_path, "rte", "validation", RTE_HEADER + "0\tA.\tB.\tentailment\n1\tA.\tB.\tmaybe\n")
    message = _error(load_glue_local, tmp_path, "rte", "validation")
    assert f"{path}:3:" in message and "'maybe'" in message and "not_entailment" in message


def test_cola_label_outside_range(tmp_path):
    path = _write(tmp_path, "cola", "train", "gj04\t1\t\tFine.\ngj04\t2\t\tOdd.")
    message = _error(load_glue_local, tmp_path, "cola", "train")
    assert f"{path}:2:" in message and "'2'" in message


@pytest.mark.parametrize("score,what", [("abc", "not a number"), ("7.5", "outside"), ("nan", "outside")])
def test_stsb_bad_score(tmp_path, score, what):
    row = "\t".join(["0", "g", "f", "y", "0", "s", "s", "A.", "B.", score])
    path = _write(tmp_path, "stsb", "train", "h\t" * 9 + "score\n" + row + "\n")
    message = _error(load_glue_local, tmp_path, "stsb", "train")
    assert f"{path}:2:" in message and repr(score) in message and what in message


def test_missing_file_and_unknown_task_or_split(tmp_path):
    assert str(tmp_path / "RTE" / "dev.tsv") in _error(load_glue_local, tmp_path, "rte", "validation")
    message = _error(load_glue_local, tmp_path, "sst-2", "train")
    assert "'sst-2'" in message and all(t in message for t in GLUE_TASKS)
    assert "validation_matched" in _error(load_glue_local, tmp_path, "mnli", "validation")


@pytest.mark.parametrize("text", ["", RTE_HEADER, RTE_HEADER + "\n\n"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path, "rte", "train", text)
    assert str(path) in _error(load_glue_local, tmp_path, "rte", "train")


def _mnli_row(i: int, s1: str, s2: str, labels: list[str]) -> str:
    return "\t".join([str(i), "p", "q", "fiction", "(b1)", "(b2)", "(p1)", "(p2)", s1, s2] + labels) + "\n"


def test_mnli_layout_gold_label_last_and_no_consensus_dropped(tmp_path):
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    train = "\t".join(head + ["label1", "gold_label"]) + "\n"
    train += _mnli_row(0, "P0.", "H0.", ["neutral", "neutral"])
    _write(tmp_path, "mnli", "train", train)
    dev = "\t".join(head + [f"label{i}" for i in range(1, 6)] + ["gold_label"]) + "\n"
    dev += _mnli_row(0, "P0.", "H0.", ["neutral"] * 4 + ["contradiction"] + ["neutral"])
    no_consensus = ["entailment", "neutral", "contradiction", "neutral", "entailment", "-"]
    dev += _mnli_row(1, "P1.", "H1.", no_consensus)
    dev += _mnli_row(2, "P2.", "H2.", ["contradiction"] * 5 + ["contradiction"])
    _write(tmp_path, "mnli", "validation_matched", dev)
    assert load_glue_local(tmp_path, "mnli", "train")["label"] == [1]
    ds = load_glue_local(tmp_path, "mnli", "validation_matched")
    assert ds["sentence1"] == ["P0.", "P2."] and ds["sentence2"] == ["H0.", "H2."]
    assert ds["label"] == [1, 2] and ds["idx"] == [0, 2]
    only_dash = dev.splitlines(keepends=True)[0] + _mnli_row(0, "P.", "H.", ["neutral"] * 5 + ["-"])
    path = _write(tmp_path, "mnli", "validation_mismatched", only_dash)
    assert "no labelled rows" in _error(load_glue_local, tmp_path, "mnli", "validation_mismatched")
    assert str(path) in _error(load_glue_local, tmp_path, "mnli", "validation_mismatched")


def test_qqp_layout(tmp_path):
    _write(tmp_path, "qqp", "train", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                     "5\t11\t12\tWhy?\tHow come?\t1\n6\t13\t14\tWho?\tWhere?\t0\n")
    ds = load_glue_local(tmp_path, "qqp", "train")
    assert ds["sentence1"] == ["Why?", "Who?"] and ds["sentence2"] == ["How come?", "Where?"]
    assert ds["label"] == [1, 0] and ds.features["label"].names == ["not_duplicate", "duplicate"]


# --- T5 text-to-text --------------------------------------------------------------------------------


def test_t5_inputs_and_targets():
    assert t5_input("sst2", {"sentence1": "great ."}) == "sst2 sentence: great ."
    # T5 sorts feature names: MNLI's hypothesis comes before the premise
    assert t5_input("mnli", {"sentence1": "P.", "sentence2": "H."}) == "mnli hypothesis: H. premise: P."
    assert t5_input("qqp", {"sentence1": "A?", "sentence2": "B?"}) == "qqp question1: A? question2: B?"
    assert [t5_target("mnli", i) for i in range(3)] == ["entailment", "neutral", "contradiction"]
    assert t5_target("cola", 0) == "unacceptable" and t5_target("wnli", 1) == "entailment"
    assert [t5_target("stsb", s) for s in (3.77, 3.9, 0.0, 5.0, 2.55)] == ["3.8", "4.0", "0.0", "5.0", "2.6"]
    assert t5_parse_target("rte", " not_entailment ") == 1 and t5_parse_target("rte", "yes") is None
    assert t5_parse_target("stsb", "3.8") == 3.8 and t5_parse_target("stsb", "x") is None


def test_hub_column_layout_maps_to_ours():
    from datasets import ClassLabel, Dataset, Features, Value

    hub = Dataset.from_dict(
        {"premise": ["P."], "hypothesis": ["H."], "label": [2], "idx": [7]},
        features=Features({"premise": Value("string"), "hypothesis": Value("string"),
                           "label": ClassLabel(names=["entailment", "neutral", "contradiction"]),
                           "idx": Value("int32")}))
    ds = from_hub_columns("mnli", hub)
    assert ds[0] == {"sentence1": "P.", "sentence2": "H.", "label": 2, "idx": 7}
    assert ds.features == load_glue_features("mnli")
    sst = Dataset.from_dict({"sentence": ["ok ."], "label": [1], "idx": [0]})
    assert from_hub_columns("sst2", sst).features["label"].names == ["negative", "positive"]


def load_glue_features(task):
    from pipelines.data.glue import _features

    return _features(get_glue_task(task))


# --- the Hub, offline -------------------------------------------------------------------------------

_HUB_PROBE = textwrap.dedent("""
    import time
    from pipelines.errors import LmforgeError
    from pipelines.data.glue import load_glue_hub
    t0 = time.time()
    try:
        load_glue_hub("rte", "validation")
    except LmforgeError as e:
        print(f"{time.time() - t0:.2f}", e)
    else:
        print("LOADED")
""")


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["hf_hub_offline", "unreachable_endpoint"])
def test_hub_fails_fast_offline(tmp_path, env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE")) and "proxy" not in k.lower()}
    clean.update(env, HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "ds"),
                 PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", _HUB_PROBE], env=clean, cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, message = out.stdout.strip().split(" ", 1)
    assert "GLUE_DIR" in message and "nyu-mll/glue" in message
    assert float(seconds) < 20 and elapsed < 20
