"""The parent's side of gpu_check's processes: the worker (bench/gpu_check/worker.py), restarted after
a crash or a timeout, and the command-line runs (`python -m pipelines ...` under accelerate launch),
each in its own process group so a timeout kills all of it. The parent imports no torch: whatever
happens on the GPU happens in a child."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import REPO, run_child
from bench.gpu_check.worker import RESULT


def child_env() -> dict:
    """This process's environment, offline, with the repo importable from any launcher."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    return env


_EXCEPTION = re.compile(r"^(\[rank\d+\]: )?[\w.]*(Error|Exception)\b.*:")


def error_line(path: Path) -> str:
    """Why a process failed, from its log: lmforge's one error line, else the last exception line
    (a rank's own before the launcher's ChildFailedError), else the last 3 lines."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    ours = [ln for ln in lines if ln.startswith("lmforge: error:")]
    raised = [ln for ln in lines if _EXCEPTION.match(ln) and "ChildFailedError" not in ln]
    ranked = [ln for ln in raised if ln.startswith("[rank")]
    return ((ours or ranked or raised or [" | ".join(lines[-3:])])[-1])[-500:]


class Worker:
    """One worker process at a time; run() sends it a job and waits for that job's result line."""

    def __init__(self, logs: Path, env: dict):
        self.logs, self.env, self.proc, self.lines, self.starts, self.log = logs, env, None, None, 0, None
        self.next_id = 0

    def _start(self) -> None:
        self.starts += 1
        self.log = self.logs / f"worker-{self.starts}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.gpu_check.worker"], cwd=REPO, env=self.env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # the worker ended

    def run(self, kind: str, spec: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.next_id += 1
        job = self.next_id
        try:
            self.proc.stdin.write(json.dumps({"id": job, "kind": kind, "spec": spec}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it died at start: its log says why, below
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                return {"error": f"timed out after {timeout:.0f} s (log: {self.log})"}
            if line is None:
                code = self.proc.wait()
                self.proc = None
                return {"error": f"the worker process died (exit {code}): {error_line(self.log)} (log: {self.log})"}
            if line.startswith(RESULT):
                out = json.loads(line[len(RESULT):])
                if out.pop("id") == job:
                    return out

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.stop()
        self.proc = None


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(config: str | None, mixed_precision: str, *args: str) -> list[str]:
    """The probe CLI (bench/gpu_check/probe.py), through `accelerate launch` with a shipped config
    (one process), or plainly. accelerate's launcher is run as a module: no script on PATH needed."""
    if config is None:
        return [sys.executable, "-m", "bench.gpu_check.probe", *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "accelerate_configs" / config), "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", mixed_precision, "--main_process_port", str(free_port()),
            "-m", "bench.gpu_check.probe", *args]


def run_until(cmd: list[str], env: dict, log: Path, ready, timeout: float) -> dict:
    """Start `cmd`; SIGKILL its whole process group as soon as ready() is true (polled every 20 ms).
    {'killed': True} when it was killed, else how it ended on its own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if ready():
                    kill_group(proc.pid)
                    proc.wait()
                    return {"killed": True}
                time.sleep(0.02)
        except BaseException:  # Ctrl-C reaches only this process: the run has its own session
            kill_group(proc.pid)
            raise
        if proc.poll() is None:
            kill_group(proc.pid)
            proc.wait()
            return {"killed": False, "error": f"nothing to kill after {timeout:.0f} s: {error_line(log)}"}
    return {"killed": False, "rc": proc.returncode, "error": f"the run ended (exit {proc.returncode}) before the "
                                                             f"kill: {error_line(log)}"}


def run_cli(cmd: list[str], env: dict, log: Path, timeout: float) -> dict:
    """A command-line run to its end (bench.common.run_child), its error as one line with the log named."""
    out = run_child(cmd, env, log, timeout)
    if out["rc"] != 0:
        late = " (timed out)" if out["wall_s"] >= timeout else ""
        out["error"] = f"exit {out['rc']}{late}: {error_line(log)} (log: {log})"
    return out
