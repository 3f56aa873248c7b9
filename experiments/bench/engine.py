"""One measured run, in a process of its own: a qdsearch campaign or the bare loop.

    python -m experiments.bench.engine qdsearch --base-url URL --children 200 --concurrency 64
    python -m experiments.bench.engine bare     --base-url URL --children 200 --concurrency 64

Prints one JSON line (the last line of stdout) with the run's figures:

- ``children``, ``wall_s`` (the measured phase), ``children_per_s``, ``calls``;
- ``total_s``: for qdsearch, from making the campaign to its end (seed phase and
  setup included); for the bare loop the same as ``wall_s``;
- ``cpu_s``: this process's user + system CPU over the measured phase;
- ``peak_rss_mb``: this process's peak resident set size.

**qdsearch** is the real campaign code, run through the public API
(:func:`qdsearch.run`): :class:`~qdsearch.campaign.Campaign` with the in-process runtime (one :class:`~qdsearch.pipeline.Worker`, its
:class:`~qdsearch.llm.client.LLMClient` limited to ``--concurrency`` and
``runtime.in_flight = --concurrency``), the endpoint embedder against the same fake
endpoint (``/v1/embeddings``, deterministic 16-dim vectors), the default grid
archive, and a :class:`~qdsearch.store.RunStore` in a temporary folder (event log,
stats, snapshots every 50 children). Its measured phase starts when the seed phase
has ended (the first step callback) and ends when ``Campaign.run`` returns.

**bare** is the floor for the same endpoint work: ``--concurrency`` asyncio tasks,
each making child after child with the same three ``LLMClient.chat`` calls a child
costs (operator with the child JSON schema, respond, judge with the verdict
schema), on messages rendered once by the real operator and judge. No parsing,
embedding, archive, or log.

``--runtime process|ray`` (qdsearch runs) puts the jobs on ``--workers`` worker
processes or Ray actors instead of the in-process runtime: the driver keeps the
campaign, and ``cpu_s`` is then the driver's CPU alone.

``--profile FILE`` writes a cProfile of the measured phase (the driver's).

``--local-llm`` answers every chat call in this process, with the endpoint's own
scripted answers (:func:`experiments.bench.server.responder`) parsed into the SDK's
``ChatCompletion``, instead of over HTTP (embeddings still go to the endpoint). Then
``llm_cpu_s`` is the CPU spent making those answers, and ``cpu_s - llm_cpu_s`` is what
the run costs besides the model: for qdsearch the engine's own work plus
``LLMClient.chat``'s, for the bare loop ``LLMClient.chat``'s alone; their difference
is the engine's own CPU per child, free of the HTTP stack's share and of the
endpoint process competing for the same cores.

``--timers`` (qdsearch runs) adds ``timers_ms_per_child``: the CPU time per child spent
in each of the engine's per-child functions (``tell`` and its measures and archive
add, the injection scan, the judge prompt, snapshots, the event log...), a nested
function also counted in its caller's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import qdsearch  # noqa: E402
from qdsearch.campaign import StepStats  # noqa: E402
from qdsearch.config import CampaignConfig, EndpointConfig, from_dict  # noqa: E402
from qdsearch.judge import VERDICT_SCHEMA, render_judge  # noqa: E402
from qdsearch.llm.client import LLMClient  # noqa: E402
from qdsearch.operators import BUILTIN, CHILD_SCHEMA  # noqa: E402
from qdsearch.types import Sample  # noqa: E402

__all__ = ["SEEDS", "bench_config", "run_bare", "run_qdsearch"]

SEEDS = [
    {"instruction": "Explain how tides are caused by the moon.", "output": "Gravity of the moon pulls the oceans."},
    {"instruction": "Write a recipe for a simple tomato soup."},
    {"instruction": "Describe the rules of volleyball briefly.", "output": "Two teams hit a ball over a net."},
    {"instruction": "Summarise the causes of the French Revolution."},
    {"instruction": "Give advice for a first job interview.", "output": "Prepare, be on time, ask questions."},
    {"instruction": "Explain what a prime number is to a child."},
    {"instruction": "List three ways to save water at home."},
    {"instruction": "Compare a violin and a cello for a beginner."},
]


_LLM_CPU = [0.0]  # CPU seconds spent answering chat calls in-process (--local-llm)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def endpoint_dict(base_url: str, concurrency: int) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "model": "bench-model",
        "json_mode": "json_object",
        "concurrency": concurrency,
        "timeout_s": 300.0,
        "backoff_s": 0.05,
    }


def bench_config(
    base_url: str, out_dir: Path, children: int, concurrency: int, runtime: str = "inprocess", workers: int = 2
) -> CampaignConfig:
    """The benchmark campaign: defaults except the endpoint, budget and runtime (in-process unless told)."""
    seeds = out_dir / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return from_dict(
        {
            "run": {"name": "bench", "out_dir": str(out_dir / "archives"), "seed": 0},
            "endpoint": endpoint_dict(base_url, concurrency),
            "embedding": {"backend": "endpoint", "base_url": base_url, "model": "bench-embed"},
            "seeds": {"path": str(seeds)},
            "budget": {"max_children": children},
            "runtime": {"kind": runtime, "in_flight": concurrency, "workers": workers},
        }
    )


@contextmanager
def _profiled(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        prof.dump_stats(path)


def run_qdsearch(
    base_url: str,
    children: int,
    concurrency: int,
    profile: str | None = None,
    runtime: str = "inprocess",
    workers: int = 2,
) -> dict[str, Any]:
    """Runs one campaign of ``children`` children; returns its figures (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="qds-bench-") as tmp:
        cfg = bench_config(base_url, Path(tmp), children, concurrency, runtime, workers)
        marks: dict[str, float] = {}

        def on_step(st: StepStats) -> None:
            if "loop" not in marks:
                marks["loop"] = time.perf_counter()
                marks["cpu"] = _cpu_s()
                _LLM_CPU[0] = 0.0
                for slot in _TIMED.values():
                    slot[:] = [0.0, 0]

        t0 = time.perf_counter()
        with _profiled(profile):
            run = qdsearch.run(cfg, on_step=on_step)
        t1 = time.perf_counter()
        cpu = _cpu_s() - marks["cpu"]
        c = run.state  # read after the clock stopped: replaying the log is not the campaign's time
        wall = t1 - marks["loop"]
        return {
            "kind": "qdsearch",
            "children": c["children"],
            "accepted": c["accepted"],
            "calls": c["calls"],
            "child_calls": sum(r["calls"] for r in c["ops"].values()),
            "failed_calls": c["failed_calls"],
            "rejects": c["rejects"],
            "elites": c["elites"],
            "wall_s": wall,
            "total_s": t1 - t0,
            "children_per_s": c["children"] / wall,
            "cpu_s": cpu,
            "peak_rss_mb": _peak_rss_mb(),
        }


def _bare_messages() -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    rng = np.random.default_rng(0)
    parent = Sample(id="s0", instruction=SEEDS[0]["instruction"], response=SEEDS[0]["output"])
    others = tuple(Sample(id=f"s{i}", instruction=s["instruction"]) for i, s in enumerate(SEEDS[1:5], 1))
    op = BUILTIN["add_constraints"].render(parent, others, rng, "")
    child = Sample(id="c0", instruction=parent.instruction + " Use exactly three bullet points.", parent_id="s0")
    respond = [{"role": "user", "content": child.prompt_text()}]
    child = Sample(id="c0", instruction=child.instruction, response="Here is a careful answer with useful words.")
    judge = render_judge(child, "both", rng)
    return list(op), respond, list(judge)


def run_bare(base_url: str, children: int, concurrency: int, profile: str | None = None) -> dict[str, Any]:
    """The bare loop (module docstring); returns its figures."""
    op, respond, judge = _bare_messages()
    client = LLMClient(EndpointConfig(**endpoint_dict(base_url, concurrency)))
    ids = itertools.count()

    async def worker() -> None:
        while next(ids) < children:
            await client.chat(op, tag="add_constraints", json_schema=CHILD_SCHEMA)
            await client.chat(respond, tag="respond")
            await client.chat(judge, tag="judge", json_schema=VERDICT_SCHEMA["both"], temperature=0.0, max_tokens=256)

    async def go() -> None:
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.aclose()

    out = _timed_loop("bare", go, children, profile)
    return out | {"calls": client.usage.calls, "child_calls": client.usage.calls, "failed_calls": client.usage.failed}


def _timed_loop(kind: str, go: Any, children: int, profile: str | None) -> dict[str, Any]:
    """Runs the loop coroutine function ``go`` and returns the figures of a loop run
    (module docstring); the caller adds its call counts."""
    cpu0, t0 = _cpu_s(), time.perf_counter()
    _LLM_CPU[0] = 0.0
    with _profiled(profile):
        asyncio.run(go())
    wall = time.perf_counter() - t0
    return {
        "kind": kind,
        "children": children,
        "wall_s": wall,
        "total_s": wall,
        "children_per_s": children / wall,
        "cpu_s": _cpu_s() - cpu0,
        "peak_rss_mb": _peak_rss_mb(),
    }


_TIMED: dict[str, list[float]] = {}  # label -> [CPU seconds, calls] (--timers)


def run_sdk(base_url: str, children: int, concurrency: int, profile: str | None = None) -> dict[str, Any]:
    """The loop a user would write without qdsearch: ``concurrency`` asyncio tasks making
    the same three requests per child (the same bodies ``LLMClient`` sends) with the plain
    openai SDK (``AsyncOpenAI`` on its aiohttp transport, ``chat.completions.create``),
    reading each reply's text. No retries of its own, no limiter, no accounting."""
    import openai

    from qdsearch.llm.client import response_format

    op, respond, judge = _bare_messages()
    cfg = EndpointConfig(**endpoint_dict(base_url, concurrency))
    base = {"model": cfg.model, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
    bodies = [
        {**base, "messages": op, "response_format": response_format(cfg.json_mode, CHILD_SCHEMA)},
        {**base, "messages": respond},
        {**base, "messages": judge, "temperature": 0.0, "max_tokens": 256,
         "response_format": response_format(cfg.json_mode, VERDICT_SCHEMA["both"])},
    ]  # fmt: skip
    ids = itertools.count()
    calls = [0]

    async def go() -> None:
        client = openai.AsyncOpenAI(
            base_url=base_url, api_key="EMPTY", max_retries=2, timeout=cfg.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=cfg.timeout_s),
        )  # fmt: skip

        async def worker() -> None:
            while next(ids) < children:
                for body in bodies:
                    resp = await client.chat.completions.create(**body)
                    assert resp.choices[0].message.content is not None
                    calls[0] += 1

        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.close()

    out = _timed_loop("sdk", go, children, profile)
    return out | {"calls": calls[0], "child_calls": calls[0], "failed_calls": 0}


def _timers() -> None:
    """Wraps the engine's per-child functions with CPU-time counters (``--timers``): the
    measured phase's CPU per child in each, nested ones counted in their callers too."""
    import functools

    import qdsearch.campaign.loop as loop
    import qdsearch.campaign.state as state
    import qdsearch.judge as judge
    import qdsearch.judge.screening as screening
    import qdsearch.llm.records as records
    import qdsearch.operators.evol as evol
    import qdsearch.store as store

    def wrap(obj: Any, name: str, label: str) -> None:
        f = getattr(obj, name)
        slot = _TIMED.setdefault(label, [0.0, 0])

        @functools.wraps(f)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return f(*args, **kwargs)
            finally:
                slot[0] += time.thread_time() - t0
                slot[1] += 1

        setattr(obj, name, timed)

    wrap(state.CampaignState, "tell", "tell")
    wrap(state, "compute_measures", "tell/compute_measures")
    wrap(state, "add_sample", "tell/add_sample")
    wrap(store.RunStore, "append", "RunStore.append")
    wrap(loop.Campaign, "snapshot", "snapshot")
    wrap(store.RunStore, "snapshot", "snapshot/RunStore.snapshot")
    wrap(loop, "elites_frame", "snapshot/elites_frame")
    wrap(screening, "scan", "injection scan")
    wrap(judge, "render_judge", "render_judge")
    wrap(evol, "check_instruction", "check_instruction")
    wrap(state.CampaignState, "ask", "CampaignState.ask")
    wrap(records.CallRecord, "to_dict", "CallRecord.to_dict")


def _local_llm() -> None:
    """Answers chat calls in-process (``--local-llm``, module docstring)."""
    from openai.types.chat import ChatCompletion

    from experiments.bench import server
    from qdsearch.llm import client as llm_client

    async def create_chat(client: Any, body: Any) -> Any:
        t0 = time.thread_time()
        content = server.responder(body)
        p_in, p_out = server._words(body), len(content.split())
        reply = ChatCompletion.model_validate(
            {
                "id": "chatcmpl-local",
                "object": "chat.completion",
                "created": 0,
                "model": str(body.get("model") or "bench-model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": p_in, "completion_tokens": p_out, "total_tokens": p_in + p_out},
            }
        )
        _LLM_CPU[0] += time.thread_time() - t0
        await asyncio.sleep(0)  # a real call yields to the loop
        return reply

    llm_client.create_chat = create_chat  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # measured calls and spend: no reply from the request cache
    ap = argparse.ArgumentParser(description="one measured benchmark run (see experiments/bench/engine.py)")
    ap.add_argument("kind", choices=["qdsearch", "bare", "sdk"])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--children", type=int, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--profile", default=None, help="write a cProfile of the measured run here")
    ap.add_argument("--local-llm", action="store_true", help="answer chat calls in-process (module docstring)")
    ap.add_argument("--timers", action="store_true", help="CPU per child in the engine's functions (module docstring)")
    ap.add_argument(
        "--runtime", default="inprocess", choices=["inprocess", "ray", "process"], help="qdsearch runs: runtime.kind"
    )
    ap.add_argument("--workers", type=int, default=2, help="qdsearch runs with --runtime ray or process: runtime.workers")
    a = ap.parse_args(argv)
    if a.local_llm:
        _local_llm()
    if a.timers:
        _timers()
    fn = {"qdsearch": run_qdsearch, "bare": run_bare, "sdk": run_sdk}[a.kind]
    if a.kind == "qdsearch":
        out = run_qdsearch(a.base_url, a.children, a.concurrency, a.profile, a.runtime, a.workers)
    else:
        out = fn(a.base_url, a.children, a.concurrency, a.profile)
    if a.local_llm:
        out["llm_cpu_s"] = _LLM_CPU[0]  # over the measured phase, like cpu_s
    if a.timers:
        n = max(1, out["children"])
        out["timers_ms_per_child"] = {k: round(1000 * v[0] / n, 3) for k, v in sorted(_TIMED.items())}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
