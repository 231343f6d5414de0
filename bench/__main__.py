"""`python -m bench [suite|throughput|sst2] ...` (`make bench ARGS=...`); see __init__.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import __doc__ as DOC
from bench.common import SHARED_DATA

CHILDREN = {  # baseline processes started by the suite: name -> "module:function"
    "hf-mlm": "bench.mlm:hf_mlm",
    "nanogpt": "bench.clm:nanogpt",
    "hf-glue": "bench.glue:hf_glue",
    "hf-qa": "bench.qa:hf_qa",
    "peak": "bench.mfu:peak_child",
}


def run_child(kind: str, spec: str) -> int:
    import importlib

    module, func = CHILDREN[kind].split(":")
    getattr(importlib.import_module(module), func)(json.loads(spec))
    return 0


def legacy(args, overrides: list[str]) -> int:
    """The two single-process modes that predate the suite."""
    out = Path(args.out or "runs/bench/results.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    if args.which == "throughput":
        from bench.throughput import step_throughput

        for recipe in args.recipes.split(","):
            for prec in args.precisions.split(","):
                results.append(step_throughput(recipe, prec, args.steps or 10, overrides))
                print(json.dumps(results[-1]), flush=True)
    else:
        from bench.sst2 import sst2

        results.append({"sst2_dev_accuracy": sst2(args.model, args.glue_dir, overrides), "model": args.model,
                        "overrides": overrides})
        print(json.dumps(results[-1]))
    with open(out, "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bench.suite import add_suite_arguments

    p = argparse.ArgumentParser(prog="python -m bench", description=DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="?", default="suite", choices=["suite", "throughput", "sst2"])
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps: of each pretraining run (suite, default 40), measured steps (throughput, "
                        "default 10)")
    p.add_argument("--out", default=None, help="results file (suite: runs/bench/suite.json + .md; others: "
                                               "runs/bench/results.jsonl, appended)")
    p.add_argument("--glue_dir", default=str(SHARED_DATA / "glue"))
    g = p.add_argument_group("throughput")
    g.add_argument("--recipes", default="bert-tiny", help="comma-separated recipe names")
    g.add_argument("--precisions", default="no,bf16")
    s = p.add_argument_group("sst2")
    s.add_argument("--model", default="runs/bert-tiny/final", help="the pretrained export")
    add_suite_arguments(p.add_argument_group("suite"))
    return p


# the benchmarks with their own command lines: `python -m bench data --help`
SEPARATE = {"data": "bench.data", "distill": "bench.distill", "compile": "bench.compile",
            "tokenizer": "bench.tokenizer", "gpu-check": "bench.gpu_check.__main__",
            "padding-free": "bench.padding_free"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return run_child(argv[1], argv[2])
    if argv[:1] and argv[0] in SEPARATE:
        import importlib

        return importlib.import_module(SEPARATE[argv[0]]).main(argv[1:]) or 0
    p = build_parser()
    args, rest = p.parse_known_args(argv)
    bad = [r for r in rest if "=" not in r]
    if bad or (rest and args.which == "suite"):
        p.error(f"unrecognized arguments: {' '.join(bad or rest)}"
                + (" (recipe overrides key=value are for throughput and sst2)" if not bad else ""))
    if args.which != "suite":
        return legacy(args, rest)
    from bench.suite import run_suite

    return run_suite(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
