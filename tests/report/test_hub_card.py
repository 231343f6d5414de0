"""`push` to the Hub with a generated model card (issue #10): a dry run builds the exact upload folder
offline, the card parses with huggingface_hub.ModelCard and its figures are the results files'; only
the export's files are staged; the token never appears in any output; a Hub that cannot be reached,
or answers slowly, fails in one line within the timeout."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import REPO
from report_samples import NINE_TASKS, RTE_SEEDS, sample_runs

TOKEN = "hf_FAKEtokenForLmforgeTests0123456789"
STRAY = [".env", "optimizer.bin", "notes.txt"]


@pytest.fixture
def export(tmp_path):
    """A copy of the sample pretraining run's export and results (plus stray files), so staging
    writes into tmp_path and not into the shared samples."""
    run = tmp_path / "bert-tiny"
    shutil.copytree(sample_runs() / "bert-tiny" / "final", run / "final")
    shutil.copy(sample_runs() / "bert-tiny" / "results.json", run / "results.json")
    for name in STRAY:
        (run / "final" / name).write_text(f"secret {TOKEN}")
    (run / "final" / "checkpoints").mkdir()
    return run / "final"


def push_cli(*args, env_extra=None, timeout=120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "pipelines", "push", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("lmforge: error:"), proc.stderr[-2000:]
    return lines[0]


def test_dry_run_builds_the_folder_and_a_card_matching_the_results(export, tmp_path):
    from huggingface_hub import ModelCard

    from pipelines.runs.push import export_files

    glue = sample_runs() / "finetune" / "paper-like" / "glue_results.json"
    proc = push_cli(export, "--repo_id", "someone/bert-tiny", "--glue_results", glue, "--dry_run",
                    env_extra={"HF_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr[-2000:]
    stage = export.parent / "hub" / "someone--bert-tiny"
    assert proc.stdout.splitlines()[-1] == f"push: dry run: nothing uploaded; the folder and model card are in {stage}"

    chosen, _ = export_files(export)
    staged = sorted(p.name for p in stage.iterdir())
    assert staged == chosen and "README.md" in staged and not set(STRAY) & set(staged)
    assert f"push: {len(staged)} files to someone/bert-tiny: {', '.join(staged)}" in proc.stdout
    for name in staged:
        if name != "README.md":
            assert (stage / name).read_bytes() == (export / name).read_bytes()
    assert TOKEN not in proc.stdout + proc.stderr
    assert not any(TOKEN.encode() in (stage / name).read_bytes() for name in staged)

    card = ModelCard.load(stage / "README.md")
    results = json.loads((export.parent / "results.json").read_text())
    data = card.data
    assert data.license is None and data.library_name == "transformers"  # no license nobody chose (--license)
    assert data.pipeline_tag == "fill-mask" and data.base_model is None  # pretrained here, from nothing
    assert "/tmp" not in card.text and str(export.parent) not in card.text  # no local paths published
    assert {"lmforge", "bert-mlm-nsp", "masked-language-modeling", "next-sentence-prediction"} <= set(data.tags)
    assert data.datasets == ["nyu-mll/glue"]
    expected = {}
    for task, (metrics, _) in NINE_TASKS.items():
        for key, value in metrics.items():
            split, _, metric = key.rpartition("/")
            expected[(task, f"validation_{split}" if split else
                      ("validation_matched" if task == "mnli" else "validation"), metric)] = value
    expected[("rte", "validation", "accuracy")] = sorted(m["accuracy"] for m in RTE_SEEDS.values())[1]  # median
    hub_names = {"pearson": "pearsonr"}
    got = {(r.dataset_config, r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert got == {(t, s, hub_names.get(m, m)): v for (t, s, m), v in expected.items()}
    assert {r.task_type for r in data.eval_results} == {"text-classification"}
    assert {r.dataset_type for r in data.eval_results} == {"nyu-mll/glue"}

    text = card.text
    assert f"tokens seen: {results['tokens']:,}" in text and results["hardware"]["cpu_name"] in text
    assert f"offline run `{results['wandb']['id']}`" in text and "wandb sync" in text
    from pipelines.runs.hub_card import without_local_paths

    assert json.dumps(without_local_paths(results["recipe_config"]), indent=2) in text
    if results["git_commit"]:
        assert results["git_commit"] in text


def test_card_inputs_default_to_the_runs_own_files(export, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from pipelines.runs.push import card_inputs, push_folder
    from pipelines.runs.run_folder import default_output_root

    monkeypatch.chdir(tmp_path)  # finetune's default output folder is relative: runs/finetune/<label>
    run, glue = card_inputs(export, None, None)
    assert run["tokens"] == json.loads((export.parent / "results.json").read_text())["tokens"] and glue is None
    default = default_output_root(str(export)) / "glue_results.json"
    default.parent.mkdir(parents=True)
    shutil.copy(sample_runs() / "finetune" / "paper-like" / "glue_results.json", default)
    assert set(card_inputs(export, None, None)[1]) == set(NINE_TASKS)

    # an export fine-tuned on one GLUE task: its own run's results make the model-index
    seed_run = tmp_path / "sst2"
    shutil.copytree(sample_runs() / "finetune" / "tiny-sst2" / "sst2" / "seed-42", seed_run,
                    ignore=shutil.ignore_patterns("hub", "checkpoints"))
    stage = push_folder(seed_run / "final", "someone/tiny-sst2", dry_run=True)
    card = ModelCard.load(os.path.join(stage, "README.md"))
    accuracy = json.loads((seed_run / "results.json").read_text())["metrics"]["eval/accuracy"]
    assert [(r.dataset_config, r.metric_type, r.metric_value) for r in card.data.eval_results] == \
        [("sst2", "accuracy", accuracy)]
    assert "text-classification" in card.data.tags


@pytest.mark.parametrize("args, words", [
    (["--results", "/no/such/results.json"], ["/no/such/results.json", "no such results file"]),
    (["--glue_results", "/no/such/glue.json"], ["/no/such/glue.json", "no such GLUE results file"]),
    (["--repo_id", "a/b/c"], ["repo id 'a/b/c'", "user/name"]),
])
def test_bad_card_inputs_are_one_line(export, args, words):
    import contextlib
    import io

    from pipelines.commands.cli import build_parser, run_command

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_command(lambda a: a.func(a), build_parser().parse_args(
            ["push", str(export), "--repo_id", "someone/x", "--dry_run", *args]))
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), lines
    assert not (export.parent / "hub").exists()


class _EchoAuth(BaseHTTPRequestHandler):
    """A Hub that refuses the token and echoes it back in its error (the worst case for a leak)."""

    seen: list = []

    def _refuse(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        _EchoAuth.seen.append(self.headers.get("authorization"))
        body = json.dumps({"error": f"Invalid credentials: {self.headers.get('authorization')}"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("how", ["env", "argument"])
def test_a_refused_token_is_one_line_and_never_printed(export, tmp_path, how):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _EchoAuth.seen.clear()
    try:
        env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
               "HF_HOME": str(tmp_path / "hf")}
        extra = ["--token", TOKEN] if how == "argument" else []
        if how == "env":
            env["HF_TOKEN"] = TOKEN
        proc = push_cli(export, "--repo_id", "someone/bert-tiny", *extra, env_extra=env)
    finally:
        server.shutdown()
    line = one_error(proc)
    assert f"Bearer {TOKEN}" in _EchoAuth.seen  # the token was sent, and the server said it back
    assert "push to someone/bert-tiny" in line and "401" in line and "***" in line
    assert TOKEN not in proc.stdout + proc.stderr


def test_a_silent_hub_times_out_in_one_line(export, tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) and never answers
    try:
        start = time.monotonic()
        proc = push_cli(export, "--repo_id", "someone/bert-tiny",
                        env_extra={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
                                   "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": TOKEN, "LMFORGE_HUB_TIMEOUT": "2"})
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    line = one_error(proc)
    assert "cannot be reached" in line and "nothing was uploaded" in line and TOKEN not in proc.stdout + proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_offline_mode_fails_before_any_request(export):
    proc = push_cli(export, "--repo_id", "someone/bert-tiny", env_extra={"HF_TOKEN": TOKEN})  # HF_HUB_OFFLINE=1
    line = one_error(proc)
    assert "cannot be reached" in line and "HF_HUB_OFFLINE" in line and TOKEN not in proc.stdout + proc.stderr


def test_a_bad_timeout_setting_is_one_line(export, monkeypatch):
    from pipelines.errors import LmforgeError
    from pipelines.runs.push import push_folder

    monkeypatch.setenv("LMFORGE_HUB_TIMEOUT", "soon")
    with pytest.raises(LmforgeError, match="LMFORGE_HUB_TIMEOUT='soon': expected a number of seconds > 0"):
        push_folder(export, "someone/bert-tiny")
