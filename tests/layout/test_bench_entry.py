"""The benchmarks live outside the shipped packages (bench/) behind one entry point that runs from
the checkout's root: every benchmark's command line parses (its --help), with no machine path baked
in. Timings themselves are the benchmarks' business, never a test's."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["suite", "data", "distill", "compile", "tokenizer"])
def test_every_benchmark_answers_help(name):
    args = [] if name == "suite" else [name]
    out = subprocess.run([sys.executable, "-m", "bench", *args, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage: python -m bench" + (f" {name}" if args else ""))


def test_no_machine_paths_in_the_benchmarks():
    baked = [f"{p.name}:{i}" for p in (ROOT / "bench").glob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if '"/work' in line or "'/work" in line]
    assert not baked, baked
