"""`prepare` at cluster scale: the same token shards, written by a datatrove pipeline.

datatrove (Hugging Face's data-processing library) runs a list of pipeline steps as `tasks`
independent tasks, locally (LocalPipelineExecutor: a process pool) or as a SLURM job array
(SlurmPipelineExecutor). Two stages:

1. tokenize, `tasks` tasks: ReadCorpusFiles -> WriteTokenShards. Task `rank` of `world_size` takes the
   local source files i with i % world_size == rank (sorted as `prepare` sorts them, read by the same
   code, so every text layout is the same), tokenizes them in the same batches with the same
   tokenizer, and writes each file's shards under the same prefix f{i:05d} into one shared temp
   folder, plus a small record of each finished file's shards (.parts/f{i:05d}.json);
2. finalize, 1 task, after stage 1 succeeded: checks that every source file has its record, writes
   meta.json (shards in file order) and renames the temp folder to its final name.

The result is byte for byte the folder `write_shards` (`lmforge prepare`) writes for the same recipe
and tokenizer, by default in the same cache folder `pretrain` looks in (data.prepared_dir, shared
storage on a cluster), so training finds it. meta.json is written last and the folder is renamed
only when complete: an interrupted or still-running preparation is never taken for a finished one.
Rerunning the command resumes: source files already written are skipped (any task count).

    python -m pipelines.commands.datatrove_prepare RECIPE [key=value ...] --tasks 8
    python -m pipelines.commands.datatrove_prepare RECIPE data.prepared_dir=/shared/prepared \\
        --executor slurm --tasks 64 --partition cpu --time 04:00:00 --cpus_per_task 4

See docs/DATA.md. Local files only: a Hub dataset is one stream that one task would have to read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from collections import deque
from itertools import groupby
from pathlib import Path

import numpy as np

from pipelines.config import DataSection
from pipelines.data.prepare import BATCH_DOCUMENTS, batched, shards_folder, source_streams
from pipelines.data.shards import META, ShardSet, ShardWriter, publish, token_dtype, write_meta
from pipelines.data.sources import local_files, source_fingerprint
from pipelines.data.tokenize import encode_documents, tokenizer_fingerprint, tokenizer_threads
from pipelines.errors import LmforgeError

try:
    from datatrove.data import Document
    from datatrove.pipeline.base import PipelineStep
except ImportError:  # the module stays importable (and its CLI explains) without the optional extra
    Document = None
    PipelineStep = object

REPO = Path(__file__).resolve().parents[2]
PARTS = ".parts"  # in the temp folder: one record per finished source file
REQUEST = ".request.json"  # in the temp folder: what is being prepared (a resume must match it)
NEEDS_DATATROVE = "datatrove is not installed: pip install 'lmforge[datatrove]' (or datatrove==0.10.1)"


def require_datatrove():
    if Document is None:
        raise LmforgeError(NEEDS_DATATROVE)


def local_source_files(data: DataSection) -> list[Path]:
    files = local_files(data)
    if files is None:
        raise LmforgeError(f"data.corpus '{data.corpus}' is a Hub dataset: datatrove preparation takes local "
                           "files (a folder of text/jsonl/parquet files on shared storage); download it there, "
                           "or use `lmforge prepare`, which streams Hub datasets")
    return files


def temp_folder(final: Path) -> Path:
    """Where the tasks write; renamed to `final` when complete. Fixed name (tasks run on many nodes),
    not the `.NAME.tmp-PID` pattern that `prepare` removes when its process is gone."""
    return final.with_name(f".{final.name}.tmp-datatrove")


def part_path(folder: Path, index: int) -> Path:
    return Path(folder) / PARTS / f"f{index:05d}.json"


def _write_json(path: Path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    os.replace(tmp, path)


class ReadCorpusFiles(PipelineStep):
    """Reader: the documents (lists of sentences) of this task's source files, as `prepare` reads
    them (pipelines.data.prepare.source_streams), one datatrove Document each; the source file's
    index and the sentences ride in the metadata."""

    name = "lmforge corpus files"
    type = "📖 - READER"

    def __init__(self, data: dict, folder: str):
        super().__init__()
        self.data = data  # DataSection fields: plain values travel to SLURM nodes (dill) and executor.json
        self.folder = folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        section = DataSection(**self.data)
        n_files = len(local_source_files(section))
        mine = range(rank, n_files, world_size)
        if not mine:
            return
        for prefix, documents in source_streams(section):
            index = int(prefix[1:])
            if index > mine[-1]:
                return
            if index % world_size != rank or part_path(self.folder, index).exists():  # not ours, or done before
                if section.max_documents is not None:
                    # the cap runs over the files in order: count (not tokenize) the files before ours
                    deque(documents, maxlen=0)
                continue
            for j, sentences in enumerate(documents):
                self.stat_update("documents")
                yield Document(text=" ".join(sentences), id=f"{prefix}/{j}",
                               metadata={"file_index": index, "sentences": sentences})


class WriteTokenShards(PipelineStep):
    """Tokenizer + writer: the documents of each source file, encoded in `prepare`'s batches, into
    shards f{i:05d}-{k:05d} of `folder`; then a record of the file's shards. Every file of the task
    gets a record, an empty one when it has no text (or lies past data.max_documents); files recorded
    by an earlier, interrupted run are not redone (the reader skips them)."""

    name = "lmforge token shards"
    type = "🔢 - TOKENIZER"

    def __init__(self, data: dict, tokenizer_dir: str, folder: str, tokenizer: str, dtype: str,
                 shard_tokens: int):
        super().__init__()
        self.data, self.tokenizer_dir, self.folder = data, tokenizer_dir, folder
        self.tokenizer, self.dtype, self.shard_tokens = tokenizer, dtype, shard_tokens

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        if tokenizer_fingerprint(tokenizer) != self.tokenizer:
            raise LmforgeError(f"tokenizer {self.tokenizer_dir} is not the one this preparation was started with "
                               f"(fingerprint {tokenizer_fingerprint(tokenizer)}, expected {self.tokenizer})")
        mine = range(rank, len(local_source_files(DataSection(**self.data))), world_size)
        done = set()
        with tokenizer_threads():
            for index, group in groupby(data or (), key=lambda d: d.metadata["file_index"]):
                if index not in mine or index in done:
                    raise RuntimeError(f"task {rank}/{world_size} got documents of source file {index} "
                                       "out of order or not assigned to it")
                self._write_file(tokenizer, index, (d.metadata["sentences"] for d in group))
                done.add(index)
        for index in mine:
            if index not in done and not part_path(self.folder, index).exists():
                _write_json(part_path(self.folder, index), {"index": index, "shards": [], "text_chars": 0,
                                                            "seconds": 0.0})

    def _write_file(self, tokenizer, index: int, documents):
        start, chars = time.perf_counter(), 0
        writer = ShardWriter(Path(self.folder), np.dtype(self.dtype), self.shard_tokens, prefix=f"f{index:05d}")
        for docs in batched(documents, BATCH_DOCUMENTS):  # prepare's batches: shards roll over at the same place
            chars += sum(len(s) + 1 for d in docs for s in d)
            with self.track_time("batch"):
                batch = encode_documents(tokenizer, docs)
                writer.add(batch)
            self.stat_update("tokens", value=int(batch.sentence_lengths.sum()), unit="batch")
        shards = writer.close()
        _write_json(part_path(self.folder, index), {
            "index": index, "shards": shards, "text_chars": chars, "seconds": round(time.perf_counter() - start, 2)})


class FinalizeShards(PipelineStep):
    """The last stage (one task, after every tokenizing task finished): meta.json, then the rename."""

    name = "lmforge meta.json"
    type = "💽 - WRITER"

    def __init__(self, data: dict, folder: str, final: str, info: dict):
        super().__init__()
        self.data, self.folder, self.final, self.info = data, folder, final, info

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        finalize(DataSection(**self.data), Path(self.folder), Path(self.final), self.info)


def finalize(data: DataSection, folder: Path, final: Path, info: dict) -> Path:
    """Check that every source file has its shards, write meta.json (written last: the completeness
    marker) and rename `folder` to `final`."""
    if (final / META).exists():
        return final
    if not (folder / META).exists():
        files = local_source_files(data)
        if source_fingerprint(data) != info["source"]:
            raise LmforgeError(f"data.corpus '{data.corpus}' changed while it was being prepared (files added, "
                               "removed or modified); run the preparation again")
        request = json.loads((folder / REQUEST).read_text())
        parts, missing = [], []
        for i in range(len(files)):
            try:
                parts.append(json.loads(part_path(folder, i).read_text()))
            except (OSError, ValueError):
                missing.append(files[i])
        if missing:
            raise LmforgeError(f"{len(missing)} of {len(files)} source files have no finished shards in {folder} "
                               f"(first: {missing[0]}): a task failed or is still running; run the same command "
                               "again to redo the missing ones")
        shards = [s for p in parts for s in p["shards"]]
        for s in shards:
            for suffix in ("tokens.bin", "words.bin", "sentences.npy", "documents.npy", "doc_tokens.npy"):
                if not (folder / f"{s['name']}.{suffix}").exists():
                    raise LmforgeError(f"{folder}: shard file {s['name']}.{suffix} is missing; remove {folder} "
                                       "and prepare again")
        if not sum(s["tokens"] for s in shards):
            raise LmforgeError(f"data.corpus '{data.corpus}': no text found")
        write_meta(folder, shards, np.dtype(request["dtype"]), {
            **info, "text_chars": sum(p["text_chars"] for p in parts),
            "seconds": round(time.time() - request["started"], 2)})
    shutil.rmtree(folder / PARTS, ignore_errors=True)
    (folder / REQUEST).unlink(missing_ok=True)
    publish(folder, final)
    return final


def build_executors(data: DataSection, tokenizer_dir: Path, folder: Path, final: Path, info: dict, dtype,
                    tasks: int, logging_dir: Path, workers: int = -1, executor: str = "local",
                    shard_tokens: int = 2**28, slurm: dict | None = None):
    """(tokenize stage, finalize stage): running the second runs (local) or submits (SLURM) both.
    Resuming is per source file (its record), not per datatrove task, so a rerun may use another
    task count; datatrove's completion markers are therefore not used to skip tasks."""
    require_datatrove()
    fields = dataclasses.asdict(data)
    tokenize = [ReadCorpusFiles(fields, str(folder)),
                WriteTokenShards(fields, str(tokenizer_dir), str(folder), info["tokenizer"], np.dtype(dtype).name,
                                 shard_tokens)]
    last = [FinalizeShards(fields, str(folder), str(final), info)]
    logs = Path(logging_dir)
    if executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        first = LocalPipelineExecutor(tokenize, tasks=tasks, workers=workers, logging_dir=str(logs / "tokenize"),
                                      skip_completed=False)
        second = LocalPipelineExecutor(last, tasks=1, logging_dir=str(logs / "finalize"), depends=first,
                                       skip_completed=False)
        return first, second
    if executor != "slurm":
        raise LmforgeError(f"--executor {executor}: local or slurm")
    from datatrove.executor import SlurmPipelineExecutor

    slurm = dict(slurm or {})
    if not slurm.get("partition") or not slurm.get("time"):
        raise LmforgeError("--executor slurm needs --partition and --time (e.g. --partition cpu --time 04:00:00)")
    common = {"partition": slurm.pop("partition"), "time": slurm.pop("time"),
              "qos": slurm.pop("qos", None) or "",  # "": the cluster's default QoS
              "env_command": slurm.pop("env_command", None) or _env_command(),
              "job_name": slurm.pop("job_name", None) or "lmforge-prepare", "skip_completed": False}
    first = SlurmPipelineExecutor(tokenize, tasks=tasks, workers=workers, logging_dir=str(logs / "tokenize"),
                                  cpus_per_task=slurm.pop("cpus_per_task", 1),
                                  mem_per_cpu_gb=slurm.pop("mem_per_cpu_gb", 2), **common, **slurm)
    second = SlurmPipelineExecutor(last, tasks=1, logging_dir=str(logs / "finalize"), depends=first,
                                   cpus_per_task=1, mem_per_cpu_gb=2,
                                   **{**common, "job_name": common["job_name"] + "-meta"})
    return first, second


def _env_command() -> str:
    """What each SLURM task runs first: this Python environment, lmforge importable, the same folder."""
    activate = Path(sys.prefix) / "bin" / "activate"
    parts = [f"cd {os.getcwd()}"]
    if activate.exists():
        parts.append(f"source {activate}")
    parts.append(f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}")
    return " && ".join(parts)


def prepare_with_datatrove(data: DataSection, tokenizer, output: Path | None = None, *, tasks: int | None = None,
                           workers: int = -1, executor: str = "local", logging_dir: Path | None = None,
                           shard_tokens: int = 2**28, slurm: dict | None = None, log=print) -> Path | None:
    """Prepare `data` for `tokenizer` with datatrove into `output` (default: the cache folder `pretrain`
    reads, shards_folder(data, tokenizer)). Local: runs and returns the finished folder. SLURM: submits
    both stages and returns None; the folder appears (with meta.json) when the last job has run."""
    require_datatrove()
    files = local_source_files(data)
    final = Path(output).expanduser().resolve() if output else shards_folder(data, tokenizer).resolve()
    if (final / META).exists():
        log(f"already prepared: {final}")
        return final
    folder = temp_folder(final)
    logs = Path(logging_dir).expanduser().resolve() if logging_dir else final.with_name(f".{final.name}.datatrove")
    dtype = token_dtype(len(tokenizer))
    info = {"source": source_fingerprint(data), "tokenizer": tokenizer_fingerprint(tokenizer),
            "vocab_size": len(tokenizer)}
    request = {"source": info["source"], "tokenizer": info["tokenizer"], "dtype": dtype.name,
               "shard_tokens": shard_tokens, "files": len(files)}
    if (folder / META).exists():  # finished but not renamed (killed in between)
        return finalize(data, folder, final, info)
    try:
        previous = json.loads((folder / REQUEST).read_text())
    except (OSError, ValueError):
        previous = None
    if previous is None or {k: previous.get(k) for k in request} != json.loads(json.dumps(request)):
        # a fresh start: no shards and no completion markers of another preparation are reused
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
        folder.mkdir(parents=True)
        _write_json(folder / REQUEST, {**request, "started": time.time()})
    else:
        log(f"resuming the datatrove preparation in {folder} (finished source files are skipped)")
    tokenizer_dir = logs / "tokenizer"
    if not (tokenizer_dir / "tokenizer_config.json").exists():
        tokenizer.save_pretrained(tokenizer_dir)  # every task loads the same tokenizer from here
    tasks = tasks or (len(files) if executor == "slurm" else min(len(files), os.cpu_count() or 1))
    first, second = build_executors(data, tokenizer_dir, folder, final, info, dtype, tasks, logs, workers, executor,
                                    shard_tokens, slurm)
    log(f"datatrove ({executor}): {len(files)} source file(s) in {tasks} task(s) -> {folder}; logs in {logs}")
    second.run()
    if executor == "slurm":
        log(f"submitted; {final} appears, with {META}, when the last job ({second.job_name}) has run")
        return None
    if not (final / META).exists():
        raise LmforgeError(f"datatrove preparation did not finish: see the logs in {logs}")
    meta = ShardSet.open(final).meta
    log(f"prepared {meta['documents']:,} documents, {meta['tokens']:,} tokens in {len(meta['shards'])} shard(s) "
        f"-> {final}")
    return final
