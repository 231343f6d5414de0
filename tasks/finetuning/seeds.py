"""Several seeds per GLUE task: every seed's metrics kept, median / mean / std reported (small GLUE
tasks such as RTE, MRPC and CoLA swing by points between seeds; one run says little)."""

from __future__ import annotations

import statistics


def seed_list(first: int, n: int) -> list[int]:
    return [first + i for i in range(n)]


def seed_summary(per_seed: dict[int, dict[str, float]]) -> dict:
    """{"median": {...}, "mean": {...}, "std": {...} (sample std; 0 for one seed), "seeds": {seed: {...}}}."""
    keys = [k for k in next(iter(per_seed.values())) if all(k in m for m in per_seed.values())]
    values = {k: [m[k] for m in per_seed.values()] for k in keys}
    return {"median": {k: statistics.median(v) for k, v in values.items()},
            "mean": {k: statistics.fmean(v) for k, v in values.items()},
            "std": {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()},
            "seeds": {str(s): m for s, m in per_seed.items()}}


def best_seed(per_seed: dict[int, dict[str, float]], metric: str) -> int:
    """The seed with the highest dev `metric` (its export makes the test-set submission)."""
    return max(per_seed, key=lambda s: per_seed[s].get(metric, float("-inf")))


def seed_table_line(task: str, summary: dict) -> str:
    n = len(summary["seeds"])
    return f"{task:8s} " + "  ".join(f"{k}={100 * v:.2f} (mean {100 * summary['mean'][k]:.2f} "
                                     f"± {100 * summary['std'][k]:.2f})" for k, v in summary["median"].items()) + \
        f"  [median of {n} seeds]"
