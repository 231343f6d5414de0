"""Data-path benchmark (issue #7): `make bench-data`, `python -m bench data`; results go to
docs/BENCHMARKS.md. One invocation measures, side by side:

    prep        preparation MB/s on one text file with one tokenizer: the HF run_mlm recipe
                (datasets "text" loader + batched tokenize map + group_texts, block 128) vs lmforge's
                write_shards, at each of --procs processes on both sides (run_mlm's
                preprocessing_num_workers = map's num_proc; lmforge's data.num_proc); alternated,
                --reps each, medians (target: lmforge >= 2x at the same number of processes)
    index       the NSP, SOP, ELECTRA and BART example indexes built over every document of the
                --big-mb corpus prepared with a WordPiece tokenizer (target: each < 5 s)
    rss         peak RSS of `pretrain` (roberta-tiny, bert-tiny) on a prepared --size-mb and --big-mb
                corpus: the largest process (ru_maxrss of that child, wait4) and the summed RSS/PSS of
                the process tree, DataLoader workers included, sampled every 0.2 s
                (target: <= 1.5 GB at both sizes, within 10 % of each other)
    first-step  launch of `pretrain` -> first line in output_dir/metrics.jsonl (logging_steps=1) with the
                shards already prepared and the tokenizer passed in (target: <= 15 s at any size)

The corpora are built here from real text and never committed: WikiText-2 valid+test from
../shared/data/wikitext-2, else lmforge's default corpus, repeated (whole copies) to size. Every
measured process is a fresh subprocess with the same environment (`child_env`). Big files under
--work are removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SHARED_DATA
from bench.measure import RESULT, run_measured

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = SHARED_DATA / "wikitext-2"
RECIPES = {"roberta-tiny": "roberta", "bert-tiny": "bert"}  # recipe -> tokenizer family
MB, GB = 1e6, 1e9
RSS_LIMIT_GB, RSS_SPREAD, FIRST_STEP_LIMIT_S, PREP_RATIO, INDEX_LIMIT_S = 1.5, 0.10, 15.0, 2.0, 5.0


def log(msg: str):
    print(f"[bench-data {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def command_line() -> str:
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")
                   if k in os.environ)
    py = Path(sys.executable)
    py = py.relative_to(Path.cwd()) if py.is_relative_to(Path.cwd()) else py
    args = sys.argv[1:]
    args = args[1:] if args[:1] == ["data"] else args  # `python -m bench data ...` leaves its subcommand in argv
    return " ".join(filter(None, [env, str(py), "-m bench data", shlex.join(args)]))


def child_env(work: Path) -> dict:
    """The one environment of every measured process. OMP_NUM_THREADS only if the caller set it;
    TOKENIZERS_PARALLELISM as the Makefile exports it (lmforge's write_shards turns the pool on for
    its tokenization, and so does the HF side here: the pool is HF's own default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if "OMP_NUM_THREADS" in os.environ:
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    env.update(TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", LMFORGE_PREPARED=str(work / "prepared"),
               HF_DATASETS_CACHE=str(work / "hf-datasets-cache"), PYTHONUNBUFFERED="1")
    return env


# --- corpora and tokenizers ---------------------------------------------------------------------


def source_file(work: Path) -> tuple[Path, str]:
    """(file of real text, description): WikiText-2 valid+test, or lmforge's default corpus."""
    parts = [WIKITEXT / "valid.txt", WIKITEXT / "test.txt"]
    if all(p.is_file() for p in parts):
        out = work / "corpus" / "wikitext-2-valid+test.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(p.read_text(encoding="utf-8").rstrip("\n") + "\n" for p in parts), encoding="utf-8")
        return out, f"WikiText-2 valid+test ({WIKITEXT}, ' = Title = ' headings start documents)"
    from pipelines.data.default_corpus import default_corpus_path

    return default_corpus_path(), "lmforge default corpus (stdlib docstrings, blank line between documents)"


def repeated_corpus(source: Path, path: Path, target_mb: float) -> dict:
    """`source` written whole copies at a time until the file has >= target_mb MB. Each copy starts
    with a document boundary (a WikiText heading, or the blank line ending the previous copy), so
    copies are distinct documents. Reused when an earlier run (--keep) built the same file."""
    text = source.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    target = int(target_mb * MB)
    info = {"path": str(path), "source": str(source), "target_bytes": target}
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text())["target_bytes"] == target:
        return json.loads(sidecar.read_text())
    chunk, copies, size = text.encode("utf-8"), 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        while size < target:
            f.write(chunk)
            copies, size = copies + 1, size + len(chunk)
    info.update(bytes=size, mb=round(size / MB, 1), copies=copies)
    sidecar.write_text(json.dumps(info))
    return info


def tokenizers_for(source: Path, work: Path, families: list[str]) -> dict[str, str]:
    """family -> saved tokenizer folder, vocab 8192, trained once on the source text (untimed)."""
    from transformers.utils import logging as hf_logging

    from pipelines.config import DataSection
    from pipelines.data.sources import sample_texts
    from tokenizer import build_tokenizer

    hf_logging.set_verbosity_error()  # build_tokenizer's check encodes a sample longer than 128 tokens

    out, texts = {}, None
    for family in families:
        folder = work / "tokenizers" / f"{family}-8192"
        if not (folder / "tokenizer.json").exists():
            texts = texts or sample_texts(DataSection(corpus=str(source)), int(5 * MB))
            build_tokenizer(family, texts, 8192, folder, model_max_length=128 if family == "roberta" else 512)
        out[family] = str(folder)
    return out


# --- children (run as `python -m bench.data --child KIND SPEC`) -----------------------


def child_prep_hf(spec: dict) -> dict:
    """transformers' examples/pytorch/language-modeling/run_mlm.py data path (line_by_line=False)."""
    from itertools import chain

    import datasets
    from transformers import AutoTokenizer

    from pipelines.data.tokenize import tokenizer_threads

    tokenizer, block = AutoTokenizer.from_pretrained(spec["tokenizer"]), spec["block"]
    start = time.perf_counter()
    raw = datasets.load_dataset("text", data_files={"train": spec["file"]}, cache_dir=spec["cache_dir"])

    def tokenize(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):
        joined = {k: list(chain(*examples[k])) for k in examples}
        total = len(joined[next(iter(examples))]) // block * block
        return {k: [t[i:i + block] for i in range(0, total, block)] for k, t in joined.items()}

    procs = spec["procs"] if spec["procs"] > 1 else None  # run_mlm: num_proc=data_args.preprocessing_num_workers
    with tokenizer_threads():  # the tokenizers pool on, as HF has it by default and write_shards has it
        tokenized = raw.map(tokenize, batched=True, num_proc=procs, remove_columns=["text"], desc="tokenize")
    grouped = tokenized.map(group_texts, batched=True, num_proc=procs, desc=f"group_texts {block}")
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "blocks": len(grouped["train"]), "tokens": len(grouped["train"]) * block}


def child_prep_lmforge(spec: dict) -> dict:
    from transformers import AutoTokenizer

    from pipelines.config import DataSection
    from pipelines.data.prepare import write_shards

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    start = time.perf_counter()
    meta = write_shards(DataSection(corpus=spec["file"], num_proc=spec["procs"]), tokenizer, Path(spec["folder"]))
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "documents": meta["documents"], "tokens": meta["tokens"]}


def child_index(spec: dict) -> dict:
    """Each objective's example index over every document of the shards in spec["folder"], timed
    once each (what the first `pretrain` of that objective builds and caches), at max_seq_length 128."""
    import numpy as np

    from pipelines.data.packing import build_sentence_runs
    from pipelines.data.shards import ShardSet
    from tasks.objectives.albert_sop import sop_ranges
    from tasks.objectives.bert_mlm_nsp import nsp_ranges
    from tasks.objectives.electra_rtd import electra_ranges
    from tasks.shared.sentence_pairs import DocumentBounds, pair_index

    store = ShardSet.open(Path(spec["folder"]))
    ids = np.arange(store.n_documents)
    builders = {
        "nsp (BERT)": lambda: pair_index(nsp_ranges, store, ids, 125, 1, 42, short_seq_prob=0.1),
        "sop (ALBERT)": lambda: pair_index(sop_ranges, store, ids, 125, 1, 42, short_seq_prob=0.1),
        "segments (ELECTRA)": lambda: electra_ranges(DocumentBounds(store, ids), 128, np.random.default_rng(42)),
        "sentence runs (BART)": lambda: build_sentence_runs(store, ids, 126),
    }
    out = {"documents": int(store.n_documents), "tokens": int(store.n_tokens), "indexes": {}}
    for name, build in builders.items():
        start = time.perf_counter()
        rows = len(build())
        out["indexes"][name] = {"seconds": round(time.perf_counter() - start, 2), "rows": rows}
    return out


CHILDREN = {"prep-hf": child_prep_hf, "prep-lmforge": child_prep_lmforge, "index": child_index}


def child(kind: str, spec: str) -> list[str]:
    return [sys.executable, "-m", "bench.data", "--child", kind, spec]


# --- the three measurements ---------------------------------------------------------------------


def bench_prep(corpus: dict, tokenizer: str, work: Path, env: dict, reps: int, timeout: float,
               procs: int = 1) -> dict:
    """HF recipe and write_shards alternated, `reps` each, each into a fresh folder deleted afterwards,
    both sides with `procs` processes."""
    runs = {"hf": [], "lmforge": []}
    for rep in range(reps):
        for side in runs:
            target = work / "prep" / f"{side}-{procs}-{rep}"
            shutil.rmtree(target, ignore_errors=True)
            spec = {"file": corpus["path"], "tokenizer": tokenizer, "block": 128, "cache_dir": str(target),
                    "folder": str(target / "shards"), "procs": procs}
            r = run_measured(child(f"prep-{side}", json.dumps(spec)), env,
                             work / "logs" / f"prep-{side}-{procs}-{rep}.log", timeout=timeout)
            shutil.rmtree(target, ignore_errors=True)
            runs[side].append(r)
            log(f"prep {side} {procs} process(es) rep {rep + 1}: {r.get('seconds', '-')} s in-process, "
                f"{r['wall_s']} s wall" + (f" FAILED {r['error']}" if "error" in r else ""))
    out = {"file_mb": corpus["mb"], "procs": procs, "runs": runs}
    for side, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if ok:
            sec = statistics.median(r["seconds"] for r in ok)
            out[side] = {"median_s": round(sec, 2), "mb_per_s": round(corpus["bytes"] / MB / sec, 2),
                         "median_wall_s": round(statistics.median(r["wall_s"] for r in ok), 2),
                         "peak_rss_bytes": max(r["ru_maxrss_bytes"] for r in ok), "tokens": ok[0]["tokens"]}
    if "hf" in out and "lmforge" in out:
        out["ratio"] = round(out["lmforge"]["mb_per_s"] / out["hf"]["mb_per_s"], 2)
        out["pass"] = out["ratio"] >= PREP_RATIO
    return out


def bench_index(corpus: dict, tokenizer: str, work: Path, env: dict, timeout: float) -> dict:
    """`corpus` written into shards by write_shards with `tokenizer` (untimed here), then every
    objective's example index over all of its documents (child_index, one process)."""
    folder = work / "index" / "shards"
    shutil.rmtree(folder.parent, ignore_errors=True)
    spec = {"file": corpus["path"], "tokenizer": tokenizer, "folder": str(folder), "procs": 1}
    prep = run_measured(child("prep-lmforge", json.dumps(spec)), env, work / "logs" / "index-prepare.log",
                        timeout=timeout)
    out = {"corpus_mb": corpus["mb"], "prepare": prep}
    if "error" not in prep:
        out["run"] = run_measured(child("index", json.dumps({"folder": str(folder)})), env,
                                  work / "logs" / "index.log", timeout=timeout)
        for name, r in out["run"].get("indexes", {}).items():
            log(f"index {name}: {r['seconds']} s, {r['rows']:,} rows")
        times = [r["seconds"] for r in out["run"].get("indexes", {}).values()]
        out["pass"] = bool(times) and max(times) < INDEX_LIMIT_S
    shutil.rmtree(folder.parent, ignore_errors=True)
    return out


def bench_pretrain(corpora: dict, tokenizers: dict, work: Path, env: dict, steps: int, timeout: float,
                   reps: int = 3) -> list:
    """Per recipe: `prepare` each corpus (untimed), then `reps` measured `pretrain` runs per corpus,
    the sizes alternating (small, big, small, big, ...): one run's peak moves with allocator and
    scheduling noise by more than the corpus moves it, so the verdict takes medians."""
    rows = []
    py = [sys.executable, "-m", "pipelines"]
    for recipe, family in RECIPES.items():
        common = {label: [f"data.corpus={corpus['path']}", f"tokenizer.name_or_path={tokenizers[family]}",
                          f"training.output_dir={work / 'runs' / f'{recipe}-{label}'}"]
                  for label, corpus in corpora.items()}
        prepared = {}
        for label, corpus in corpora.items():
            shutil.rmtree(work / "runs" / f"{recipe}-{label}", ignore_errors=True)
            prep = run_measured([*py, "prepare", recipe, *common[label]], env,
                                work / "logs" / f"prepare-{recipe}-{label}.log", timeout=timeout)
            prepared[label] = prep
            log(f"prepare {recipe} {corpus['mb']} MB: {prep['wall_s']} s" + (f" FAILED {prep['error']}"
                                                                              if "error" in prep else ""))
        for rep in range(reps):
            for label, corpus in corpora.items():
                out_dir = work / "runs" / f"{recipe}-{label}"
                shutil.rmtree(out_dir, ignore_errors=True)
                run = run_measured([*py, "pretrain", recipe, *common[label], f"training.max_steps={steps}",
                                    "training.per_device_train_batch_size=32", "training.eval_steps=0",
                                    "training.save_steps=0", "training.max_eval_batches=2",
                                    "training.logging_steps=1"],
                                   env, work / "logs" / f"pretrain-{recipe}-{label}-{rep}.log",
                                   watch=out_dir / "metrics.jsonl", timeout=timeout)
                log(f"pretrain {recipe} {corpus['mb']} MB, run {rep + 1}/{reps}: first step {run['first_line_s']} s, "
                    f"wall {run['wall_s']} s, peak RSS {run['ru_maxrss_bytes'] / GB:.2f} GB (tree "
                    f"{run['tree_rss_peak_bytes'] / GB:.2f})" + (f" FAILED {run['error']}" if "error" in run else ""))
                prep = prepared[label]
                rows.append({"recipe": recipe, "size": label, "rep": rep, "corpus_mb": corpus["mb"], "steps": steps,
                             "prepare_wall_s": prep["wall_s"], "prepare_peak_rss_bytes": prep["ru_maxrss_bytes"],
                             **({"prepare_error": prep["error"]} if "error" in prep else {}), **run})
                shutil.rmtree(out_dir / "final", ignore_errors=True)
    return rows


def verdicts(rows: list) -> dict:
    """Per recipe: the median peak memory per corpus size (the larger of ru_maxrss and the tree's
    summed RSS) against the limit, and the spread between the sizes' medians; first step against its
    limit (every run)."""
    out = {}
    for recipe in RECIPES:
        mine = [r for r in rows if r["recipe"] == recipe and "error" not in r]
        sizes = sorted({r["size"] for r in mine}, key=lambda s: s != "small")
        if len(sizes) < 2:
            continue
        peaks = [statistics.median(max(r["ru_maxrss_bytes"], r["tree_rss_peak_bytes"]) / GB
                                   for r in mine if r["size"] == size) for size in sizes]
        spread = (max(peaks) - min(peaks)) / min(peaks)
        firsts = [r["first_line_s"] for r in mine if r["first_line_s"] is not None]
        out[recipe] = {"peak_gb": [round(p, 3) for p in peaks], "spread": round(spread, 3),
                       "runs_per_size": len(mine) // len(sizes),
                       "rss_pass": max(peaks) <= RSS_LIMIT_GB and spread <= RSS_SPREAD,
                       "first_step_s": firsts, "first_step_pass": len(firsts) == len(mine)
                       and max(firsts) <= FIRST_STEP_LIMIT_S}
    return out


# --- report -------------------------------------------------------------------------------------


def _gb(b) -> str:
    return f"{b / GB:.2f}"


def markdown(res: dict, only: str | None) -> str:
    lines = [f"corpus: {res['corpus_source']}; {res['machine']}", ""]
    for p in res.get("prep", []):
        lines += [f"### Preparation, {p['file_mb']} MB text file, same byte-level BPE tokenizer (vocab 8192), "
                  f"{p['procs']} process(es) on both sides, median of {len(p['runs']['hf'])}", "",
                  "| pipeline | time (in-process) | MB/s | process wall | peak RSS GB | tokens |",
                  "|---|---|---|---|---|---|"]
        names = {"hf": "HF run_mlm: load_dataset text + tokenize map + group_texts 128",
                 "lmforge": "lmforge write_shards"}
        for side, name in names.items():
            s = p.get(side)
            lines.append(f"| {name} | {s['median_s']} s | {s['mb_per_s']} | {s['median_wall_s']} s | "
                         f"{_gb(s['peak_rss_bytes'])} | {s['tokens']:,} |" if s else f"| {name} | failed | | | | |")
        if "ratio" in p:
            lines += ["", f"lmforge / HF: **{p['ratio']}x** (target >= {PREP_RATIO}x: "
                          f"{'PASS' if p['pass'] else 'FAIL'})"]
        lines.append("")
    x = res.get("index")
    if x and "run" in x:
        r = x["run"]
        lines += [f"### Example indexes over every document of the {x['corpus_mb']} MB corpus "
                  f"({r.get('documents', 0):,} documents, {r.get('tokens', 0):,} WordPiece tokens), max_seq_length 128",
                  "", "| index | build s | rows |", "|---|---|---|"]
        lines += [f"| {name} | {v['seconds']} | {v['rows']:,} |" for name, v in r.get("indexes", {}).items()]
        lines += ["", f"each < {INDEX_LIMIT_S:g} s: {'PASS' if x.get('pass') else 'FAIL'}", ""]
    rows = res.get("pretrain")
    if rows:
        lines += [f"### `pretrain` on prepared shards, {rows[0]['steps']} steps, batch 32, eval 2 batches", "",
                  "| recipe | corpus MB | run | largest process RSS GB | tree RSS sum GB | tree PSS sum GB | "
                  "tree RSS at first step GB | launch -> first step s | wall s | prepare s (untimed) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['recipe']} | {r['corpus_mb']} | {r.get('rep', 0) + 1} | failed: see {r['log']} "
                             "| | | | | | |")
                continue
            lines.append(f"| {r['recipe']} | {r['corpus_mb']} | {r.get('rep', 0) + 1} | {_gb(r['ru_maxrss_bytes'])} | "
                         f"{_gb(r['tree_rss_peak_bytes'])} | {_gb(r['tree_pss_peak_bytes'])} | "
                         f"{_gb(r['tree_rss_at_first_line_bytes'] or 0)} | {r['first_line_s']} | {r['wall_s']} | "
                         f"{r['prepare_wall_s']} |")
        lines.append("")
        for recipe, v in res["verdicts"].items():
            if only in (None, "rss"):
                lines.append(f"- {recipe} memory: median peaks of {v['runs_per_size']} runs per size "
                             f"{' / '.join(f'{g:.2f}' for g in v['peak_gb'])} GB, spread "
                             f"{v['spread']:.0%} (target <= {RSS_LIMIT_GB} GB, <= {RSS_SPREAD:.0%}): "
                             f"{'PASS' if v['rss_pass'] else 'FAIL'}")
            if only in (None, "first-step"):
                lines.append(f"- {recipe} first step: {' / '.join(map(str, v['first_step_s']))} s (target <= "
                             f"{FIRST_STEP_LIMIT_S:g} s): {'PASS' if v['first_step_pass'] else 'FAIL'}")
    return "\n".join(lines) + "\n"


def failures(res: dict) -> list[dict]:
    runs = [*res.get("pretrain", []), *(r for p in res.get("prep", []) for side in p["runs"].values() for r in side)]
    runs += [r for k in ("prepare", "run") for r in [res.get("index", {}).get(k)] if r]
    return [r for r in runs if "error" in r or "prepare_error" in r]


def machine() -> str:
    from importlib.metadata import version

    vs = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "tokenizers", "datasets"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{len(os.sched_getaffinity(0))} cores, load {load} at start; {vs}"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=50.0, help="the corpus for prep, and the small one for rss")
    p.add_argument("--big-mb", type=float, default=500.0, help="the large corpus (rss, first-step)")
    p.add_argument("--steps", type=int, default=20, help="pretrain optimizer steps per run")
    p.add_argument("--reps", type=int, default=2, help="prep repetitions per side (medians)")
    p.add_argument("--rss-reps", type=int, default=3, help="pretrain runs per recipe and corpus size (medians)")
    p.add_argument("--work", default=None, help="work folder (default: a temp folder, removed at the end)")
    p.add_argument("--procs", default=f"1,{os.cpu_count() or 1}",
                   help="prep: comma-separated process counts, each measured on both sides (default 1 and the cores)")
    p.add_argument("--only", choices=["prep", "index", "rss", "first-step"], default=None)
    p.add_argument("--keep", action="store_true", help="keep corpora, shards and runs under --work")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess")
    p.add_argument("--out", default="runs/bench/data.json", help="results JSON (a .md table beside it)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(RESULT + json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))), flush=True)
        return 0
    res = {"command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    print(f"$ {res['command']}\n", flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="lmforge-bench-data-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env, started = child_env(work), time.perf_counter()
    res["env"] = {k: env.get(k) for k in ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE",
                                          "HF_DATASETS_OFFLINE", "WANDB_MODE", "LMFORGE_PREPARED", "HF_DATASETS_CACHE")}
    big = [work / "corpus", work / "prepared", work / "prep", work / "index", work / "runs", work / "hf-datasets-cache"]
    complete = False
    try:
        source, res["corpus_source"] = source_file(work)
        corpora = {"small": repeated_corpus(source, work / "corpus" / "small.txt", args.size_mb)}
        if args.only != "prep":
            corpora["big"] = repeated_corpus(source, work / "corpus" / "big.txt", args.big_mb)
        log("corpora: " + ", ".join(f"{k} {c['mb']} MB ({c['copies']} copies)" for k, c in corpora.items()))
        res["corpora"] = corpora
        toks = tokenizers_for(source, work, ["roberta"] if args.only == "prep" else ["roberta", "bert"])
        if args.only in (None, "prep"):
            res["prep"] = [bench_prep(corpora["small"], toks["roberta"], work, env, args.reps, args.timeout, procs)
                           for procs in sorted({int(n) for n in args.procs.split(",")})]
        if args.only in (None, "index"):
            res["index"] = bench_index(corpora["big"], toks["bert"], work, env, args.timeout)
        if args.only not in ("prep", "index"):
            res["pretrain"] = bench_pretrain(corpora, toks, work, env, args.steps, args.timeout, args.rss_reps)
            res["verdicts"] = verdicts(res["pretrain"])
        complete = not failures(res)
    finally:
        if not args.keep:  # a temp work folder goes whole when all went well; else its logs stay
            for path in ([work] if args.work is None and complete else big):
                shutil.rmtree(path, ignore_errors=True)
    res["total_s"] = round(time.perf_counter() - started, 1)
    table = markdown(res, args.only)
    print(table + f"\ntotal {res['total_s']} s; work folder {work}{' (kept)' if args.keep else ''}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text(f"$ {res['command']}\n\n{table}")
    return 1 if failures(res) else 0


if __name__ == "__main__":
    raise SystemExit(main())
