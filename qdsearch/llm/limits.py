"""Rate limits and adaptive concurrency for one endpoint client.

A paid endpoint limits requests per minute (RPM) and tokens per minute (TPM), and
answers 429 above them. A client that only caps how many requests are in flight
either leaves throughput unused (cap too low) or spends a share of its calls on 429s
and backoff (cap too high). :class:`Limits` keeps a client just under the limits:

- two token buckets (:class:`TokenBucket`), one for requests and one for tokens,
  pace the starts of requests so that at most ``rpm`` requests and (up to one call's
  excess, see :class:`TokenBucket`) ``tpm`` tokens start in any 60 s window;
- an AIMD window (:class:`AdaptiveConcurrency`) sets how many requests may be in
  flight: it starts at 4 (within the floor and the ceiling), grows by one per answered
  request while it is the bottleneck (slow start) and then by one per window of answers, and halves on a 429,
  a 503 or a timeout (at most once per round trip), never above the configured
  ``concurrency`` (the ceiling) nor below ``min_concurrency`` (the floor);
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
behaviour is tested without waiting.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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

CONGESTION = frozenset({"http_429", "http_503", "timeout"})  # outcomes that halve the window
BETA = 0.5  # the window's multiplicative decrease
INITIAL_WINDOW = 4  # the adaptive window's start (within floor and ceiling), as TCP's RFC 3390
BYTES_PER_TOKEN = 4.0
PER_MESSAGE = 4  # role markers and separators of one chat message
MAX_HOLD_S = 60.0  # no header holds the client longer than this (a bogus reset)

# ------------------------------------------------------------------ headers

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: object) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value, or None if it is not one.

    OpenAI writes Go durations (``"6m0s"``, ``"1s"``, ``"20ms"``, ``"1h2m3.5s"``);
    other servers send plain seconds (``"0.5"``). Negative, empty, non-finite or
    malformed values give None, never an exception.
    """
    if not isinstance(text, str | bytes):
        return None
    s = (text.decode("latin-1") if isinstance(text, bytes) else text).strip()
    if len(s) > 64:
        return None
    if _NUMBER.fullmatch(s):
        v = float(s)
    else:
        pos, v = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                return None
            v += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == 0 or pos != len(s):
            return None
    return v if math.isfinite(v) else None


def format_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset time: ``"20ms"`` below a second, else
    ``"1h2m3.5s"`` style (used by the fake endpoint of the tests)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    out = f"{int(h)}h" if h else ""
    out += f"{int(m)}m" if h or m else ""
    return out + f"{round(s, 3):g}s"


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    v = headers.get(name)
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` headers, if present.

    ``Retry-After`` may be a number of seconds or an HTTP date. Unparsable values
    give None.
    """
    if headers is None:
        return None
    ms = _number(headers, "retry-after-ms")
    if ms is not None:
        return ms / 1000.0
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RateHeaders:
    """The ``x-ratelimit-*`` headers of one answer (None: absent or malformed)."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None


def rate_headers(headers: Mapping[str, Any]) -> RateHeaders:
    """Reads OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.

    ``headers`` is case-insensitive (an HTTP client's) or has lower-case names.
    """
    return RateHeaders(
        _number(headers, "x-ratelimit-limit-requests"),
        _number(headers, "x-ratelimit-remaining-requests"),
        parse_duration(headers.get("x-ratelimit-reset-requests")),
        _number(headers, "x-ratelimit-limit-tokens"),
        _number(headers, "x-ratelimit-remaining-tokens"),
        parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )


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
        endpoint advertises, times :attr:`share`."""
        rpm = min(self.rpm, self.learned_rpm or math.inf) * self._share
        tpm = min(self.tpm, self.learned_tpm or math.inf) * self._share
        return rpm, tpm

    def _retune(self) -> None:
        now = self._clock()
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
        if outcome == "ok":
            self.window.on_success(saturated)
        elif outcome in CONGESTION:
            self.n_429 += outcome == "http_429"
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
