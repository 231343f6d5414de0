"""data.num_proc: prepare encodes in worker processes and still writes the same shards, byte for byte,
under the same cache key; the setting is range-checked in one line."""

import json
from pathlib import Path

import pytest

from pipelines.config import DataSection, load_recipe
from pipelines.data import prepare
from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.prepare import encode_processes, shards_folder, write_shards
from pipelines.data.shards import META
from pipelines.errors import LmforgeError


def _corpus(root: Path) -> Path:
    """Three files (so three shard prefixes) of the default corpus, one of them a document per line:
    over a thousand documents, several encode batches."""
    docs = default_corpus_path().read_text(encoding="utf-8").split("\n\n")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n\n".join(docs[:150]) + "\n")
    lines = [ln for d in docs[150:300] for ln in d.splitlines() if ln.strip()]
    (corpus / "b.txt").write_text("\n".join(" ".join(lines[i:i + 2]) for i in range(0, len(lines), 2)))
    (corpus / "c.txt").write_text("\n\n".join(docs[300:]) + "\n")
    return corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("num-proc")
    corpus = _corpus(root)
    texts = [ln for p in sorted(corpus.glob("*.txt")) for ln in p.read_text().splitlines() if ln.strip()]
    return root, corpus, build_tokenizer("roberta", texts[:3000], 1000, root / "tokenizer")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_processes_write_the_same_bytes(setup, monkeypatch):
    root, corpus, tokenizer = setup
    # the first batches in this process, the rest in the workers: both paths and the hand-over
    monkeypatch.setattr(prepare, "POOL_AFTER_CHARS", 100_000)
    started, workers = [], prepare.Encoder._workers
    monkeypatch.setattr(prepare.Encoder, "_workers", lambda self: started.append(1) or workers(self))
    one, two = DataSection(corpus=str(corpus), num_proc=1), DataSection(corpus=str(corpus), num_proc=2)
    assert shards_folder(one, tokenizer) == shards_folder(two, tokenizer)  # not part of the cache key
    metas = [write_shards(data, tokenizer, root / name, shard_tokens=30_000, log=lambda _: None)
             for data, name in ((one, "one"), (two, "two"))]
    assert metas[0]["documents"] > 1000 and len(metas[0]["shards"]) > 6  # several files, shards, batches
    assert started  # the second preparation did hand batches to worker processes
    a, b = _files(root / "one"), _files(root / "two")
    assert a.keys() == b.keys() and META in a
    assert all(a[name] == b[name] for name in a if name != META)
    # meta.json differs only in "seconds", the preparation's wall time
    meta_a, meta_b = json.loads(a[META]), json.loads(b[META])
    assert meta_a.pop("seconds") >= 0 and meta_b.pop("seconds") >= 0
    assert meta_a == meta_b


def test_num_proc_is_range_checked():
    assert load_recipe("bert-tiny").data.num_proc == -1
    assert encode_processes(DataSection(num_proc=-1)) >= 1 and encode_processes(DataSection(num_proc=3)) == 3
    for bad in (0, -2):
        with pytest.raises(LmforgeError, match=f"data.num_proc: {bad} is out of range") as exc:
            load_recipe("bert-tiny", [f"data.num_proc={bad}"])
        assert "\n" not in str(exc.value)
        with pytest.raises(LmforgeError, match="data.num_proc"):
            encode_processes(DataSection(num_proc=bad))
