"""Multiple choice (SWAG, RACE): the readers on files written here, the features (the context is cut,
never an option), the accuracy (ties go to the first option), and a tiny BERT that learns a rule which
needs the context, exported as a plain AutoModelForMultipleChoice folder."""

import csv
import json
import random

import pytest
from conftest import tiny_bert_checkpoint

from pipelines.errors import LmforgeError

SWAG_HEADER = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
               "ending0", "ending1", "ending2", "ending3", "label"]


def write_swag(path, rows, header=SWAG_HEADER):
    """An official-layout SWAG CSV; each row: (sent1, sent2, [4 endings], label)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, (sent1, sent2, endings, label) in enumerate(rows):
            w.writerow([i, "anetv_x", 7, f"{sent1} {sent2}", sent1, sent2, "gold", *endings, label][:len(header)])
    return path


def write_race(root, split, level, name, content):
    path = root / split / level / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny BERT checkpoint, with fixed random weights (the learnability test's threshold is for them)."""
    import torch

    torch.manual_seed(0)
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("mc") / "base")


def make_task(base, data, overrides=()):
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("swag", [f"model.name_or_path={base}", f"objective.data={data}", "data.max_seq_length=64",
                                  *overrides])
    return get_task(recipe.task)(recipe), recipe


# --- (a) readers -------------------------------------------------------------------------------


def test_swag_csv_read_by_column_name(tmp_path):
    from pipelines.data.multiple_choice import load_multiple_choice

    rows = [("A man sits at a piano.", "He", ["plays a song.", "eats, then sleeps.", "runs.", "swims."], 0),
            ("The girl, smiling, waves.", "She", ["waves back.", "jumps.", "sings \"hello\".", "leaves."], 2)]
    write_swag(tmp_path / "train.csv", rows[:1])
    # columns in another order: read by name, never by position
    order = [0, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    with open(tmp_path / "val.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([SWAG_HEADER[i] for i in order])
        for i, (s1, s2, endings, label) in enumerate(rows):
            full = [i, "v", 0, f"{s1} {s2}", s1, s2, "gold", *endings, label]
            w.writerow([full[j] for j in order])
    dev = load_multiple_choice("swag", str(tmp_path), "dev")  # val.csv is SWAG's dev
    assert dev == [
        {"context": "A man sits at a piano.", "question": "He", "label": 0, "id": "0",
         "options": ["He plays a song.", "He eats, then sleeps.", "He runs.", "He swims."]},
        {"context": "The girl, smiling, waves.", "question": "She", "label": 2, "id": "1",
         "options": ["She waves back.", "She jumps.", "She sings \"hello\".", "She leaves."]}]
    assert load_multiple_choice("swag", str(tmp_path), "train") == dev[:1]


def test_race_folder_cloze_and_question_forms(tmp_path):
    from pipelines.data.multiple_choice import load_multiple_choice

    root = tmp_path / "RACE"
    article = "Tom   lives in a small town.\nHe likes\n\n dogs."
    write_race(root, "dev", "high", "10.txt", {
        "article": article, "id": "high10.txt",
        "questions": ["Tom lives in a _ town.", "What does Tom like?"],
        "options": [["big", "small", "red", "old"], ["Cats.", "Birds.", "Dogs.", "Fish."]],
        "answers": ["B", "C"]})
    write_race(root, "dev", "high", "2.txt", {"article": "x", "id": "high2.txt", "questions": ["Why?"],
                                               "options": [["a", "b", "c", "d"]], "answers": ["D"]})
    write_race(root, "dev", "middle", "5.txt", {"article": "y", "id": "middle5.txt", "questions": ["_ is it."],
                                                 "options": [["a", "b", "c", "d"]], "answers": ["A"]})
    dev = load_multiple_choice("race", str(root), "dev")
    # middle/ before high/, files in number order (2 before 10)
    assert [e["id"] for e in dev] == ["middle5.txt-1", "high2.txt-1", "high10.txt-1", "high10.txt-2"]
    assert dev[2] == {"context": "Tom lives in a small town. He likes dogs.", "question": "Tom lives in a _ town.",
                      "options": ["Tom lives in a big town.", "Tom lives in a small town.", "Tom lives in a red town.",
                                  "Tom lives in a old town."], "label": 1, "id": "high10.txt-1"}
    assert dev[3]["options"] == ["What does Tom like? Cats.", "What does Tom like? Birds.",
                                 "What does Tom like? Dogs.", "What does Tom like? Fish."]
    assert dev[3]["label"] == 2 and dev[1]["label"] == 3
    assert dev[0]["options"][0] == "a is it."
    assert load_multiple_choice("race", str(tmp_path), "dev") == dev  # the parent of RACE/ works too


def _race_file(**changes):
    obj = {"article": "text", "id": "high12.txt", "questions": ["Q1?", "Q2?", "Q3?"],
           "options": [["a", "b", "c", "d"]] * 3, "answers": ["A", "B", "C"]}
    return {**obj, **changes}


@pytest.mark.parametrize("dataset, files, record, words", [
    ("swag", {"val.csv": [("s", "h", ["a", "b", "c", "d"], 0), ("s", "h", ["a", "b", "c", "d"], 4)]},
     "val.csv, line 3", "label '4' is not an option index 0..3"),
    ("swag", {"val.csv": [("s", "h", ["a", "b", "c", "d"], "x")]}, "val.csv, line 2", "label 'x'"),
    ("swag", {"val.csv": "short"}, "val.csv, line 2", "expected 12 fields"),
    ("swag", {"val.csv": SWAG_HEADER[:10] + ["label"]}, "val.csv", "missing column 'ending3'"),
    ("swag", {}, "", "no val.csv"),
    ("race", {"dev/high/12.txt": _race_file(options=[["a", "b", "c", "d"], ["a", "b", "c", "d"], []])},
     "dev/high/12.txt, question 3", "no options"),
    ("race", {"dev/high/12.txt": _race_file(answers=["A", "E", "C"])}, "dev/high/12.txt, question 2",
     "answer 'E' is not a letter A..D"),
    ("race", {"dev/high/12.txt": _race_file(answers=["A", "B", 2])}, "dev/high/12.txt, question 3", "answer 2"),
    ("race", {"dev/high/12.txt": "{not json"}, "dev/high/12.txt", "not a readable JSON file"),
    ("race", {"dev/high/12.txt": _race_file(answers=["A"])}, "dev/high/12.txt", "3 questions, 3 option lists and 1"),
    ("race", {"dev/high/12.txt": _race_file(article=None)}, "dev/high/12.txt", "'article' is missing"),
    ("race", {"dev/middle/1.txt": _race_file(id="middle1.txt"),
              "dev/high/12.txt": _race_file(options=[["a", "b"]] * 3, answers=["A", "B", "A"])}, "",
     "example high12.txt-1 has 2 options, example middle1.txt-1 has 4"),
    ("race", {"train/high/1.txt": _race_file()}, "dev", "no .txt files in middle/ or high/"),
    ("race", {"other.txt": "x"}, "", "not a RACE folder"),
])
def test_bad_input_is_one_line_naming_file_and_record(tmp_path, dataset, files, record, words):
    from pipelines.data.multiple_choice import load_multiple_choice

    root = tmp_path / "data"
    root.mkdir()
    for name, content in files.items():
        if dataset == "swag" and isinstance(content, list) and isinstance(content[0], tuple):
            write_swag(root / name, content)
        elif dataset == "swag" and isinstance(content, list):  # a header only
            write_swag(root / name, [("s", "h", ["a", "b", "c", "d"], 0)], header=content)
        elif dataset == "swag":  # a row with too few fields
            write_swag(root / name, [])
            with open(root / name, "a", encoding="utf-8") as f:
                f.write(f"{content},x\n")
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(LmforgeError) as info:
        load_multiple_choice(dataset, str(root), "dev")
    message = str(info.value)
    assert "\n" not in message and words in message and str(root) in message
    assert f"{root}/{record}" in message or not record


def test_bad_settings_are_refused(tmp_path):
    from pipelines.data.multiple_choice import load_multiple_choice

    with pytest.raises(LmforgeError, match="dataset: 'cosmos' is not one of swag, race"):
        make_task("x", tmp_path, ["objective.dataset=cosmos"])
    with pytest.raises(LmforgeError, match=f"swag data {tmp_path}/nowhere: no such folder"):
        load_multiple_choice("swag", str(tmp_path / "nowhere"), "train")
    with pytest.raises(LmforgeError, match="no split 'test'"):
        load_multiple_choice("swag", str(tmp_path), "test")


def test_recipes_follow_the_papers():
    from pipelines.config import load_recipe

    swag, race = load_recipe("swag"), load_recipe("race")
    assert swag.task == race.task == "multiple-choice"
    assert (swag.objective["dataset"], swag.data.max_seq_length, swag.training.num_train_epochs,
            swag.training.per_device_train_batch_size) == ("swag", 128, 3, 16)
    assert (race.objective["dataset"], race.data.max_seq_length, race.training.num_train_epochs,
            race.training.per_device_train_batch_size, race.training.warmup_ratio) == ("race", 512, 4, 16, 0.06)


# --- (b) the metric ----------------------------------------------------------------------------


def test_accuracy_by_hand_with_tied_logits(tmp_path):
    import torch

    from tasks.finetuning.multiple_choice import choose

    logits = torch.tensor([[1.0, 1.0, 0.0, 0.0],  # tie 0/1 -> 0 (right)
                           [0.0, 2.0, 2.0, 1.0],  # tie 1/2 -> 1 (label 2: wrong)
                           [3.0, 0.0, 0.0, 3.0],  # tie 0/3 -> 0 (label 3: wrong)
                           [0.0, 0.0, 0.0, 5.0],  # 3 (right)
                           [0.5, 0.5, 0.5, 0.5]])  # all tied -> 0 (right)
    labels = torch.tensor([0, 2, 3, 3, 0])
    preds = choose(logits)
    assert preds.tolist() == [0, 1, 0, 3, 0]  # argmax takes the FIRST of tied options
    task, _ = make_task("x", tmp_path)
    # two eval batches as eval_batch returns them: (predictions, labels); 3 of 5 right
    outputs = [(preds[:2], labels[:2]), (preds[2:], labels[2:])]
    assert task.eval_metrics(None, [{}, {}], outputs=outputs) == {"accuracy": pytest.approx(3 / 5)}


# --- (c) features ------------------------------------------------------------------------------


def test_the_context_is_cut_never_an_option(base, capsys):
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    from tasks.finetuning.multiple_choice import encode

    tok = AutoTokenizer.from_pretrained(base)
    context = " ".join(["the data is written to the buffer"] * 20)
    # the second option leaves 24 - 3 - 15 tokens of context: cutting "the longest first" would cut it too
    options = ["the buffer", "a lock is taken before the data is read from the buffer by the thread", "it",
               "the event loop is closed now"]
    examples = [{"context": context, "options": options, "label": 1},
                {"context": "short context", "options": ["one", "two", "three", "four"], "label": 3}]
    feats = encode(tok, examples, 24)
    ctx_ids = tok(context, add_special_tokens=False)["input_ids"]
    for e, f in zip(examples, feats):
        assert f["label"] == e["label"] and len(f["input_ids"]) == 4
        for option, ids, types in zip(e["options"], f["input_ids"], f["token_type_ids"]):
            ids, types = ids.tolist(), types.tolist()
            own = tok(option, add_special_tokens=False)["input_ids"]
            assert len(ids) <= 24
            second = [i for i, t in zip(ids, types) if t == 1][:-1]  # without the closing [SEP]
            assert second == own, "the option must stay whole"
            first = [i for i, t in zip(ids, types) if t == 0][1:-1]  # without [CLS] and [SEP]
            if e is examples[0]:
                assert len(ids) == 24 and first == ctx_ids[:24 - 3 - len(own)]  # the article's end was cut
    # an option that alone exceeds max_length cannot stay whole: cut (with a warning), not a crash
    long = [{"context": context, "options": ["x"] * 3 + [" ".join(["buffer"] * 40)], "label": 0}]
    assert max(len(ids) for ids in encode(tok, long, 24)[0]["input_ids"]) == 24
    assert "1 of 4 options alone are longer than max_length 24" in capsys.readouterr().err

    # collate: [examples, options, tokens]; the summed loss is the sum of per-example losses
    task, _ = make_task(base, "unused")
    task.setup(tok)
    batch = task.collate(feats, torch.Generator())
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, 4, 24)
    assert batch["attention_mask"][1].sum(-1).tolist() == [len(ids) for ids in feats[1]["input_ids"]]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()
    assert batch["labels"].tolist() == [1, 3] and task.loss_counts(batch)["loss"].item() == 2
    model = AutoModelForMultipleChoice.from_pretrained(base).eval()
    with torch.no_grad():
        summed = task.loss(model, batch)["loss"]
        logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    assert summed.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, batch["labels"],
                                                                            reduction="sum").item(), rel=1e-5)


# --- (d, e) learnability end to end ------------------------------------------------------------

KEYWORDS = ["buffer", "socket", "thread", "event", "lock", "file", "queue", "string", "number", "error",
            "future", "handler", "module", "method", "class", "loop", "data", "index", "line", "item"]


def learnable_swag(root, n_train=2000, n_dev=80):
    """SWAG-format data whose right ending repeats the context's five keywords (in another order) and whose
    wrong endings hold the other fifteen: every example uses all twenty, so no word tells the answer
    apart without reading the context."""
    rng = random.Random(0)
    for name, n in (("train.csv", n_train), ("val.csv", n_dev)):
        rows = []
        for _ in range(n):
            words = rng.sample(KEYWORDS, 20)
            groups = [words[i:i + 5] for i in range(0, 20, 5)]
            label = rng.randrange(4)
            endings = [" ".join(rng.sample(g, 5)) for g in groups[1:]]
            endings.insert(label, " ".join(rng.sample(groups[0], 5)))
            rows.append((" ".join(groups[0]) + " .", "then", endings, label))
        write_swag(root / name, rows)
    return root


def test_tiny_bert_learns_swag_and_exports_a_plain_model(base, tmp_path):
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    from pipelines.data.multiple_choice import load_multiple_choice
    from pipelines.engine.loop import train

    data = learnable_swag(tmp_path / "swag")
    task, recipe = make_task(base, data, [f"training.output_dir={tmp_path / 'run'}", "training.num_train_epochs=15",
                                          "training.learning_rate=2e-3", "training.logging_steps=20"])
    result = train(task, recipe)
    # chance is 0.25; this initialisation (torch seed 0) ends at 0.95, seeds 1..8 ended at 0.74..1.0
    # when this test was written: the model escapes the ln(4) plateau at a different epoch each time
    assert result.eval_metrics["eval/accuracy"] > 0.6
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval/accuracy"] == result.eval_metrics["eval/accuracy"]

    # final/ is a plain transformers folder: fed the HF way (pairs flattened, then [examples, options, tokens]),
    # it scores the dev set as the run's exported (best) evaluation did
    final = tmp_path / "run" / "final"
    model, tok = AutoModelForMultipleChoice.from_pretrained(final).eval(), AutoTokenizer.from_pretrained(final)
    dev = load_multiple_choice("swag", str(data), "dev")
    enc = tok([e["context"] for e in dev for _ in e["options"]], [o for e in dev for o in e["options"]],
              truncation="only_first", max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**{k: v.view(len(dev), 4, -1) for k, v in enc.items()}).logits
    preds = logits.argmax(-1)
    accuracy = (preds == torch.tensor([e["label"] for e in dev])).float().mean().item()
    assert accuracy == pytest.approx(result.exported_metrics["accuracy"])

    # one example through the task's own features and collate gives the same prediction
    from tasks.finetuning.multiple_choice import choose, encode

    task.setup(tok)
    batch = task.collate(encode(tok, dev[:1], task.max_length), torch.Generator())
    with torch.no_grad():
        assert choose(task._logits(model, batch)).item() == preds[0].item()


def test_lora_trains_the_family_head_and_exports_a_plain_model(base, tmp_path):
    """ELECTRA's head is sequence_summary + classifier, BERT's classifier (+ the pooler its checkpoint lacks)."""
    import shutil

    import torch
    import transformers

    from tasks.finetuning.multiple_choice import encode

    electra = tmp_path / "electra"
    shutil.copytree(base, electra)
    transformers.ElectraForPreTraining(transformers.ElectraConfig(
        vocab_size=1000, embedding_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64)).save_pretrained(electra)
    examples = [{"context": "the data is read", "options": ["one", "two", "three", "four"], "label": 2}]
    for folder, head in ((base, {"classifier", "bert.pooler.dense"}), (electra, {"classifier", "sequence_summary"})):
        task, _ = make_task(folder, "unused", ["objective.peft=lora"])
        tok = task.load_tokenizer()
        task.setup(tok)
        model = task.build_model(tok)
        full = {n.split(".modules_to_save")[0].removeprefix("base_model.model.")
                for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
        assert full == head
        batch = task.collate(encode(tok, examples, 64), torch.Generator())
        task.loss(model, batch)["loss"].backward()  # the [examples, options, tokens] batch passes peft's wrapper
        model.eval()
        with torch.no_grad():
            for p in model.parameters():  # as if trained: the adapters (zero at the start) and the head move
                if p.requires_grad:
                    p.add_(0.05)
            want = task._logits(model, batch)
        out = task.export(model, tok, tmp_path / f"{folder.name}-final")
        plain = transformers.AutoModelForMultipleChoice.from_pretrained(out[0]).eval()
        with torch.no_grad():
            assert torch.allclose(task._logits(plain, batch), want, atol=1e-5)
        assert (tmp_path / f"{folder.name}-final-adapter").is_dir()


def test_make_finetune_task_swag_writes_eval_results(base, tmp_path):
    """The command path: `finetune --task swag --data DIR` trains, exports and writes eval_results.json."""
    from pipelines.commands.finetune import run_finetune

    data = learnable_swag(tmp_path / "swag", n_train=64, n_dev=16)
    summary = run_finetune("swag", str(base), data=str(data), output_dir=str(tmp_path / "run"),
                           overrides=["data.max_seq_length=64", "training.num_train_epochs=1"])
    saved = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert saved["task"] == "swag" and saved["accuracy"] == summary["accuracy"] and 0 <= saved["accuracy"] <= 1
    assert (tmp_path / "run" / "final" / "config.json").is_file()
