"""The pacing parts of :mod:`qdsearch.llm.limits`: a token bucket (GCRA) for RPM and
TPM, the AIMD window of requests in flight, and the token estimate of a call."""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["AdaptiveConcurrency", "TokenBucket", "estimate_tokens"]

BETA = 0.5  # the window's multiplicative decrease
INITIAL_WINDOW = 4  # the adaptive window's start (within floor and ceiling), as TCP's RFC 3390
BYTES_PER_TOKEN = 4.0
PER_MESSAGE = 4  # role markers and separators of one chat message


def estimate_tokens(messages: Iterable[Mapping[str, Any]], max_tokens: int) -> float:
    """Tokens a chat call counts against TPM before its reply is known (module docstring)."""
    n = 0.0
    for m in messages:
        n += PER_MESSAGE + len(str(m.get("content") or "").encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN
    return n + max(0, max_tokens)


# ------------------------------------------------------------------ token bucket


class TokenBucket:
    """A token bucket kept as its theoretical arrival time (GCRA), with reservations.

    It holds at most ``burst`` units and refills at ``rate`` units per second. A
    request of ``cost`` units may start once the bucket holds ``min(cost, burst)``;
    it then takes ``cost`` (a call larger than the burst leaves the bucket in debt).
    Reservations are made at once and in order, so waiters are served first come,
    first served, without a wake-up storm. In any window of ``w`` seconds the costs
    of the requests started add up to at most ``burst + rate * w``, plus, for calls
    larger than the burst, the excess of the last one.

    Args:
        rate: units per second (> 0).
        burst: the bucket's size (> 0); it starts full.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not (rate > 0 and burst > 0):
            raise ValueError(f"rate and burst must be > 0, got {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self._tat = -math.inf  # the time at which the bucket is full again

    @classmethod
    def per_minute(cls, limit: float, burst: float) -> TokenBucket:
        """A bucket that starts at most ``limit`` units in any 60 s window (calls no
        larger than ``burst``): it refills at ``(limit - burst) / 60`` per second."""
        burst = min(burst, limit / 2)
        return cls((limit - burst) / 60.0, burst)

    def level(self, now: float) -> float:
        """Units in the bucket at ``now`` (negative: in debt)."""
        return self.burst - max(0.0, self._tat - now) * self.rate

    def earliest(self, cost: float, now: float) -> float:
        """The first time at or after ``now`` at which a request of ``cost`` may start."""
        need = min(cost, self.burst)
        return max(now, self._tat - (self.burst - need) / self.rate)

    def commit(self, cost: float, at: float) -> None:
        """Takes ``cost`` for a request starting at ``at`` (from :meth:`earliest`)."""
        self._tat = max(self._tat, at) + cost / self.rate

    def adjust(self, delta: float, now: float) -> None:
        """Charges ``delta`` more units (negative: gives them back, up to a full bucket)."""
        self._tat = max(self._tat, now) + delta / self.rate if delta > 0 else max(now, self._tat + delta / self.rate)

    def retune(self, rate: float, burst: float, now: float) -> None:
        """New rate and burst, keeping the debt (in units) the bucket has now."""
        debt = max(0.0, self._tat - now) * self.rate
        self.rate, self.burst = rate, burst
        self._tat = now + debt / rate if debt > 0 else -math.inf


# ------------------------------------------------------------------ adaptive concurrency


class AdaptiveConcurrency:
    """A window of requests in flight, adapted by AIMD (see the module docstring).

    Args:
        ceiling: the configured ``concurrency``: the most in flight.
        floor: the least the window shrinks to.
        adaptive: False keeps the window at ``ceiling`` (a plain semaphore).

    Attributes:
        limit: the window now (a float; ``int(limit)`` requests may be in flight).
        held: slots held now.
        cuts: how many times the window was cut.
    """

    def __init__(self, ceiling: int, floor: int = 1, adaptive: bool = True) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.adaptive = adaptive
        self.limit = float(min(self.ceiling, max(self.floor, INITIAL_WINDOW)) if adaptive else self.ceiling)
        self._ssthresh = float(self.ceiling)  # slow start below this
        self.held = 0
        self.cuts = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._seq = 0  # requests started
        self._cut_seq = 0  # _seq at the last cut: answers to earlier requests are stale

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> int:
        """Waits for a slot; returns the request's sequence number."""
        if self.held < int(self.limit) and not self._waiters:
            self.held += 1
        else:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut  # the releaser hands its slot over
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self.release()  # woken, then cancelled: pass the slot on
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise
        self._seq += 1
        return self._seq

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.held < int(self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                self.held += 1
                fut.set_result(None)

    def on_success(self, saturated: bool) -> None:
        """An answer came: grow the window if it was the bottleneck."""
        if not (self.adaptive and saturated) or self.limit >= self.ceiling:
            return
        self.limit += 1.0 if self.limit < self._ssthresh else 1.0 / self.limit
        self.limit = min(self.limit, float(self.ceiling))
        self._wake()

    def on_congestion(self, seq: int) -> None:
        """A 429, 503 or timeout for request ``seq``: halve the window, unless the
        request started before the last cut (its news is already acted on)."""
        if not self.adaptive or seq <= self._cut_seq:
            return
        self._cut_seq = self._seq
        self.limit = max(float(self.floor), self.limit * BETA)
        self._ssthresh = self.limit
        self.cuts += 1
