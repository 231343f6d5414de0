"""numpy Generator draws for the example-index builders, replayed in plain Python.

The NSP/SOP/ELECTRA index builders (tasks/) are sequential random processes: how many numbers an
example draws depends on the numbers drawn before it, so the draws cannot be made as one numpy
call. A numpy call per draw (rng.random(), rng.integers(lo, hi)) costs a microsecond or more;
`replay(rng)` takes the PCG64 bit generator's raw 64-bit outputs in blocks (one numpy call per 64k)
and turns them into exactly the values numpy's Generator returns, in the same order:

- random():          (raw >> 11) * 2**-53;
- integers(lo, hi):  Lemire's bounded 32-bit method on next_uint32, which hands out the low half of
                     a raw output and keeps the high half for the next 32-bit draw (random() does not
                     touch that buffer); no draw at all when hi - lo == 1;
- random(n) < 0.5:   the raw output's top bit is 0.

Closing leaves the Generator in the state the same numpy calls would have left it in, so a caller
that keeps drawing sees no difference. A Generator on another bit generator is driven call by call
(same values at numpy's speed). tests/data/test_draws.py pins the replay to numpy's own calls.
"""

from __future__ import annotations

from array import array

import numpy as np

_M32 = 0xFFFFFFFF
_TOP = np.uint64(1 << 63)
_DOUBLE = 1.0 / 9007199254740992.0  # 2**-53
_BLOCK = 1 << 16


def replay(rng: np.random.Generator) -> Draws | CalledDraws:
    """Exact draws of `rng` for a builder's loop; use as a context manager."""
    return Draws(rng) if type(rng.bit_generator) is np.random.PCG64 else CalledDraws(rng)


class Draws:
    """PCG64 draws replayed from blocks of raw outputs."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._state = rng.bit_generator.state
        self._clone = np.random.PCG64()
        self._clone.state = self._state
        self._has32, self._u32 = bool(self._state["has_uint32"]), int(self._state["uinteger"])
        self._raw, self._front, self._pos, self._n, self._done = array("Q"), b"", 0, 0, 0

    def __enter__(self) -> Draws:
        return self

    def __exit__(self, *exc):
        self.close()

    def _refill(self, need: int):
        """At least `need` raw outputs ahead of the read position (kept as array('Q') and top-bit
        flags: most outputs are read as flags, never as Python ints)."""
        fresh = self._clone.random_raw(max(_BLOCK, need))
        self._done += self._pos
        self._raw = self._raw[self._pos:] + array("Q", fresh.tobytes())
        self._front = self._front[self._pos:] + (fresh < _TOP).tobytes()
        self._pos, self._n = 0, len(self._raw)

    def random(self) -> float:
        """rng.random()"""
        if self._pos >= self._n:
            self._refill(1)
        self._pos += 1
        return (self._raw[self._pos - 1] >> 11) * _DOUBLE

    def integers(self, lo: int, hi: int) -> int:
        """rng.integers(lo, hi), for 1 <= hi - lo < 2**32 (numpy's buffered 32-bit path)."""
        excl = hi - lo
        if excl == 1:
            return lo
        if not 1 < excl < 1 << 32:
            raise ValueError(f"Draws.integers: range [{lo}, {hi}) is outside the replayed 32-bit path")
        m = self._next32() * excl
        if (m & _M32) < excl:  # rare (p < excl / 2**32): numpy's rejection step, exactly
            threshold = ((1 << 32) - excl) % excl
            while (m & _M32) < threshold:
                m = self._next32() * excl
        return lo + (m >> 32)

    def _next32(self) -> int:
        if self._has32:
            self._has32 = False
            return self._u32
        if self._pos >= self._n:
            self._refill(1)
        x = self._raw[self._pos]
        self._pos += 1
        self._has32, self._u32 = True, x >> 32
        return x & _M32

    def fronts(self, n: int) -> tuple[bytes, int]:
        """rng.random(n) < 0.5 as (flags, start): flags[start + t] is 1 where draw t is below 1/2."""
        if self._pos + n > self._n:
            self._refill(n)
        self._pos += n
        return self._front, self._pos - n

    def close(self):
        """Advance the Generator past exactly the draws that were used."""
        if self.rng is None:
            return
        bits, self.rng = self.rng.bit_generator, None
        bits.state = self._state
        bits.advance(self._done + self._pos)  # also empties the 32-bit buffer: set it back below
        state = bits.state
        state["has_uint32"], state["uinteger"] = int(self._has32), self._u32
        bits.state = state


class CalledDraws:
    """The same interface on any Generator, one numpy call per draw."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __enter__(self) -> CalledDraws:
        return self

    def __exit__(self, *exc):
        pass

    def random(self) -> float:
        return float(self.rng.random())

    def integers(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi))

    def fronts(self, n: int) -> tuple[bytes, int]:
        return (self.rng.random(n) < 0.5).astype(np.uint8).tobytes(), 0
