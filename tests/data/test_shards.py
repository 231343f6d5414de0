"""The prepared-data path: shards round-trip to the source text, the cache key, interrupted
preparations, streaming sources, and batches that do not depend on the number of workers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.config import DataSection, load_recipe
from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.prepare import shards_folder, write_shards
from pipelines.data.shards import META, ShardSet
from pipelines.data.sources import iter_documents, read_sentence_file, sample_texts
from pipelines.errors import LmforgeError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def documents():
    return read_sentence_file(default_corpus_path())[:120]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory, documents):
    """family -> tokenizer: WordPiece (bert), byte-level BPE (roberta, gpt2), Unigram (albert)."""
    from tokenizer import build_tokenizer

    texts = [s for d in documents for s in d]
    root = tmp_path_factory.mktemp("tok")
    return {f: build_tokenizer(f, texts, 1000, root / f) for f in ("bert", "roberta", "gpt2", "albert")}


def corpus_file(path: Path, documents) -> Path:
    path.write_text("".join("\n".join(d) + "\n\n" for d in documents), encoding="utf-8")
    return path


def prepare(tmp_path, tokenizer, corpus: Path, **data) -> ShardSet:
    section = DataSection(corpus=str(corpus), prepared_dir=str(tmp_path / "prepared"), **data)
    folder = shards_folder(section, tokenizer)
    write_shards(section, tokenizer, folder, shard_tokens=5000, log=lambda *_: None)
    return ShardSet.open(folder)


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "albert"])
def test_shards_hold_the_running_text_tokens(tmp_path, tokenizers, documents, family):
    """Each document's tokens are what the tokenizer gives its running text, sentence bounds fall on
    sentence starts, and byte-level BPE keeps the space before every sentence."""
    tok = tokenizers[family]
    store = prepare(tmp_path, tok, corpus_file(tmp_path / "c.txt", documents))
    assert store.n_documents == len(documents) and len(store.meta["shards"]) > 1  # several shards
    for d, doc in enumerate(documents):
        bounds = store.sentence_bounds(d)
        ids = store.tokens(int(bounds[0]), int(bounds[-1])).tolist()
        assert ids == tok(" ".join(doc), add_special_tokens=False)["input_ids"], family
        assert len(bounds) - 1 == len(doc)
        for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            piece = tok.decode(store.tokens(int(a), int(b)).tolist())
            if family in ("roberta", "gpt2"):  # lossless: exact text, with its leading space after the first
                assert piece == (" " if s else "") + doc[s]
            else:
                assert piece.strip().lower().replace(" ", "")[:5] == \
                    tok.decode(tok(doc[s], add_special_tokens=False)["input_ids"]).strip().lower().replace(" ", "")[:5]


def test_packed_byte_level_blocks_decode_to_the_source_text(tmp_path, tokenizers, documents):
    from pipelines.data.packing import PackedBlocks

    tok = tokenizers["roberta"]
    store = prepare(tmp_path, tok, corpus_file(tmp_path / "c.txt", documents))
    blocks = PackedBlocks(store, np.arange(store.n_documents), 100, tok.sep_token_id, drop_last=False)
    text = tok.decode(np.concatenate([blocks.read(i) for i in range(len(blocks))]).tolist())
    assert text == tok.sep_token.join(" ".join(d) for d in documents)
    assert ". It" in text or ". The" in text  # sentences are not run together (".It")


def test_word_starts_follow_the_pre_tokenizer(tmp_path, tokenizers):
    tok = tokenizers["bert"]
    doc = ["The unbelievably quick fox.", "Sphinx of black quartz judge my vow."]
    store = prepare(tmp_path, tok, corpus_file(tmp_path / "w.txt", [doc, ["Another short document here."]]))
    b = store.sentence_bounds(0)
    starts = store.word_starts(int(b[0]), int(b[-1]))
    words = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(" ".join(doc))
    assert int(starts.sum()) == len(words) and starts[0] == 1


def test_wikitext_headings_are_document_boundaries(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(" \n = Valkyria = \n \n First article text . It has two sentences here .\n \n"
                    " = = Gameplay = = \n \n More text about the game here .\n \n = Lobster = \n \n"
                    " The lobster is blue in life here .\n", encoding="utf-8")
    docs = list(iter_documents(DataSection(corpus=str(path))))
    assert len(docs) == 2
    assert not any("=" in s for d in docs for s in d)  # headings and section titles are not text
    assert docs[1] == ["The lobster is blue in life here ."]


def test_files_are_streamed_not_read_whole(tmp_path, documents):
    path = corpus_file(tmp_path / "c.txt", documents)
    stream = iter_documents(DataSection(corpus=str(path)))
    first = next(stream)
    path.write_text("changed", encoding="utf-8")  # a streaming reader keeps its open file
    assert first == documents[0] and next(stream) == documents[1]


def test_tokenizer_sample_is_bounded_and_seeded(tmp_path, documents):
    path = corpus_file(tmp_path / "c.txt", documents * 5)
    section = DataSection(corpus=str(path))
    whole = sum(len(s) for d in documents * 5 for s in d)
    assert sum(map(len, sample_texts(section, 10 * whole))) == whole  # under the budget: everything
    small = sample_texts(section, whole // 10, seed=1)
    assert whole // 20 <= sum(map(len, small)) < whole // 5  # documents differ in size: about the budget
    assert small == sample_texts(section, whole // 10, seed=1) != sample_texts(section, whole // 10, seed=2)


def test_fingerprint_follows_tokens_not_training_settings(tmp_path, tokenizers, documents):
    path = corpus_file(tmp_path / "c.txt", documents)
    base = DataSection(corpus=str(path))
    key = shards_folder(base, tokenizers["bert"])
    same = [DataSection(corpus=str(path), max_seq_length=64), DataSection(corpus=str(path), dupe_factor=5),
            DataSection(corpus=str(path), validation_fraction=0.2)]
    assert all(shards_folder(s, tokenizers["bert"]) == key for s in same)
    changed = [shards_folder(base, tokenizers["roberta"]), shards_folder(DataSection(corpus=str(path),
               max_documents=10), tokenizers["bert"])]
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed.append(shards_folder(base, tokenizers["bert"]))
    assert len({key, *changed}) == 4


def test_a_killed_preparation_is_never_taken_for_a_finished_one(tmp_path, tokenizers, documents):
    """SIGKILL during prepare: the cache folder does not appear; the next run prepares it again
    and removes the dead run's temp folder."""
    path = corpus_file(tmp_path / "big.txt", documents * 40)
    tok_dir = tmp_path / "tok"
    tokenizers["bert"].save_pretrained(tok_dir)
    section = DataSection(corpus=str(path), prepared_dir=str(tmp_path / "prepared"))
    folder = shards_folder(section, tokenizers["bert"])
    code = ("import sys, time; from transformers import AutoTokenizer; from pipelines.config import DataSection;"
            "from pipelines.data import prepare as p;"
            "orig = p.encode_documents\n"
            "def slow(*a, **k):\n    time.sleep(0.05); return orig(*a, **k)\n"
            "p.encode_documents = slow;"
            f"p.write_shards(DataSection(corpus={str(path)!r}, prepared_dir={str(tmp_path / 'prepared')!r}),"
            f" AutoTokenizer.from_pretrained({str(tok_dir)!r}), p.Path({str(folder)!r}), shard_tokens=2000)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    while not list(folder.parent.glob(f".{folder.name}.tmp-*/*.bin")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(folder.parent.glob(f".{folder.name}.tmp-*")) and not folder.exists()
    with pytest.raises(LmforgeError, match="incomplete"):
        ShardSet.open(folder.parent / next(folder.parent.glob(f".{folder.name}.tmp-*")).name)
    write_shards(section, tokenizers["bert"], folder, log=lambda *_: None)
    assert (folder / META).exists() and not list(folder.parent.glob(f".{folder.name}.tmp-*"))
    assert ShardSet.open(folder).n_documents == len(documents) * 40


def test_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    """Collation in 2 DataLoader workers gives the same tensors as in the loop itself."""
    from conftest import TINY_BERT

    from pipelines.data.loader import micro_batch_loader
    from pipelines.data.sampler import GlobalBatchSampler
    from tasks.base import get_task

    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={tmp_path}"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train, _ = task.prepare(tok)
    sampler = GlobalBatchSampler(len(train), 8, 1, 0)
    runs = [list(micro_batch_loader(task, train, sampler, 0, 2, 0, first_step=3, last_step=9, workers=w))
            for w in (0, 2)]
    assert len(runs[0]) == len(runs[1]) == 12
    for a, b in zip(*runs):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(runs[0][0]["input_ids"], runs[0][1]["input_ids"])


def test_missing_corpus_is_one_clear_error(tmp_path):
    with pytest.raises(LmforgeError, match="not found"):
        next(iter_documents(DataSection(corpus=str(tmp_path / "nope.txt"))))
