"""`make gpu-check` is ready for whoever has a GPU: `python -m bench.gpu_check --smoke` runs every
section's code path on this CPU at toy sizes (the real CLI, accelerate launch with the shipped
DeepSpeed/FSDP configs, a SIGKILL, the worker's throughput rows with SDPA, eager and compile), and
gpu_check.json says what each proved. On a CPU in fp32 a reload and a resume must be exact."""

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO))  # bench/ ships in no package: importable from the checkout's root only
from bench.gpu_check import __main__ as gpu_check  # noqa: E402
from bench.gpu_check.context import Context  # noqa: E402
from bench.gpu_check.plan import SECTIONS, SMOKE  # noqa: E402

SKIPS_ALLOWED = {  # what may be skipped on a machine without the optional pieces, and why
    "deepspeed is not installed (DS_BUILD_OPS=0 pip install deepspeed)",
    "DeepSpeed on a CPU JIT-builds its shared-memory op and needs g++",
}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    report = json.loads((out / "gpu_check.json").read_text())
    return proc, report, out


@pytest.mark.slow
def test_every_section_runs_and_says_what_it_proved(smoke):
    proc, report, out = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = report["sections"]
    assert list(s) == list(SECTIONS) and report["smoke"] is True
    for name, result in s.items():
        assert result["status"] == "ok" or (name == "padding_free" and result["status"] == "skipped"), (name, result)
    assert _positive(s["peak"]["flops"])

    rows = s["throughput"]["rows"]
    assert [(r["model"], r["attn"]) for r in rows] == [(m.label, a) for m in SMOKE.models for a in ("sdpa", "eager")]
    for r in rows + s["compile"]["rows"]:
        assert r["status"] == "ok" and r["attn_implementation"] == r["attn"], r  # the switch took effect
        assert _positive(r["tokens_per_s"]) and _positive(r["flops_per_token"]) and _positive(r["mfu"]), r
        assert r["precision"] == "bf16"
    assert [r["compiled"] for r in s["compile"]["rows"]] == [True] * len(SMOKE.compile_models)

    runs = {r["run"]: r for r in s["distributed"]["runs"]}
    assert list(runs) == ["deepspeed_zero2", "deepspeed_zero3", "fsdp"]
    for name, r in runs.items():
        if r["status"] == "skipped":
            assert name != "fsdp" and r["reason"] in SKIPS_ALLOWED, r
            continue
        assert r["status"] == "ok" and r["steps"] == SMOKE.run_steps, r
        assert r["export_dtype"] == "F32" and not r["reload"]["bad_keys"] and not r["reload"]["empty_tensors"]
        assert r["reload_max_rel_diff"] <= 1e-5 and r["reload"]["argmax_agreement"] == 1.0, r  # the trained outputs
        if name.startswith("deepspeed"):
            assert (r["distributed_type"], r["zero_stage"]) == ("DEEPSPEED", int(name[-1])), r

    resume = s["resume"]
    save = SMOKE.run_steps // 3
    assert resume["resumed_from_step"] in (save, 2 * save) and resume["killed_after_logged_step"] > save, resume
    assert resume["resumed_losses"] == resume["straight_losses"]  # the same curve, bit for bit on a CPU

    pf = s["padding_free"]
    if pf["status"] == "skipped":
        assert pf["reason"] == "training.padding_free not available"
    else:
        assert [m["padding_free"] for m in pf["modes"]] == ["true", "false"]
        assert all(_positive(m["samples_per_s"]) and m["dev_accuracy"] is not None for m in pf["modes"])
        assert pf["loss_max_rel_diff"] < 1e-4, pf  # dropout off: the same losses up to summation order

    table = (out / "gpu_check.md").read_text()
    assert "## Step throughput" in table and "## SIGKILL + resume" in table and "reload max rel. diff" in table
    assert report["total_s"] > 0 and report["device"]["cuda"] is False


def test_a_failing_section_records_one_line_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(ctx):
        raise ValueError("no such\nthing")

    monkeypatch.setitem(gpu_check.RUN, "peak", broken)
    ctx = Context(SMOKE, tmp_path, {}, worker=None)
    result = gpu_check.run_section(ctx, "peak", 10.0)
    assert result["status"] == "failed" and result["error"].startswith("ValueError: no such thing (traceback: ")
    assert "no such" in (tmp_path / "logs" / "sections.log").read_text()


def test_the_command_line_refuses_unknown_sections_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--only", "peak,warp"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("--only: unknown section(s) warp (known: "
                                                         + ", ".join(SECTIONS) + ")")
    help_text = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=120).stdout
    assert help_text.startswith("usage: python -m bench.gpu_check")


def test_throughput_and_compile_bring_the_peak_they_divide_by():
    parser = gpu_check.build_parser()
    assert gpu_check.chosen_sections("compile", parser) == ["peak", "compile"]
    assert gpu_check.chosen_sections("resume,padding-free", parser) == ["resume", "padding_free"]
