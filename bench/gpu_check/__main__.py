"""`python -m bench.gpu_check [--smoke] [--only SECTIONS] [--out DIR] [--budget SECONDS]`: runs the
sections (bench/gpu_check/__init__.py) and writes DIR/gpu_check.json (after every section: a run cut
short keeps what it finished) and DIR/gpu_check.md (the tables)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

from bench.gpu_check import __doc__ as DOC
from bench.gpu_check import report, runs, speed
from bench.gpu_check.context import Context, failed
from bench.gpu_check.plan import DEFAULT_BUDGET_S, GPU, SECTIONS, SMOKE, section_budgets
from bench.gpu_check.runner import Worker, child_env

FORMAT = "lmforge-gpu-check/1"
RUN = {"peak": speed.peak, "throughput": speed.throughput, "compile": speed.compiled,
       "distributed": runs.distributed, "resume": runs.resume, "padding_free": runs.padding_free}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/gpu_check", help="folder for gpu_check.json, gpu_check.md, logs/ and work/")
    p.add_argument("--only", default=None, help=f"comma-separated sections ({', '.join(SECTIONS)}); throughput and "
                                                "compile add peak (their MFU needs it)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help="seconds for all chosen sections, shared out in fixed proportions (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="toy sizes on a CPU: the same code paths, for the test suite")
    return p


def chosen_sections(only: str | None, parser: argparse.ArgumentParser) -> list[str]:
    if not only:
        return list(SECTIONS)
    names = {n.strip().replace("-", "_") for n in only.split(",") if n.strip()}
    unknown = sorted(names - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    if names & {"throughput", "compile"}:
        names.add("peak")
    return [s for s in SECTIONS if s in names]


def run_section(ctx: Context, name: str, box: float) -> dict:
    """One section in its time box; any exception becomes its recorded error (traceback in the log)."""
    ctx.deadline = time.monotonic() + box
    start = time.monotonic()
    try:
        result = RUN[name](ctx)
    except Exception as exc:
        ctx.logs.mkdir(parents=True, exist_ok=True)
        with open(ctx.logs / "sections.log", "a") as f:
            f.write(f"--- {name}\n{traceback.format_exc()}\n")
        text = " ".join(str(exc).split())[:300]
        result = failed(f"{type(exc).__name__}: {text} (traceback: {ctx.logs}/sections.log)")
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else GPU
    chosen = chosen_sections(args.only, parser)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = child_env()
    ctx = Context(plan, out, env, Worker(out / "logs", env))
    boxes = section_budgets(args.budget, chosen, plan)
    began = time.monotonic()
    data = {"format": FORMAT, "smoke": plan.smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "argv": sys.argv[1:] if argv is None else list(argv), "budget_s": args.budget, "sections": {}}
    try:
        ctx.deadline = time.monotonic() + 300
        try:
            data["device"] = ctx.device()
        except RuntimeError as exc:
            print(f"gpu-check: {exc}", file=sys.stderr)
            return 2
        if not data["device"]["cuda"] and not plan.smoke:
            print(f"gpu-check: no CUDA device here (torch {data['device']['torch']}); run it on a GPU machine, or "
                  "pass --smoke for the CPU check of the code paths", file=sys.stderr)
            return 2
        print(f"gpu-check on {data['device']['name']}: {', '.join(f'{s} {boxes[s]:.0f} s' for s in chosen)}; "
              f"budget {args.budget:.0f} s -> {out}", flush=True)
        for name in chosen:
            print(f"[gpu-check {time.monotonic() - began:5.0f} s] {name}", flush=True)
            data["sections"][name] = ctx.results[name] = run_section(ctx, name, boxes[name])
            r = data["sections"][name]
            print(f"[gpu-check {time.monotonic() - began:5.0f} s] {name}: {r['status']}"
                  + (f": {r.get('error') or r.get('reason')}" if r["status"] != "ok" else "")
                  + f" ({r['seconds']:.0f} s of {boxes[name]:.0f})", flush=True)
            data["total_s"] = round(time.monotonic() - began, 1)
            _write(out, data)
    except KeyboardInterrupt:
        ctx.worker.stop()  # its own session: Ctrl-C did not reach it
        raise
    finally:
        ctx.worker.close()
    data["total_s"] = round(time.monotonic() - began, 1)
    data["goal"] = report.goal(data)
    _write(out, data)
    (out / "gpu_check.md").write_text(report.markdown(data))
    bad = [s for s, r in data["sections"].items() if r["status"] == "failed"]
    print(f"gpu-check: {data['total_s']:.0f} s in all (budget {args.budget:.0f} s); "
          + (f"FAILED: {', '.join(bad)}" if bad else "no section failed") + f"; {out / 'gpu_check.md'}", flush=True)
    return 1 if bad else 0


def _strict(value):
    """JSON has no NaN or infinity: a non-finite number is written as its name ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _write(out: Path, data: dict) -> None:
    tmp = out / ".gpu_check.json.tmp"
    tmp.write_text(json.dumps(_strict(data), indent=2, allow_nan=False, default=str))
    tmp.replace(out / "gpu_check.json")


if __name__ == "__main__":
    raise SystemExit(main())
