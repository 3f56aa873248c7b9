"""Rate limits and adaptive concurrency (qdsearch.llm.limits), alone and in a client
against the fake endpoint's RPM/TPM limiter over real HTTP."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import EndpointConfig
from qdsearch.llm import LLMClient
from qdsearch.llm.limits import (
    AdaptiveConcurrency,
    Limits,
    TokenBucket,
    estimate_tokens,
    format_duration,
    parse_duration,
    rate_headers,
    retry_after_s,
    share_among,
)
from tests.fakes.openai_server import FakeOpenAI, RateLimit

MSG = [{"role": "user", "content": "say hello"}]
T = TypeVar("T")


class FakeClock:
    """Virtual time for the limits' clock and sleep: :meth:`run` lets every task run
    until all of them sleep, then jumps to the earliest wake-up (no real waiting)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._n = itertools.count()

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + max(0.0, s), next(self._n), fut))
        await fut

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        async def drive() -> T:
            task = asyncio.ensure_future(coro)
            while not task.done():
                for _ in range(20):  # every ready task runs until it sleeps or ends
                    await asyncio.sleep(0)
                if self._sleepers and not task.done():
                    wake, _, fut = heapq.heappop(self._sleepers)
                    self.t = max(self.t, wake)
                    fut.set_result(None)
            return task.result()

        return asyncio.run(drive())


# ------------------------------------------------------------------ header parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("7.66s", 7.66),
        ("150us", 150e-6),
        ("0.5", 0.5),
        ("12", 12.0),
        (" 2s ", 2.0),
    ],
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1x", "1s2", "m1s", "1.2.3s", "inf", "nan", "1e400", None, 3])
def test_parse_duration_rejects(text: Any) -> None:
    assert parse_duration(text) is None


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_format_then_parse_is_identity(seconds: float) -> None:
    back = parse_duration(format_duration(seconds))
    assert back is not None and abs(back - seconds) <= 0.001


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])), min_size=1, max_size=6
    ),
)
def test_go_durations_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


@given(st.text(max_size=80))
def test_parse_duration_never_raises(text: str) -> None:
    value = parse_duration(text)
    assert value is None or (math.isfinite(value) and value >= 0)


@given(st.dictionaries(st.sampled_from(_names := [
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
    "retry-after", "retry-after-ms",
]), st.text(max_size=20)))  # fmt: skip
def test_rate_headers_never_raise(headers: dict[str, str]) -> None:
    h = rate_headers(headers)
    for v in vars(h).values():
        assert v is None or (math.isfinite(v) and v >= 0)
    ra = retry_after_s(headers)
    assert ra is None or ra >= 0


def test_rate_headers_openai_example() -> None:
    h = rate_headers(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert (h.limit_requests, h.remaining_requests, h.reset_requests) == (60, 59, 1.0)
    assert (h.limit_tokens, h.remaining_tokens, h.reset_tokens) == (150000, 149984, 360.0)
    assert rate_headers({"x-ratelimit-limit-requests": "-5", "x-ratelimit-reset-tokens": "soon"}) == rate_headers({})


# ------------------------------------------------------------------ token bucket

arrivals = st.lists(
    st.tuples(st.floats(0, 3, allow_nan=False), st.floats(0.1, 40, allow_nan=False)), min_size=1, max_size=60
)


def _schedule(bucket: TokenBucket, reqs: list[tuple[float, float]], refund: float = 0.0) -> list[tuple[float, float]]:
    """(start time, cost) of each request arriving ``gap`` after the previous one;
    ``refund`` of each cost is given back when the request starts (a reply that used
    less than its estimate)."""
    t, out = 0.0, []
    for gap, cost in reqs:
        t += gap
        at = bucket.earliest(cost, t)
        assert at >= t
        bucket.commit(cost, at)
        if refund:
            bucket.adjust(-refund * cost, at)
        out.append((at, cost * (1 - refund)))
    return out


@settings(max_examples=300)
@given(arrivals, st.floats(0.5, 50), st.floats(1, 30), st.sampled_from([0.0, 0.5]))
def test_bucket_never_passes_its_bound_in_any_window(
    reqs: list[tuple[float, float]], rate: float, burst: float, refund: float
) -> None:
    starts = _schedule(TokenBucket(rate, burst), reqs, refund)
    times = [s for s, _ in starts]
    assert refund or times == sorted(times)  # first come, first served (a refund lets a later call in early)
    starts.sort()
    for i in range(len(starts)):
        total = 0.0
        for j in range(i, len(starts)):
            total += starts[j][1]
            excess = max(0.0, starts[j][1] - burst)  # a call larger than the burst borrows
            assert total <= burst + rate * (starts[j][0] - starts[i][0]) + excess + 1e-6


@settings(max_examples=200)
@given(st.integers(2, 2000), st.lists(st.floats(0, 0.2, allow_nan=False), min_size=1, max_size=300))
def test_per_minute_bucket_never_passes_the_limit_in_any_minute(limit: int, gaps: list[float]) -> None:
    starts = [s for s, _ in _schedule(TokenBucket.per_minute(limit, 1.0), [(g, 1.0) for g in gaps])]
    j = 0
    for i, s in enumerate(starts):  # the requests starting in [s, s + 60)
        while j < len(starts) and starts[j] < s + 60:
            j += 1
        assert j - i <= limit


def test_bucket_lets_a_full_burst_go_at_once_then_paces() -> None:
    b = TokenBucket(rate=10, burst=5)
    starts = []
    for _ in range(8):
        starts.append(b.earliest(1, 0.0))
        b.commit(1, starts[-1])
    assert starts[:5] == [0.0] * 5 and starts[5:] == pytest.approx([0.1, 0.2, 0.3])
    b.adjust(-100, 0.3)  # a refund never fills it past its size
    assert b.level(10.0) == 5


# ------------------------------------------------------------------ AIMD window


def test_window_slow_start_then_additive_increase_then_halving() -> None:
    w = AdaptiveConcurrency(ceiling=32, floor=2)
    assert w.limit == 4  # the initial window
    assert AdaptiveConcurrency(ceiling=3).limit == 3 and AdaptiveConcurrency(ceiling=32, floor=6).limit == 6
    for _ in range(4):
        w.on_success(saturated=True)
    assert w.limit == 8  # slow start: one more per answer
    w.on_success(saturated=False)
    assert w.limit == 8  # not the bottleneck: no growth
    seq = 0
    w._seq = seq = 10
    w.on_congestion(seq)
    assert w.limit == 4 and w.cuts == 1
    w.on_congestion(seq)  # news from before the cut: acted on already
    assert w.limit == 4 and w.cuts == 1
    for _ in range(4):
        w.on_success(saturated=True)
    assert w.limit == pytest.approx(5, abs=0.1)  # additive: about one per window of answers


@given(
    st.lists(st.sampled_from(["ok", "ok", "ok", "busy", "idle"]), max_size=300), st.integers(1, 8), st.integers(1, 64)
)
def test_window_stays_between_floor_and_ceiling(events: list[str], floor: int, ceiling: int) -> None:
    w = AdaptiveConcurrency(ceiling, floor)
    for e in events:
        w._seq += 1
        if e == "busy":
            w.on_congestion(w._seq)
        else:
            w.on_success(saturated=e == "ok")
        assert min(floor, ceiling) <= w.limit <= ceiling


def test_fixed_window_is_a_semaphore() -> None:
    w = AdaptiveConcurrency(ceiling=3, floor=1, adaptive=False)
    w._seq = 5
    w.on_congestion(5)
    w.on_success(True)
    assert w.limit == 3


def test_window_bounds_in_flight_and_passes_slots_of_cancelled_waiters() -> None:
    async def go() -> tuple[int, int]:
        w = AdaptiveConcurrency(ceiling=3, floor=3)
        peak = 0
        now = 0

        async def job() -> None:
            nonlocal peak, now
            await w.acquire()
            now += 1
            peak = max(peak, now)
            await asyncio.sleep(0.001)
            now -= 1
            w.release()

        tasks = [asyncio.ensure_future(job()) for _ in range(20)]
        await asyncio.sleep(0)
        for t in tasks[5:9]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak, w.held

    peak, held = asyncio.run(go())
    assert peak == 3 and held == 0


# ------------------------------------------------------------------ Limits with a fake clock


def _drive(limits: Limits, clock: FakeClock, n: int, outcome: Any = "ok", latency: Any = 1.0) -> list[float]:
    """Starts ``n`` requests, all wanting to go at once, each answered ``latency`` (or
    ``latency(i)``) later with ``outcome`` (or ``outcome(i)``); returns their start times."""
    starts: list[float] = []

    async def one(i: int) -> None:
        ticket = await limits.start(10.0)
        starts.append(clock())
        await clock.sleep(latency(i) if callable(latency) else latency)
        limits.finish(ticket, outcome(i) if callable(outcome) else outcome, 8.0)

    async def go() -> None:
        await asyncio.gather(*(one(i) for i in range(n)))

    clock.run(go())
    return starts


def test_limits_pace_requests_to_the_rpm() -> None:
    clock = FakeClock()
    limits = Limits(64, rpm=600, adaptive=False, clock=clock, sleep=clock.sleep)
    starts = sorted(_drive(limits, clock, 100, latency=0.0))
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 9.5 <= rate <= 10.0


@pytest.mark.parametrize("overload", ["http_503", "timeout"])
def test_scripted_overload_cuts_the_window_once_per_round_and_it_grows_back(overload: str) -> None:
    clock = FakeClock()
    limits = Limits(32, adaptive=True, clock=clock, sleep=clock.sleep)
    _drive(limits, clock, 40)
    if overload == "timeout":  # queueing: answers slow down before requests time out
        _drive(limits, clock, 40, latency=4.0)
    grown = limits.window.limit
    assert grown > 8
    _drive(limits, clock, 20, outcome=overload)  # 20 answers, but at most a cut or two per round
    assert 1 <= limits.window.cuts <= 3 and limits.window.limit >= grown / 8
    cut = limits.window.limit
    _drive(limits, clock, 60)
    assert limits.window.limit > cut
    assert limits.n_429 == 0 and limits.probed_rpm is None


def test_a_hung_request_among_quick_answers_is_no_overload() -> None:
    clock = FakeClock()
    limits = Limits(32, adaptive=True, clock=clock, sleep=clock.sleep)
    _drive(limits, clock, 40, outcome=lambda i: "timeout" if i % 10 == 9 else "ok")
    assert limits.window.cuts == 0 and limits.window.limit > 8
    silent = Limits(32, adaptive=True, clock=clock, sleep=clock.sleep)
    _drive(silent, clock, 4, outcome="timeout")  # nothing answered at all: that is overload
    assert silent.window.cuts == 1 and silent.window.limit == 2


def test_scripted_429s_pace_to_what_got_through_and_probe_upwards() -> None:
    clock = FakeClock()
    limits = Limits(8, adaptive=True, clock=clock, sleep=clock.sleep)
    _drive(limits, clock, 80, latency=lambda i: 0.75 + (i % 7) / 12)  # 8 in flight of 1 s: 480 a minute
    _drive(limits, clock, 8, outcome="http_429", latency=0.0)  # one round of 429s: one probe
    assert limits.probed_rpm == pytest.approx(0.95 * 480, rel=0.15)  # (answers come in batches here)
    assert limits.window.cuts == 0 and limits.window.limit == 8 and limits.n_429 == 8
    first = limits.probed_rpm
    starts = sorted(_drive(limits, clock, 100, latency=0.0))
    rate = 60 * (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(first, rel=0.05)  # paced to the probed rate
    assert limits.effective()[0] > first  # which grows while no 429 comes
    # few answers of late, but quick ones: never below what the floor window gets through
    floored = Limits(8, adaptive=True, min_concurrency=2, clock=clock, sleep=clock.sleep)
    _drive(floored, clock, 4, latency=0.1)
    clock.run(clock.sleep(4.0))
    _drive(floored, clock, 1, outcome="http_429", latency=0.0)
    assert floored.probed_rpm == pytest.approx(60 * 2 / 0.1)
    fresh = Limits(8, adaptive=True, clock=clock, sleep=clock.sleep)
    _drive(fresh, clock, 2, outcome="http_429")  # no answers yet to measure: the window is cut
    assert fresh.probed_rpm is None and fresh.window.cuts == 1


def test_retry_after_holds_every_new_request() -> None:
    clock = FakeClock()
    limits = Limits(8, clock=clock, sleep=clock.sleep)
    limits.observe(429, {"retry-after": "2"})
    assert limits.state()["held_s"] == pytest.approx(2)
    t0 = clock()
    starts = _drive(limits, clock, 3, latency=0.0)
    assert min(starts) >= t0 + 2
    limits.observe(429, {"retry-after": "600"})
    assert limits.state()["held_s"] == pytest.approx(60)  # capped


def test_remaining_zero_holds_for_one_unit_and_limits_are_learned() -> None:
    clock = FakeClock()
    limits = Limits(8, clock=clock, sleep=clock.sleep)
    limits.observe(
        200,
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "60s",
        },
    )
    assert limits.state()["held_s"] == pytest.approx(1.0)  # a full bucket in 60 s: one request per second
    assert limits.effective() == (60, math.inf)
    share_among([limits, limits], 2)
    assert limits.effective() == (30, math.inf)
    fixed = Limits(8, rpm=100, adaptive=False, clock=clock, sleep=clock.sleep)
    fixed.observe(429, {"retry-after": "5", "x-ratelimit-limit-requests": "10"})
    assert fixed.effective() == (100, math.inf) and fixed.state()["held_s"] == 0


def test_too_few_remaining_tokens_hold_until_a_call_fits() -> None:
    clock = FakeClock()
    limits = Limits(8, clock=clock, sleep=clock.sleep)
    _drive(limits, clock, 1, latency=0.0)  # a typical call: 10 tokens
    headers = {
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "4",
        "x-ratelimit-reset-tokens": "1m",
    }
    limits.observe(200, headers)
    # 5996 tokens come back in 60 s: one per 10 ms, and 6 more are needed
    assert limits.state()["held_s"] == pytest.approx(6 * 60 / 5996)
    assert limits.effective() == (math.inf, 6000)
    limits.observe(503, {"retry-after-ms": "2500"})
    assert limits.state()["held_s"] == pytest.approx(2.5)


def test_token_estimate_counts_bytes_and_max_tokens() -> None:
    assert estimate_tokens([{"role": "user", "content": "a" * 400}], 100) == 4 + 100 + 100
    assert estimate_tokens([{"role": "user", "content": "日本" * 10}], 0) == 4 + 60 / 4
    assert estimate_tokens([], 7) == 7


# ------------------------------------------------------------------ a client against the limited fake endpoint


def _endpoint(url: str, **kw: Any) -> EndpointConfig:
    base: dict[str, Any] = {"base_url": url, "model": "fake-model", "backoff_s": 0.01, "timeout_s": 5.0}
    return EndpointConfig(**(base | kw))


def _campaign(fake: FakeOpenAI, cfg: EndpointConfig, n: int) -> tuple[float, int, int]:
    """(seconds, calls ok, answers 429) of ``n`` calls all submitted at once."""
    client = LLMClient(cfg)

    async def go() -> int:
        try:
            res = await asyncio.gather(*(client.chat(MSG, max_tokens=8) for _ in range(n)), return_exceptions=True)
        finally:
            await client.aclose()
        return sum(not isinstance(r, BaseException) for r in res)

    t = time.perf_counter()
    ok = asyncio.run(go())
    return time.perf_counter() - t, ok, fake.stats.get("429", 0)


def test_client_with_rpm_stays_under_the_limit(fake_openai: Any) -> None:
    fake = fake_openai(latency_s=0.05)
    fake.rate_limit = RateLimit(rpm=1200, burst_s=1.0)  # 20 per second, bursts of 20
    wall, ok, refused = _campaign(fake, _endpoint(fake.base_url, concurrency=32, rpm=1200), 50)
    assert ok == 50 and refused == 0
    assert wall >= 2.4  # paced by the client: 49 gaps of 1/20 s (the fake alone would let 20 go at once)


def test_client_learns_the_limit_from_headers(fake_openai: Any) -> None:
    fake = fake_openai(latency_s=0.05)
    fake.rate_limit = RateLimit(rpm=1200, burst_s=1.0)
    _, ok, refused = _campaign(fake, _endpoint(fake.base_url, concurrency=32), 50)
    assert ok == 50 and refused <= 5  # only the first answers, before the limit is known


def test_fixed_client_of_before_gets_refused(fake_openai: Any) -> None:
    fake = fake_openai(latency_s=0.05)
    fake.rate_limit = RateLimit(rpm=1200, burst_s=1.0)
    cfg = _endpoint(fake.base_url, concurrency=32, adaptive_concurrency=False, max_retries=500, max_backoff_s=0.05)
    _, ok, refused = _campaign(fake, cfg, 50)
    assert ok == 50 and refused >= 20  # what the limits above avoid


def test_client_under_tpm_and_usage_correction(fake_openai: Any) -> None:
    fake = fake_openai(latency_s=0.02)
    # Each call: 10 tokens charged by the fake when it arrives (2 words + 8 max_tokens),
    # 14.25 estimated by the client (4 + 9 bytes / 4 + 8), 4 used (the reply's usage).
    fake.rate_limit = RateLimit(tpm=6000, burst_s=0.5)
    cfg = _endpoint(fake.base_url, concurrency=16, tpm=6000)
    wall, ok, refused = _campaign(fake, cfg, 40)
    assert ok == 40 and refused == 0
    # 100 tokens a second, a burst of 60: paced by the 4 used, not the 14.25 estimated
    # (which would take (40 * 14.25 - 60) / 100 = 5.1 s)
    assert 0.8 * (40 * 4 - 60) / 100 <= wall < 4.5
