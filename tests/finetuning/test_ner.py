"""CoNLL-2003 NER (tasks/finetuning/ner.py, pipelines/data/conll.py): the column reader and its errors,
the entity metric against hand counts, first-piece label alignment (WordPiece and byte-level BPE), and
a tiny model that learns a synthetic CoNLL set end to end and exports a folder the HF pipeline runs."""

import random

import pytest
from conftest import tiny_bert_checkpoint

from pipelines.data.conll import conll_file, detect_scheme, hub_sentences, load_conll, read_conll
from pipelines.errors import LmforgeError
from tasks.finetuning.ner import entity_scores, with_prefix_space

IOB1_FILE = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

In IN B-PP O
Paris NNP B-NP I-LOC
Lyon NNP I-NP B-LOC
"""

IOB2_FILE = "Peter\tB-PER\nBlackburn\tI-PER\nspoke\tO\n\nin\tO\nNew\tB-LOC\nYork\tI-LOC\n"


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


# --- the reader ---------------------------------------------------------------------------------


def test_iob1_file_parses_without_docstart_and_is_detected_as_iob1(tmp_path):
    sentences = read_conll(write(tmp_path, "train.txt", IOB1_FILE))
    assert sentences == [
        {"tokens": ["EU", "rejects", "German", "call"], "tags": ["I-ORG", "O", "I-MISC", "O"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["I-PER", "I-PER"]},
        {"tokens": ["In", "Paris", "Lyon"], "tags": ["O", "I-LOC", "B-LOC"]},
    ]
    assert detect_scheme(sentences) == "IOB1"


def test_iob2_file_with_two_columns_and_dev_txt(tmp_path):
    write(tmp_path, "train.txt", IOB2_FILE)
    write(tmp_path, "dev.txt", IOB2_FILE)
    assert conll_file(tmp_path, "dev") == tmp_path / "dev.txt"  # valid.txt absent: dev.txt is the dev split
    sentences = load_conll(str(tmp_path), "dev", "IOB2")
    assert sentences == [{"tokens": ["Peter", "Blackburn", "spoke"], "tags": ["B-PER", "I-PER", "O"]},
                         {"tokens": ["in", "New", "York"], "tags": ["O", "B-LOC", "I-LOC"]}]
    assert detect_scheme(sentences) == "IOB2"
    write(tmp_path, "valid.txt", IOB1_FILE)
    assert conll_file(tmp_path, "dev") == tmp_path / "valid.txt"  # CoNLL-2003's own name wins


@pytest.mark.parametrize("text, words", [
    ("EU NNP B-NP I-ORG\nrejects VBZ O\n", r"line 2: 3 columns, expected 4 as on line 1$"),
    ("EU I-ORG\n\nrejects O\ncall NN O\n", r"line 4: 3 columns, expected 2 as on line 1$"),
    ("EU\n", r"line 1: 1 column \('EU'\)"),
    ("EU NNP B-NP I-ORG\nrejects VBZ B-VP PERSON\n", r"line 2: unknown tag 'PERSON'"),
    ("EU NNP B-NP I-ORG\nrejects VBZ B-VP E-ORG\n", r"line 2: unknown tag 'E-ORG'"),
    ("\n\nEU NNP B-NP B-\n", r"line 3: malformed tag 'B-': no entity type"),
])
def test_bad_lines_give_one_error_line_naming_file_and_line(tmp_path, text, words):
    path = write(tmp_path, "train.txt", text)
    with pytest.raises(LmforgeError, match=words) as err:
        read_conll(path)
    assert str(err.value).startswith(f"conll {path}, line ") and "\n" not in str(err.value)


def test_missing_files_and_a_scheme_the_file_breaks(tmp_path):
    with pytest.raises(LmforgeError, match=r"train.txt: file not found \(the train split"):
        load_conll(str(tmp_path), "train")
    write(tmp_path, "train.txt", IOB2_FILE)
    with pytest.raises(LmforgeError, match=r"valid.txt: file not found \(the dev split: valid.txt or dev.txt"):
        load_conll(str(tmp_path), "dev")
    with pytest.raises(LmforgeError, match=r"^conll .*nowhere: not a folder"):
        load_conll(str(tmp_path / "nowhere"), "train")
    # IOB1 data read as IOB2: I-ORG starts an entity on line 3 (strict IOB2 scoring would drop it)
    path = write(tmp_path, "iob1.txt", IOB1_FILE)
    with pytest.raises(LmforgeError, match=r"iob1.txt, line 3: tag I-ORG starts an entity, which IOB2 does not"):
        read_conll(path, "IOB2")
    with pytest.raises(LmforgeError, match=r"scheme: 'BIO' is not one of auto, IOB1, IOB2"):
        read_conll(path, "BIO")


def test_hub_rows_turn_class_label_ids_into_tags():
    """The Hub's conll2003 layout (tokens, ner_tags as ClassLabel ids), built here: nothing is downloaded."""
    import datasets

    tags = datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(tags)})
    ds = datasets.Dataset.from_dict({"tokens": [["Peter", "Blackburn", "in", "Paris"], [], ["Lyon"]],
                                     "ner_tags": [[1, 2, 0, 3], [], [4]]}, features=features)
    assert hub_sentences("x/conll", ds) == [
        {"tokens": ["Peter", "Blackburn", "in", "Paris"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]},
        {"tokens": ["Lyon"], "tags": ["I-LOC"]}]  # the empty row is dropped
    with pytest.raises(LmforgeError, match=r"^conll x/conll, example 2, token 0: tag I-LOC starts an entity"):
        hub_sentences("x/conll", ds, "IOB2")


# --- the metric ---------------------------------------------------------------------------------


def test_entity_scores_against_hand_counts_iob1():
    gold = [["I-PER", "I-PER", "O", "I-LOC"],  # PER(0-1) LOC(3): I- starts both (IOB1)
            ["I-LOC", "B-LOC", "O", "I-ORG"]]  # LOC(0) LOC(1): B- between two adjacent LOCs; ORG(3)
    pred = [["I-PER", "I-PER", "O", "I-ORG"],  # PER right; ORG(3) has the wrong type: one FP, one FN
            ["I-LOC", "I-LOC", "O", "I-ORG"]]  # LOC(0-1) merges the two gold LOCs: one FP, two FN; ORG right
    # 5 gold entities, 4 predicted, 2 right
    scores = entity_scores(gold, pred, "IOB1")
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 5)
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)  # 4/9
    assert scores["accuracy"] == pytest.approx(6 / 8)  # words: 3 of 4 right in each sentence
    all_o = entity_scores(gold, [["O"] * 4, ["O"] * 4], "IOB1")
    assert (all_o["precision"], all_o["recall"], all_o["f1"]) == (0.0, 0.0, 0.0)
    assert all_o["accuracy"] == pytest.approx(2 / 8)  # the two gold O words


def test_entity_scores_iob2_strict_and_conlleval_default():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"]]  # I-LOC after O: no IOB2 entity; conlleval counts it
    strict = entity_scores(gold, pred, "IOB2")
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5) and strict["f1"] == pytest.approx(2 / 3)
    lenient = entity_scores(gold, pred, "IOB1")
    assert (lenient["precision"], lenient["recall"], lenient["f1"]) == (1.0, 1.0, 1.0)


# --- label alignment ----------------------------------------------------------------------------


def split_word(tokenizer, candidates=("xylophonists", "thermodynamically", "zygomorphic", "quizzically")):
    """A word the tokenizer cuts into three or more pieces."""
    for word in candidates:
        if len(tokenizer.tokenize(word)) >= 3:
            return word
    pytest.fail("no candidate word splits into 3 pieces: the alignment test needs one")


def ner_task(checkpoint, data, *overrides):
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("ner", [f"model.name_or_path={checkpoint}", f"objective.data={data}", *overrides])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    return task, tok


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("bert"))


def test_first_piece_gets_the_label_other_pieces_and_specials_minus_100(tmp_path, bert_dir):
    from transformers import AutoTokenizer

    long = split_word(AutoTokenizer.from_pretrained(bert_dir))
    words = ["the", long, "was", "in", "new", "that"]  # the others are one piece each in the tiny vocabulary
    first = "\n".join(f"{w} {t}" for w, t in zip(words, ["O", "B-PER", "O", "O", "I-LOC", "O"])) + "\n"
    write(tmp_path / "d", "train.txt", first + "\nthe O\nand I-PER\n")
    write(tmp_path / "d", "valid.txt", first + "\n" + "the O\n" * 70)  # 70 words: cut at 64 positions
    task, tok = ner_task(bert_dir, tmp_path / "d")
    assert task.labels == ["O", "B-PER", "I-LOC", "I-PER"] and task.scheme == "IOB1"
    train, dev = task.prepare(tok)
    pieces = [len(tok.tokenize(w)) for w in words]
    assert pieces[1] >= 3 and all(n == 1 for i, n in enumerate(pieces) if i != 1)
    o, b_per, i_loc, i_per = 0, 1, 2, 3
    cont = [-100] * (pieces[1] - 1)
    assert train[0]["labels"] == [-100, o, b_per, *cont, o, o, i_loc, o, -100]  # [CLS] ... [SEP]
    assert tok.convert_ids_to_tokens(train[0]["input_ids"])[0] == tok.cls_token
    # label_all_subwords: every piece trained, B-PER's other pieces as I-PER
    task2, tok2 = ner_task(bert_dir, tmp_path / "d", "objective.label_all_subwords=true")
    train2, _ = task2.prepare(tok2)
    assert train2[0]["labels"] == [-100, o, b_per, *[i_per] * (pieces[1] - 1), o, o, i_loc, o, -100]

    # the 70-word dev sentence is cut at 64 positions ([CLS] + 62 words + [SEP]): the rest is predicted O
    starts = task.eval_starts[1]
    assert starts == list(range(1, 63)) + [-1] * 8
    assert task.word_tags(1, [i_loc] * 64) == ["I-LOC"] * 62 + ["O"] * 8
    assert {len(e["input_ids"]) for e in dev} == {len(train[0]["input_ids"]), 64}


def test_byte_level_bpe_words_get_their_leading_space(tmp_path):
    """RoBERTa / GPT-2 tokenizers split into words encode each word as in running text ('Ġparis')."""
    import transformers

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:1000]
    tok = build_tokenizer("roberta", lines, 1000, tmp_path / "roberta", model_max_length=64)
    words = ["mr", "smith", "lives", "in", "paris"]
    text_ids = tok(" " + " ".join(words))["input_ids"]  # running text: a space before every word
    assert tok(words, is_split_into_words=True)["input_ids"] != text_ids, "the problem must exist to be fixed"
    fixed = with_prefix_space(tok)
    assert fixed(words, is_split_into_words=True)["input_ids"] == text_ids
    assert with_prefix_space(fixed) is fixed  # already right: not reloaded

    transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=66, pad_token_id=tok.pad_token_id)).save_pretrained(tmp_path / "roberta")
    write(tmp_path / "d", "train.txt", "\n".join(f"{w} {t}" for w, t in zip(words, "O B-PER O O B-LOC".split())))
    write(tmp_path / "d", "valid.txt", "mr O\nsmith B-PER\n")
    task, tok = ner_task(tmp_path / "roberta", tmp_path / "d")
    train, _ = task.prepare(tok)
    assert tok.convert_ids_to_tokens(train[0]["input_ids"])[1:-1] == tok.tokenize(" " + " ".join(words))
    assert task.scheme == "IOB2" and task.build_model(tok).config.id2label == {0: "O", 1: "B-LOC", 2: "B-PER"}


# --- learning a synthetic set end to end --------------------------------------------------------

# names are people after "mr", places after "in" (a place may be "<name> city"): the same name is either,
# so only the context tells the type; a quarter of the names never occur in train
NAMES = ["smith", "paris", "jones", "london", "brown", "berlin", "taylor", "rome", "wilson", "madrid", "davis",
         "vienna", "clark", "lisbon", "lewis", "oslo", "walker", "dublin", "young", "prague", "allen", "athens",
         "king", "sofia"]
FILLER = ["the", "a", "said", "today", "that", "was", "very", "good", "and", "then", "morning", "we"]


def synthetic_sentence(rng, names):
    """'... mr <name> ... in <name> [city] ...' in IOB1 (every entity word I-); "in" also before filler."""
    words, tags = [], []

    def add(tokens, tag):
        words.extend(tokens)
        tags.extend([tag] * len(tokens))

    add(rng.choices(FILLER, k=rng.randint(0, 3)), "O")
    add(["mr", rng.choice(names)], "O")
    tags[-1] = "I-PER"
    add(rng.choices(FILLER, k=rng.randint(1, 3)), "O")
    if rng.random() < 0.3:
        add(["in", "the", "morning"], "O")
    add(["in"], "O")
    add([rng.choice(names)] + ["city"] * (rng.random() < 0.3), "I-LOC")
    add(rng.choices(FILLER, k=rng.randint(0, 2)), "O")
    return words, tags


def synthetic_conll(folder, seed=0):
    rng = random.Random(seed)
    names = {"train.txt": NAMES[:18], "valid.txt": NAMES, "test.txt": NAMES}
    for name, n in (("train.txt", 400), ("valid.txt", 100), ("test.txt", 20)):
        blocks = ["-DOCSTART- -X- -X- O\n"]
        for _ in range(n):
            words, tags = synthetic_sentence(rng, names[name])
            blocks.append("\n".join(f"{w} NN I-NP {t}" for w, t in zip(words, tags)) + "\n")
        write(folder, name, "\n".join(blocks))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bert_dir):
    from conftest import reset_accelerate

    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    root = tmp_path_factory.mktemp("ner")
    data = synthetic_conll(root / "conll")
    recipe = load_recipe("ner", [f"model.name_or_path={bert_dir}", f"objective.data={data}",
                                 f"training.output_dir={root / 'run'}", "training.mixed_precision=no",
                                 "training.num_train_epochs=6", "training.per_device_train_batch_size=16",
                                 "training.learning_rate=3e-3", "training.logging_steps=5"])
    reset_accelerate()
    result = train(get_task(recipe.task)(recipe), recipe)
    reset_accelerate()
    return result


def word_identity_f1(data) -> float:
    """Dev F1 of tagging each word with its most frequent train tag (unseen words O): no context used."""
    from collections import Counter, defaultdict

    counts = defaultdict(Counter)
    for s in read_conll(data / "train.txt"):
        for w, t in zip(s["tokens"], s["tags"]):
            counts[w][t] += 1
    dev = read_conll(data / "valid.txt")
    pred = [[counts[w].most_common(1)[0][0] if w in counts else "O" for w in s["tokens"]] for s in dev]
    return entity_scores([s["tags"] for s in dev], pred, "IOB1")["f1"]


def test_a_tiny_model_learns_synthetic_entities(trained):
    # all-O scores F1 0 (word accuracy ~0.77); tagging by word identity alone stays far lower: a name is
    # a person or a place by its context, and a quarter of the dev names are new. Measured: F1 0.89-0.93
    # over 5 seeds, 0.72-0.81 after the first epoch.
    final, baseline = trained.eval_metrics, word_identity_f1(trained.output_dir.parent / "conll")
    assert baseline < 0.6, baseline
    assert final["eval/f1"] > max(0.75, baseline + 0.2), (final, baseline)
    assert final["eval/precision"] > 0.7 and final["eval/recall"] > 0.7
    assert final["eval/accuracy"] > 0.9
    assert trained.exported_evaluation["metric"] == "f1"  # the best dev F1 is the export


def test_the_run_reports_entity_metrics(trained):
    import json

    for key in ("eval/f1", "eval/precision", "eval/recall", "eval/accuracy", "eval/loss"):
        assert 0.0 <= trained.eval_metrics[key] < float("inf"), key
    rows = [json.loads(ln) for ln in (trained.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("eval/f1" in r for r in rows) >= 4  # every epoch evaluated (export_best), then the final one


def test_the_export_runs_in_the_token_classification_pipeline(trained):
    import transformers

    folder = str(trained.output_dir / "final")
    config = transformers.AutoConfig.from_pretrained(folder)
    assert set(config.id2label.values()) == {"O", "I-PER", "I-LOC"}
    ner = transformers.pipeline("token-classification", model=folder, tokenizer=folder, aggregation_strategy="first")
    found = {(e["entity_group"], e["word"]) for e in ner("then mr wilson was very good in london")}
    assert ("PER", "wilson") in found and ("LOC", "london") in found, found


def test_lora_trains_the_adapters_and_head_and_exports_a_plain_model(tmp_path, bert_dir):
    import transformers

    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    data = synthetic_conll(tmp_path / "conll")
    recipe = load_recipe("ner", [f"model.name_or_path={bert_dir}", f"objective.data={data}", "objective.peft=lora",
                                 "objective.max_train_examples=64", "objective.max_eval_examples=32",
                                 f"training.output_dir={tmp_path / 'run'}", "training.mixed_precision=no",
                                 "training.num_train_epochs=1", "training.per_device_train_batch_size=16"])
    result = train(get_task(recipe.task)(recipe), recipe)
    assert [d.name for d in result.export_dirs] == ["final", "final-adapter"]
    model = transformers.AutoModelForTokenClassification.from_pretrained(result.export_dirs[0])
    assert model.config.id2label == {0: "O", 1: "I-LOC", 2: "I-PER"} and model.num_labels == 3
    assert 0.0 <= result.eval_metrics["eval/f1"] <= 1.0


def test_a_data_folder_that_is_not_there_is_one_error_line(tmp_path, bert_dir):
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("ner", [f"model.name_or_path={bert_dir}", f"objective.data={tmp_path / 'nothing'}"])
    task = get_task(recipe.task)(recipe)
    with pytest.raises(LmforgeError, match=r"^conll .*nothing: not a folder"):
        task.setup(task.load_tokenizer())


def test_make_finetune_task_ner_writes_eval_results(tmp_path):
    """The command path: `finetune --task ner --data DIR` trains, exports and writes eval_results.json."""
    import json

    from pipelines.commands.finetune import run_finetune

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    data = tmp_path / "conll"
    data.mkdir()
    rows = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n. O\n\nPeter B-PER\nBlackburn I-PER\n\n"
    for name in ("train.txt", "valid.txt"):
        (data / name).write_text("-DOCSTART- O\n\n" + rows * 8)
    summary = run_finetune("ner", str(ckpt), data=str(data), output_dir=str(tmp_path / "run"),
                           overrides=["data.max_seq_length=64", "training.num_train_epochs=1",
                                      "training.per_device_train_batch_size=8"])
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["task"] == "ner" and saved["f1"] == summary["f1"] and {"precision", "recall"} <= set(saved)
    assert (tmp_path / "run" / "final" / "config.json").is_file()
