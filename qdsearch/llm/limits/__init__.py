"""Rate limits and adaptive concurrency for one endpoint client.

A paid endpoint limits requests per minute (RPM) and tokens per minute (TPM), and
answers 429 above them. A client that only caps how many requests are in flight
either leaves throughput unused (cap too low) or spends a share of its calls on 429s
and backoff (cap too high). :class:`Limits` keeps a client just under the limits:

- two token buckets (:class:`TokenBucket`), one for requests and one for tokens,
  pace the starts of requests so that at most ``rpm`` requests and (up to one call's
  excess, see :class:`TokenBucket`) ``tpm`` tokens start in any 60 s window;
- an AIMD window (:class:`AdaptiveConcurrency`) sets how many requests may be in
  flight: it starts at 4 (within the floor and the ceiling), grows by one per
  answered request while it is the bottleneck (slow start), then by one per window
  of answers, and halves on a 503, or on a timeout while answers are slowing down
  (smoothed latency over twice the quickest: queueing, not one hung request) or
  before anything was answered, at most once per round trip, never above the
  configured ``concurrency`` (the ceiling) nor below ``min_concurrency`` (the floor);
- a 429 is a rate limit rather than overload: it sets a probed request rate, 95% of
  the requests per second the endpoint let through in the last 3 s, which then grows
  (0.25% a second, faster the longer no 429 comes) until the next 429 (the window is
  halved instead while fewer than 4 requests were answered); at most once per round
  trip, and never below what ``min_concurrency`` requests in flight get through;
- the endpoint's headers: ``Retry-After`` / ``retry-after-ms`` on a 429 or 503 hold
  every new request of the client (not just the one refused) until then;
  ``x-ratelimit-remaining-requests|tokens`` with ``x-ratelimit-reset-requests|tokens``
  hold new requests while nothing is left; ``x-ratelimit-limit-requests|tokens``
  (OpenAI's per-minute limits) lower the buckets to what the endpoint advertises.

Tokens of a call are estimated before it starts, as a quarter of the prompt's UTF-8
bytes plus 4 per message plus ``max_tokens`` (:func:`estimate_tokens`; OpenAI counts
``max_tokens`` against TPM when a request arrives, and a byte count does not
underestimate non-English text as a character count does), and the token bucket is
corrected with the reply's ``usage`` when it comes.

With ``adaptive_concurrency = false`` the window stays at ``concurrency`` and the
headers are not followed (each retry still waits for its own ``Retry-After``): the
client of before this module, plus the configured buckets.

Nothing here does I/O; time comes from an injectable clock and sleep, so the
behaviour is tested without waiting. Header parsing is in
:mod:`~qdsearch.llm.limits.headers`, the bucket and the window in
:mod:`~qdsearch.llm.limits.pacing`.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qdsearch.llm.limits.headers import RateHeaders, format_duration, parse_duration, rate_headers, retry_after_s
from qdsearch.llm.limits.pacing import AdaptiveConcurrency, TokenBucket, estimate_tokens

__all__ = [
    "AdaptiveConcurrency",
    "Limits",
    "RateHeaders",
    "Ticket",
    "TokenBucket",
    "estimate_tokens",
    "format_duration",
    "parse_duration",
    "rate_headers",
    "retry_after_s",
    "share_among",
]

CONGESTION = frozenset({"http_429", "http_503", "timeout"})  # outcomes that slow the client down
MAX_HOLD_S = 60.0  # no header holds the client longer than this (a bogus reset)
# A 429 sets the request rate to PROBE_BACKOFF of the rate of requests the endpoint
# let through (started and not refused) in the last PROBE_WINDOW_S seconds. That rate
# then grows by PROBE_GROWTH per second, faster the longer no 429 comes (t seconds
# after: by PROBE_GROWTH * (1 + t / PROBE_ACCEL_S)), so a low first guess recovers
# in a minute while the client stays close to a limit it has found.
PROBE_WINDOW_S = 3.0
PROBE_BACKOFF = 0.95
PROBE_GROWTH = 0.0025
PROBE_ACCEL_S = 10.0
SLOW_DOWN = 2.0  # a timeout cuts the window when the smoothed latency is this times the quickest


# ------------------------------------------------------------------ the client's limits


@dataclass
class Ticket:
    """One request let through by :meth:`Limits.start`."""

    seq: int
    tokens: float
    started: float


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class Limits:
    """Everything that decides when a client's next request may start (module docstring).

    Args:
        concurrency: the ceiling of requests in flight.
        rpm, tpm: configured limits per minute (``math.inf``: none).
        adaptive: adapt the window and follow the endpoint's headers.
        min_concurrency: the window's floor.
        max_hold_s: the longest a header holds the client (the endpoint's
            ``max_backoff_s``: a ``Retry-After`` is capped as a retry's wait is).
        clock, sleep: time, injectable for tests.

    Attributes:
        window: the :class:`AdaptiveConcurrency`.
        share: the fraction of the limits this client may use (``1 / workers`` when
            several processes share one endpoint: :func:`share_among`).
        learned_rpm, learned_tpm: limits the endpoint advertised (None: not seen).
        held_until: the clock time before which no request starts (headers).
        n_429: answers 429 seen.
    """

    def __init__(
        self,
        concurrency: int,
        rpm: float = math.inf,
        tpm: float = math.inf,
        *,
        adaptive: bool = True,
        min_concurrency: int = 1,
        max_hold_s: float = MAX_HOLD_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.window = AdaptiveConcurrency(concurrency, min_concurrency, adaptive)
        self.rpm, self.tpm, self.adaptive = rpm, tpm, adaptive
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None
        self._share = 1.0
        self._clock, self._sleep = clock, sleep
        self.max_hold_s = max_hold_s
        self.held_until = -math.inf
        self.on_wire = 0
        self.pacing = 0
        self.n_429 = 0
        self._typical_tokens = 0.0
        self.probed_rpm: float | None = None
        self._probed_at = math.inf
        self._n_ok = 0
        self._probe_seq = 0
        self._srtt = 0.0  # smoothed latency of answered requests
        self._min_rtt = math.inf  # the quickest answer
        self._retuned_at = -math.inf
        self._starts: collections.deque[float] = collections.deque(maxlen=8192)  # when requests started
        self._refused: collections.deque[float] = collections.deque(maxlen=8192)  # ... those answered 429
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self._retune()

    @classmethod
    def for_endpoint(cls, cfg: Any) -> Limits:
        """From an endpoint config's ``concurrency``, ``rpm``, ``tpm``,
        ``adaptive_concurrency``, ``min_concurrency`` and ``max_backoff_s`` (defaults
        where missing)."""
        return cls(
            int(getattr(cfg, "concurrency", 8)),
            float(getattr(cfg, "rpm", math.inf)),
            float(getattr(cfg, "tpm", math.inf)),
            adaptive=bool(getattr(cfg, "adaptive_concurrency", True)),
            min_concurrency=int(getattr(cfg, "min_concurrency", 1)),
            max_hold_s=min(MAX_HOLD_S, float(getattr(cfg, "max_backoff_s", MAX_HOLD_S))),
        )

    @property
    def share(self) -> float:
        return self._share

    @share.setter
    def share(self, value: float) -> None:
        self._share = value
        self._retune()

    def effective(self) -> tuple[float, float]:
        """(rpm, tpm) this client paces to: the configured limits, lowered to what the
        endpoint advertises, times :attr:`share`, and to the probed rate."""
        rpm = min(self.rpm, self.learned_rpm or math.inf) * self._share
        tpm = min(self.tpm, self.learned_tpm or math.inf) * self._share
        if self.probed_rpm is not None:
            t = max(0.0, self._clock() - self._probed_at)
            grown = self.probed_rpm * (1 + PROBE_GROWTH * (t + t * t / (2 * PROBE_ACCEL_S)))
            rpm = min(rpm, grown)
        return rpm, tpm

    def _probe(self, ticket: Ticket, now: float) -> bool:
        """On a 429: paces requests to a little under the rate that got answers of
        late (the endpoint's limit, as seen from here), once per round trip; False
        when there were too few answers to tell (the window is cut instead)."""
        if self._n_ok < 4:
            return False
        if ticket.seq > self._probe_seq:
            span = min(PROBE_WINDOW_S, now - self._starts[0])
            through = sum(t > now - span for t in self._starts) - sum(t > now - span for t in self._refused)
            # never below what the floor of the window would get through (429s that
            # are not about the rate must not starve the client)
            floor = 60.0 * self.window.floor / max(self._srtt, 1e-3)
            self.probed_rpm = max(floor, PROBE_BACKOFF * 60.0 * through / max(span, 1e-3))
            self._probed_at, self._probe_seq = now, self.window._seq
            self._retune()
        return True

    def _retune(self) -> None:
        now = self._retuned_at = self._clock()
        rpm, tpm = self.effective()
        self._requests = _tuned(self._requests, rpm, 1.0, now)
        self._tokens = _tuned(self._tokens, tpm, tpm / 100, now)  # about 0.6 s of tokens

    async def start(self, tokens: float = 0.0) -> Ticket:
        """Waits until a request costing ``tokens`` may start, and takes its share.

        Every :meth:`start` must be followed by one :meth:`finish` (also on failure).
        """
        seq = await self.window.acquire()
        try:
            now = self._clock()
            if self.probed_rpm is not None and now - self._retuned_at >= 1.0:
                self._retune()  # the probed rate grows
            at = max(now, self.held_until)
            rb, tb = self._requests, self._tokens
            if rb is not None:
                at = max(at, rb.earliest(1.0, at))
            if tb is not None:
                at = max(at, tb.earliest(tokens, at))
                tb.commit(tokens, at)
            if rb is not None:
                rb.commit(1.0, at)
            self.pacing += 1  # holding a slot while the buckets or a hold make it wait
            try:
                while (now := self._clock()) < (until := max(at, self.held_until)):
                    await self._sleep(until - now)
            finally:
                self.pacing -= 1
        except BaseException:
            self.window.release()
            raise
        self.on_wire += 1
        self._starts.append(now)
        self._typical_tokens = tokens if not self._typical_tokens else 0.9 * self._typical_tokens + 0.1 * tokens
        return Ticket(seq, tokens, now)

    def finish(self, ticket: Ticket, outcome: str, used_tokens: float | None = None) -> None:
        """The request of ``ticket`` ended with ``outcome`` (``"ok"``, ``"http_429"``,
        ``"timeout"``...), having used ``used_tokens`` (None: unknown, the estimate
        stands; a failed request gives its estimate back)."""
        # The window is the bottleneck when requests wait for a slot while at most one
        # of those holding one waits for a bucket (the next in line of a bucket that
        # spaces its starts) or a hold: more, and the bucket is the bottleneck.
        saturated = self.window.waiting > 0 and self.pacing <= 1
        self.on_wire -= 1
        if self._tokens is not None:
            if outcome != "ok":
                used_tokens = 0.0
            if used_tokens is not None:
                self._tokens.adjust(used_tokens - ticket.tokens, self._clock())
        now = self._clock()
        if outcome == "ok":
            self.window.on_success(saturated)
            rtt = now - ticket.started
            self._srtt = 0.9 * self._srtt + 0.1 * rtt if self._srtt else rtt
            self._min_rtt = min(self._min_rtt, rtt)
            self._n_ok += 1
        elif outcome in CONGESTION:
            if outcome == "http_429":
                self.n_429 += 1
                self._refused.append(ticket.started)
            # A rate limit (429) is met by pacing, overload (503) by the window; so is a
            # timeout while answers are slowing down (queueing), but not one hung
            # request among answers as quick as ever.
            if outcome == "timeout":
                if self._srtt > SLOW_DOWN * self._min_rtt or not self._n_ok:  # (or nothing answered yet)
                    self.window.on_congestion(ticket.seq)
            elif not (outcome == "http_429" and self.adaptive and self._probe(ticket, now)):
                self.window.on_congestion(ticket.seq)
        self.window.release()

    def observe(self, status: int, headers: Mapping[str, Any]) -> None:
        """Reads an answer's rate-limit headers (adaptive only; any status)."""
        if not self.adaptive:
            return
        h = rate_headers(headers)
        if h.limit_requests or h.limit_tokens:
            learned = (h.limit_requests or self.learned_rpm, h.limit_tokens or self.learned_tpm)
            if learned != (self.learned_rpm, self.learned_tpm):
                self.learned_rpm, self.learned_tpm = learned
                self._retune()
        hold = 0.0
        if h.remaining_requests is not None and h.remaining_requests < 1 and h.reset_requests is not None:
            hold = _per_unit(h.reset_requests, h.limit_requests, h.remaining_requests)
        need = self._typical_tokens
        if h.remaining_tokens is not None and h.reset_tokens is not None and need and h.remaining_tokens < need:
            per = _per_unit(h.reset_tokens, h.limit_tokens, h.remaining_tokens)
            hold = max(hold, per * (need - h.remaining_tokens))
        if status in (429, 503):
            hold = max(hold, retry_after_s(headers) or 0.0)
        if hold > 0:
            self.held_until = max(self.held_until, self._clock() + min(hold, self.max_hold_s))

    def state(self) -> dict[str, float]:
        """The limits now, for progress lines and benchmarks."""
        rpm, tpm = self.effective()
        return {
            "window": round(self.window.limit, 2),
            "in_flight": self.on_wire,
            "waiting": self.window.waiting,
            "cuts": self.window.cuts,
            "rpm": rpm,
            "tpm": tpm,
            "held_s": max(0.0, self.held_until - self._clock()),
        }


def _tuned(bucket: TokenBucket | None, limit: float, burst: float, now: float) -> TokenBucket | None:
    """``bucket`` set to ``limit`` per minute (a new one if None; None for no limit)."""
    if not math.isfinite(limit) or limit <= 0:
        return None
    fresh = TokenBucket.per_minute(limit, max(burst, 1.0))
    if bucket is None:
        return fresh
    bucket.retune(fresh.rate, fresh.burst, now)
    return bucket


def _per_unit(reset_s: float, limit: float | None, remaining: float) -> float:
    """Seconds until one more unit is available, from a reset time: OpenAI's reset is
    the time until the bucket is full again, so one unit comes back in
    ``reset / (limit - remaining)``; without a limit, the whole reset time."""
    if limit is not None and limit > remaining:
        return reset_s / (limit - remaining)
    return reset_s


def share_among(limits: Iterable[Limits], n: int) -> None:
    """Gives each of ``limits`` a ``1 / n`` share: ``n`` processes (Ray workers) that
    each run a client on the same endpoint together stay under its limits."""
    for lim in {id(x): x for x in limits}.values():
        lim.share = 1.0 / max(1, n)
