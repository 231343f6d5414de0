"""One measured subprocess of the data benchmark: its wall time, the peak memory of its whole
process tree (read from /proc while it runs), and when it printed a given line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

RESULT = "BENCH_RESULT "  # the line a child prints its result after
REPO = Path(__file__).resolve().parents[1]  # children run from the checkout's root
MB = 1e6


def _descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # the process is gone
        return []
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def tree_memory(pid: int) -> tuple[int, int]:
    """(summed RSS, summed PSS) in bytes of `pid` and its descendants. RSS counts pages a forked
    DataLoader worker shares with its parent twice; PSS divides shared pages between sharers."""
    rss = pss = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return rss, pss


def _has_line(path: Path | None) -> bool:
    try:
        with open(path, "rb") as f:
            return b"\n" in f.read(65536)
    except (OSError, TypeError):
        return False


def run_measured(cmd: list[str], env: dict, log_path: Path, watch: Path | None = None,
                 timeout: float = 3600.0) -> dict:
    """Run `cmd` in a fresh process: wall time, its own ru_maxrss (os.wait4: this child and the
    descendants it waited for, never an earlier child), peak summed RSS/PSS of the live process
    tree (every 0.2 s), and the time at which `watch` first holds a line (polled every 0.05 s)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak, first, timeline, done = {"rss": 0, "pss": 0}, [], [], threading.Event()
    with open(log_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def sample():
            next_memory = 0.0
            while not done.is_set():
                now = time.perf_counter()
                if watch is not None and not first and _has_line(watch):
                    first.append(now - start)
                if now >= next_memory:
                    rss, pss = tree_memory(proc.pid)
                    peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
                    timeline.append((round(now - start, 1), round(rss / MB), round(pss / MB)))
                    next_memory = now + 0.2
                if now - start > timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if watch is not None and not first and _has_line(watch):
        first.append(wall)  # the process ended between two polls
    at_first = next((int(rss * MB) for t, rss, _ in reversed(timeline) if t <= first[0]), None) if first else None
    text = log_path.read_text(errors="replace")
    result = next((json.loads(ln[len(RESULT):]) for ln in reversed(text.splitlines()) if ln.startswith(RESULT)), {})
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "ru_maxrss_bytes": usage.ru_maxrss * 1024,
            "tree_rss_peak_bytes": peak["rss"], "tree_pss_peak_bytes": peak["pss"],
            "first_line_s": round(first[0], 2) if first else None, "log": str(log_path),
            "tree_rss_at_first_line_bytes": at_first,
            "timeline_s_rss_pss_mb": timeline, **result,
            **({"error": f"exit {proc.returncode}: " + " | ".join(text.strip().splitlines()[-3:])[-600:]}
               if proc.returncode else {})}
