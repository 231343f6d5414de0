"""pipelines/data/draws.py replays numpy's Generator exactly: the same values as rng.random(),
rng.integers(lo, hi) and rng.random(n) < 0.5 called in any order, and the same Generator state
afterwards (32-bit buffer included), across block refills and rejection steps."""

import numpy as np
import pytest

from pipelines.data import draws as draws_module
from pipelines.data.draws import CalledDraws, Draws, replay


def _program(seed: int) -> list[tuple]:
    """A random sequence of calls: doubles, flag runs, and integers over ranges small and large
    (ranges just above 2**31 reject about half of the 32-bit draws, so the rejection step runs)."""
    rng = np.random.default_rng(seed)
    calls = []
    for _ in range(int(rng.integers(1, 300))):
        kind = int(rng.integers(4))
        if kind == 0:
            calls.append(("random",))
        elif kind == 1:
            calls.append(("fronts", int(rng.integers(0, 40))))
        else:
            lo = int(rng.integers(-5, 10))
            widths = [1, 2, 3, 7, 1000, 2**31 + 5, 2**32 - 1]
            width = int(rng.choice(widths)) if kind == 2 else int(rng.integers(1, 2**32))
            calls.append(("integers", lo, lo + width))
    return calls


def _run_numpy(rng, calls) -> list:
    out = []
    for call in calls:
        if call[0] == "random":
            out.append(float(rng.random()))
        elif call[0] == "fronts":
            out.append((rng.random(call[1]) < 0.5).astype(np.uint8).tolist())
        else:
            out.append(int(rng.integers(call[1], call[2])))
    return out


def _run_replay(draws, calls) -> list:
    out = []
    for call in calls:
        if call[0] == "random":
            out.append(draws.random())
        elif call[0] == "fronts":
            flags, start = draws.fronts(call[1])
            out.append(list(flags[start:start + call[1]]))
        else:
            out.append(draws.integers(call[1], call[2]))
    return out


@pytest.mark.parametrize("block", [1, 5, 1 << 16])
def test_replay_equals_numpy_calls(monkeypatch, block):
    monkeypatch.setattr(draws_module, "_BLOCK", block)  # small blocks: refills in the middle of anything
    for seed in range(60):
        calls = _program(seed)
        ref, new = np.random.default_rng(seed), np.random.default_rng(seed)
        if seed % 3 == 0:  # start with a 32-bit half waiting in the buffer
            ref.integers(0, 7)
            new.integers(0, 7)
        with replay(new) as draws:
            assert isinstance(draws, Draws)
            got = _run_replay(draws, calls)
        assert got == _run_numpy(ref, calls), seed
        assert new.bit_generator.state == ref.bit_generator.state
        assert new.integers(0, 9) == ref.integers(0, 9) and new.random() == ref.random()


def test_other_bit_generators_are_called_directly():
    calls = _program(1)
    ref, new = np.random.Generator(np.random.Philox(3)), np.random.Generator(np.random.Philox(3))
    with replay(new) as draws:
        assert isinstance(draws, CalledDraws)
        assert _run_replay(draws, calls) == _run_numpy(ref, calls)
    assert np.array_equal(new.random(5), ref.random(5))  # and the Generator goes on alike


def test_ranges_outside_the_32_bit_path_are_refused():
    with replay(np.random.default_rng(0)) as draws, pytest.raises(ValueError, match="32-bit"):
        draws.integers(0, 2**32 + 1)
