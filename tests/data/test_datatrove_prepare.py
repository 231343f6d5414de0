"""datatrove preparation (pipelines/data/datatrove_prepare.py) writes exactly the shards `prepare`
writes: same files, same bytes, same meta.json shard list; meta.json last; resumes per source file."""

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("datatrove", reason="datatrove not installed (pip install 'lmforge[datatrove]')")

from pipelines.commands.datatrove_prepare import main  # noqa: E402
from pipelines.config import DataSection  # noqa: E402
from pipelines.data.datatrove_prepare import (  # noqa: E402
    build_executors,
    finalize,
    part_path,
    prepare_with_datatrove,
    temp_folder,
)
from pipelines.data.default_corpus import default_corpus_path  # noqa: E402
from pipelines.data.prepare import write_shards  # noqa: E402
from pipelines.data.shards import META, ShardSet, token_dtype  # noqa: E402
from pipelines.data.sources import source_fingerprint  # noqa: E402
from pipelines.data.tokenize import tokenizer_fingerprint  # noqa: E402
from pipelines.errors import LmforgeError  # noqa: E402

SHARD_TOKENS = 5000  # small: the one-document-per-line file rolls over into several shards


def _corpus(root: Path) -> Path:
    """Five files in three layouts, one in a subfolder, one empty: the default corpus cut up."""
    docs = default_corpus_path().read_text(encoding="utf-8").split("\n\n")
    corpus = root / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("\n\n".join(docs[:40]) + "\n")  # blank-line layout
    (corpus / "c.txt").write_text("\n\n".join(docs[40:70]) + "\n")
    lines = [ln for d in docs[70:150] for ln in d.splitlines() if ln.strip()]
    # one document per line (two sentences each): > 512 documents, so several encode batches and shards
    (corpus / "sub" / "b.txt").write_text("\n".join(" ".join(lines[i:i + 2]) for i in range(0, len(lines), 2)))
    wiki = []
    for k, d in enumerate(docs[150:170]):
        body = d.splitlines()
        wiki += [f" = Title {k} = ", ""] + [" ".join(body[: len(body) // 2]), "", " = = Section = = ", "",
                                            " ".join(body[len(body) // 2:]), ""]
    (corpus / "wiki.txt").write_text("\n".join(wiki))
    (corpus / "empty.txt").write_text("")
    return corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("datatrove")
    corpus = _corpus(root)
    texts = [ln for p in sorted(corpus.rglob("*.txt")) for ln in p.read_text().splitlines() if ln.strip()]
    tokenizer = build_tokenizer("bert", texts[:3000], 1000, root / "tokenizer")
    return root, corpus, tokenizer


def _same_folders(a: Path, b: Path):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name != META:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (json.loads((f / META).read_text()) for f in (a, b))
    for meta in (meta_a, meta_b):
        meta.pop("seconds")
    assert meta_a == meta_b


def test_two_tasks_write_what_prepare_writes(setup):
    root, corpus, tokenizer = setup
    data = DataSection(corpus=str(corpus))
    reference = root / "A"
    write_shards(data, tokenizer, reference, shard_tokens=SHARD_TOKENS, log=lambda *_: None)
    shards = json.loads((reference / META).read_text())["shards"]
    # files in prepare's order: a.txt, c.txt, empty.txt (no shard), sub/b.txt (several), wiki.txt
    assert sorted({s["name"][:6] for s in shards}) == ["f00000", "f00001", "f00003", "f00004"]
    assert sum(s["name"].startswith("f00003") for s in shards) >= 2

    out = root / "B"
    got = prepare_with_datatrove(data, tokenizer, out, tasks=2, workers=2, logging_dir=root / "logs",
                                 shard_tokens=SHARD_TOKENS, log=lambda *_: None)
    assert got == out.resolve()
    assert not temp_folder(out.resolve()).exists()
    _same_folders(reference, out)
    store = ShardSet.open(out)
    assert store.n_documents == ShardSet.open(reference).n_documents > 600

    (out / META).unlink()  # an incomplete folder is refused
    with pytest.raises(LmforgeError, match="incomplete preparation"):
        ShardSet.open(out)


def test_interrupted_run_is_incomplete_and_resumes(setup):
    root, corpus, tokenizer = setup
    data = DataSection(corpus=str(corpus), max_documents=120)  # the cap ends inside sub/b.txt (file 3)
    reference = root / "A-cap"
    write_shards(data, tokenizer, reference, shard_tokens=SHARD_TOKENS, log=lambda *_: None)

    # the first stage alone (a run killed before its last stage): shards, no meta.json, no final folder
    final = (root / "B-cap").resolve()
    logs = root / "logs-cap"
    folder = temp_folder(final)
    prepare = dict(tasks=3, workers=1, logging_dir=logs, shard_tokens=SHARD_TOKENS, log=lambda *_: None)
    info = {"source": source_fingerprint(data), "tokenizer": tokenizer_fingerprint(tokenizer),
            "vocab_size": len(tokenizer)}
    folder.mkdir(parents=True)
    request = {"source": info["source"], "tokenizer": info["tokenizer"], "dtype": token_dtype(len(tokenizer)).name,
               "shard_tokens": SHARD_TOKENS, "files": 5, "started": 0.0}
    (folder / ".request.json").write_text(json.dumps(request))
    tokenizer.save_pretrained(logs / "tokenizer")
    first, _ = build_executors(data, logs / "tokenizer", folder, final, info, token_dtype(len(tokenizer)), 3, logs,
                               workers=1, shard_tokens=SHARD_TOKENS)
    first.run()
    assert not final.exists() and not (folder / META).exists()
    with pytest.raises(LmforgeError, match="incomplete preparation"):
        ShardSet.open(folder)

    # a lost file record: the last stage refuses, a rerun (another task count) redoes only that file
    part_path(folder, 3).unlink()
    shutil.rmtree(logs / "tokenizer")
    with pytest.raises(LmforgeError, match="1 of 5 source files have no finished shards"):
        finalize(data, folder, final, info)
    assert prepare_with_datatrove(data, tokenizer, final, **{**prepare, "tasks": 2}) == final
    _same_folders(reference, final)
    assert ShardSet.open(final).n_documents == 120


def test_hub_dataset_is_refused(setup, capsys):
    _, _, tokenizer = setup
    with pytest.raises(LmforgeError, match="datatrove preparation takes local files"):
        prepare_with_datatrove(DataSection(corpus="someone/some-dataset"), tokenizer, log=lambda *_: None)
    assert main(["bert-tiny", "data.corpus=someone/some-dataset", "--tasks", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmforge: error: data.corpus 'someone/some-dataset' is a Hub dataset") and "\n" not in err
