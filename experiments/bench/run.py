"""qdsearch performance benchmark (issue 7): engine vs. bare loop, vs. endpoint limit, vs. distilabel.

    .venv/bin/python -m experiments.bench            # full run (about 5 minutes on 2 cores)
    .venv/bin/python -m experiments.bench --quick    # tiny sizes: checks that it runs

Everything is measured side by side in one run against one fake OpenAI-compatible
endpoint (:mod:`experiments.bench.server`) that runs as a separate process on
127.0.0.1, so its CPU is not charged to the measured client; the benchmark starts
it and stops it (also on error). Every measured run is a fresh process
(:mod:`experiments.bench.engine`, :mod:`experiments.bench.distil`) except with
``--quick``, where they run in this process to save start-up time.

Sections (the figures printed, one ``name: value`` line each, then a table):

1. **overhead**: qdsearch children/s (operator + respond + judge per child, with
   endpoint embedding, archive insertion and the event log) vs. the bare asyncio
   loop making the same 3 calls per child with the same ``LLMClient``, at
   concurrency 16 and 64, with a zero-latency endpoint (pure client CPU cost: the
   worst case for the engine) and with 0.25 s per call.
2. **limit**: achieved children/s at 1 s per call and concurrency 64 vs. the
   endpoint limit ``concurrency / (3 x latency)``.
3. **distilabel**: qdsearch vs. distilabel's Evol-Instruct pipeline making the same
   number of evolutions (3 calls each) on the same endpoint (1 s per call, 64
   slots), both timed end to end; skipped with a message if distilabel is not
   installed (``pip install 'qdsearch[bench]'``).
4. **micro**: sentence-transformers embedding texts/s (2 threads), archive
   insertion µs per child, snapshot time of 10k elites, peak RSS of a 10k-child run
   against the zero-latency endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["Endpoint", "Sizes", "main"]


@dataclass(frozen=True)
class Sizes:
    overhead_children: int = 1000  # per run at zero latency
    overhead_slow_children: int = 400  # per run at 0.25 s/call (c=64; c=16 runs a quarter); 0: none
    slow_latency_s: float = 0.25
    repeats: int = 2  # overhead runs per kind (alternating; the best is kept)
    limit_latency_s: float = 1.0
    limit_concurrency: int = 64
    limit_children: int = 192  # 3 full waves of 64
    distilabel_evolutions: int = 192
    embed_texts: int = 512
    insert_adds: int = 2000
    insert_repeats: int = 5
    snapshot_elites: int = 10_000
    rss_children: int = 10_000
    subprocess: bool = True


QUICK = Sizes(
    overhead_children=24,
    overhead_slow_children=0,  # no 0.25 s rows
    slow_latency_s=0.02,
    repeats=1,
    limit_latency_s=0.05,
    limit_concurrency=8,
    limit_children=16,
    distilabel_evolutions=16,
    embed_texts=16,
    insert_adds=100,
    insert_repeats=1,
    snapshot_elites=500,
    rss_children=60,
    subprocess=False,
)


class Endpoint:
    """The fake endpoint process (see :mod:`experiments.bench.server`)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Endpoint:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.bench.server", "--latency", "0", "--slots", "64"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the benchmark endpoint did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            out: dict[str, Any] = json.loads(r.read())
        return out

    def configure(self, latency_s: float, slots: int) -> None:
        self._call("/bench/config", {"latency_s": latency_s, "slots": slots})

    def stats(self) -> dict[str, Any]:
        return self._call("/bench/stats")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        with contextlib.suppress(OSError):
            if p.stdin is not None:
                p.stdin.close()  # the server exits when its stdin closes
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.stdout is not None:
            p.stdout.close()


@contextlib.contextmanager
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    try:
        yield ep.start()
    finally:
        ep.stop()


def _last_json(out: str, what: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"{what}: no result line in its output")


def _sub(module: str, args: list[str], what: str, timeout: float = 900) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"),
    )
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return _last_json(res.stdout, what)


def measure(sizes: Sizes, ep: Endpoint, kind: str, children: int, concurrency: int) -> dict[str, Any]:
    """One qdsearch or bare run (a fresh process unless ``--quick``)."""
    if sizes.subprocess:
        args = [kind, "--base-url", ep.base_url, "--children", str(children), "--concurrency", str(concurrency)]
        return _sub("experiments.bench.engine", args, f"{kind} run")
    from experiments.bench import engine

    fn = engine.run_qdsearch if kind == "qdsearch" else engine.run_bare
    return fn(ep.base_url, children, concurrency)


def compare(sizes: Sizes, ep: Endpoint, latency_s: float, concurrency: int, children: int) -> dict[str, Any]:
    """qdsearch and bare, alternating, ``repeats`` times each; the best run of each kind is kept."""
    ep.configure(latency_s, concurrency)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(sizes.repeats):
        for kind in ("bare", "qdsearch"):
            r = measure(sizes, ep, kind, children, concurrency)
            if kind not in best or r["children_per_s"] > best[kind]["children_per_s"]:
                best[kind] = r
    q, b = best["qdsearch"], best["bare"]
    return {
        "latency_s": latency_s,
        "concurrency": concurrency,
        "children": children,
        "qdsearch_per_s": q["children_per_s"],
        "bare_per_s": b["children_per_s"],
        "ratio": q["children_per_s"] / b["children_per_s"],
        "qdsearch_cpu_ms_per_child": 1000 * q["cpu_s"] / q["children"],
        "bare_cpu_ms_per_child": 1000 * b["cpu_s"] / b["children"],
        "qdsearch_calls_per_child": q["child_calls"] / q["children"],
        "qdsearch": q,
        "bare": b,
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "qdsearch"], cwd=ROOT, capture_output=True, text=True
        )
        return head.stdout.strip() + (" (qdsearch/ has uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "n/a"


def run(sizes: Sizes, *, distilabel: bool = True, emit: Any = print) -> dict[str, Any]:
    """Runs every section; ``emit`` gets each figure line as it is measured."""
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, nproc {os.cpu_count()}, {platform.processor() or platform.system()}",
        "python": platform.python_version(),
        "git": _git(),
        "load_start": _load(),
    }
    for k in ("date", "machine", "python", "git"):
        emit(f"{k}: {res[k]}")
    emit(f"load average at start (1/5/15 min): {res['load_start']}")
    with endpoint() as ep:
        # 1. overhead vs the bare loop
        res["overhead"] = []
        for latency, n in ((0.0, sizes.overhead_children), (sizes.slow_latency_s, sizes.overhead_slow_children)):
            for c in (16, 64) if n else ():
                children = n if latency == 0 or c == 64 else max(8, n // 4)
                r = compare(sizes, ep, latency, c, children)
                res["overhead"].append(r)
                emit(
                    f"overhead latency={latency:g}s c={c}: qdsearch {r['qdsearch_per_s']:.1f} children/s, "
                    f"bare {r['bare_per_s']:.1f} children/s, ratio {r['ratio']:.3f} "
                    f"(client CPU/child {r['qdsearch_cpu_ms_per_child']:.2f} vs {r['bare_cpu_ms_per_child']:.2f} ms)"
                )
        # 2. achieved throughput vs the endpoint limit
        lat, c = sizes.limit_latency_s, sizes.limit_concurrency
        ep.configure(lat, c)
        limit = c / (3 * lat)
        q = measure(sizes, ep, "qdsearch", sizes.limit_children, c)
        b = measure(sizes, ep, "bare", sizes.limit_children, c)
        res["limit"] = {
            "latency_s": lat,
            "concurrency": c,
            "children": sizes.limit_children,
            "endpoint_limit_per_s": limit,
            "qdsearch_per_s": q["children_per_s"],
            "qdsearch_ratio": q["children_per_s"] / limit,
            "bare_per_s": b["children_per_s"],
            "bare_ratio": b["children_per_s"] / limit,
            "qdsearch_end_to_end_per_s": q["children"] / q["total_s"],
            "qdsearch": q,
            "bare": b,
        }
        emit(
            f"limit latency={lat:g}s/call c={c}: endpoint limit {limit:.2f} children/s; "
            f"qdsearch {q['children_per_s']:.2f} ({q['children_per_s'] / limit:.3f} of the limit), "
            f"bare {b['children_per_s']:.2f} ({b['children_per_s'] / limit:.3f})"
        )
        # 3. distilabel
        if not distilabel:
            res["distilabel"] = {"skipped": "--skip-distilabel"}
            emit("distilabel: skipped (--skip-distilabel)")
        elif importlib.util.find_spec("distilabel") is None:
            res["distilabel"] = {"skipped": "distilabel is not installed"}
            emit("distilabel: skipped: distilabel is not installed (pip install 'qdsearch[bench]')")
        else:
            ep.configure(lat, c)
            n = sizes.distilabel_evolutions
            d = _sub(
                "experiments.bench.distil",
                ["--base-url", ep.base_url, "--evolutions", str(n), "--concurrency", str(c)],
                "distilabel run",
            )
            d["endpoint_max_open"] = ep.stats()["max_open"]
            q_e2e = q["children"] / q["total_s"] if n == sizes.limit_children else None
            if q_e2e is None:
                q = measure(sizes, ep, "qdsearch", n, c)
                q_e2e = q["children"] / q["total_s"]
            res["distilabel"] = d | {"qdsearch_end_to_end_per_s": q_e2e, "ratio": q_e2e / d["evolutions_per_s"]}
            emit(
                f"distilabel latency={lat:g}s/call c={c}, {n} evolutions x 3 calls: distilabel "
                f"{d['evolutions_per_s']:.2f} evolutions/s (end to end {d['wall_s']:.1f} s, at most "
                f"{d['endpoint_max_open']} calls open), qdsearch {q_e2e:.2f} children/s end to end, "
                f"ratio {q_e2e / d['evolutions_per_s']:.2f}"
            )
        # 4a. peak memory of a long run against the zero-latency endpoint
        ep.configure(0.0, 64)
        r = measure(sizes, ep, "qdsearch", sizes.rss_children, 64)
        res["rss"] = {"children": r["children"], "peak_rss_mb": r["peak_rss_mb"], "children_per_s": r["children_per_s"]}
        emit(
            f"peak RSS of a {r['children']}-child run (latency 0, c=64): {r['peak_rss_mb']:.0f} MiB "
            f"({r['children_per_s']:.0f} children/s)"
        )
    # 4b. micro figures (no endpoint)
    from experiments.bench import micro

    res["insertion"] = ins = micro.insertion_cost(sizes.insert_adds, sizes.insert_repeats)
    emit(
        f"archive insertion: {ins['grid_us']:.0f} us/child (default grid, {ins['grid_elites']} elites), "
        f"{ins['pca_grid_us']:.0f} us/child (PCA grid 5x6x6, {ins['pca_grid_elites']} elites), "
        f"{ins['cvt1000_us']:.0f} us/child (CVT 1000 cells, {ins['cvt1000_elites']} elites)"
    )
    res["snapshot"] = snap = micro.snapshot_time(sizes.snapshot_elites)
    emit(
        f"snapshot of {snap['elites']} elites: {snap['snapshot_s'] * 1000:.0f} ms "
        f"(elites_frame {snap['frame_s'] * 1000:.0f} ms, parquet {snap['parquet_mb']:.1f} MiB)"
    )
    try:
        res["embedding"] = emb = micro.embedding_throughput(sizes.embed_texts)
        emit(
            f"embedding: {emb['texts_per_s']:.0f} texts/s (all-MiniLM-L6-v2, {emb['threads']} threads, "
            f"batch {emb['batch_size']}, {emb['mean_words']:.0f} words/text)"
        )
    except FileNotFoundError as e:  # the model package is not installed
        res["embedding"] = {"skipped": str(e)}
        emit(f"embedding: skipped: {e}")
    res["load_end"] = _load()
    emit(f"load average at end: {res['load_end']}")
    return res


TARGETS = (
    ("engine / bare loop, c=64, latency 0", ">= 0.9"),
    ("engine / endpoint limit, 1 s/call", ">= 0.95"),
    ("engine / distilabel", ">= 3"),
    ("embedding texts/s", ">= 300"),
    ("insertion us/child", "<= 100"),
)


def table(res: dict[str, Any]) -> str:
    """The results as a markdown table (figure, value, target, met)."""
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, value: float | None, fmt: str, target: str = "", ok: bool | None = None) -> None:
        v = "n/a" if value is None else format(value, fmt)
        rows.append((name, v, target, "" if ok is None else ("yes" if ok else "**no**")))

    for r in res["overhead"]:
        tag = f"latency {r['latency_s']:g} s, c={r['concurrency']}, {r['children']} children"
        add(f"qdsearch children/s ({tag})", r["qdsearch_per_s"], ".1f")
        add(f"bare loop children/s ({tag})", r["bare_per_s"], ".1f")
        target = r["latency_s"] == 0 and r["concurrency"] == 64
        add(
            f"qdsearch / bare ({tag})",
            r["ratio"],
            ".3f",
            ">= 0.9" if target else "",
            r["ratio"] >= 0.9 if target else None,
        )
        add(f"client CPU ms/child qdsearch / bare ({tag})", None, "")
        rows[-1] = (rows[-1][0], f"{r['qdsearch_cpu_ms_per_child']:.2f} / {r['bare_cpu_ms_per_child']:.2f}", "", "")
    lim = res["limit"]
    tag = f"{lim['latency_s']:g} s/call, c={lim['concurrency']}, {lim['children']} children"
    add(f"endpoint limit children/s ({tag})", lim["endpoint_limit_per_s"], ".2f")
    add(f"qdsearch / endpoint limit ({tag})", lim["qdsearch_ratio"], ".3f", ">= 0.95", lim["qdsearch_ratio"] >= 0.95)
    add(f"bare loop / endpoint limit ({tag})", lim["bare_ratio"], ".3f")
    d = res["distilabel"]
    if "skipped" in d:
        rows.append(("distilabel", f"skipped: {d['skipped']}", ">= 3", ""))
    else:
        add("distilabel evolutions/s (end to end)", d["evolutions_per_s"], ".2f")
        add("qdsearch children/s (end to end, seed phase included)", d["qdsearch_end_to_end_per_s"], ".2f")
        add("qdsearch / distilabel", d["ratio"], ".2f", ">= 3", d["ratio"] >= 3)
    e = res["embedding"]
    if "skipped" in e:
        rows.append(("embedding texts/s", f"skipped: {e['skipped']}", ">= 300", ""))
    else:
        add("embedding texts/s (2 threads, batched)", e["texts_per_s"], ".0f", ">= 300", e["texts_per_s"] >= 300)
    ins = res["insertion"]
    add("archive insertion us/child (default grid)", ins["grid_us"], ".0f", "<= 100", ins["grid_us"] <= 100)
    add("archive insertion us/child (CVT, 1000 cells)", ins["cvt1000_us"], ".0f", "<= 100", ins["cvt1000_us"] <= 100)
    s = res["snapshot"]
    add(f"snapshot ms ({s['elites']} elites: elites_frame + RunStore.snapshot)", s["snapshot_s"] * 1000, ".0f")
    add(f"peak RSS MiB ({res['rss']['children']}-child run, latency 0)", res["rss"]["peak_rss_mb"], ".0f")
    out = ["| figure | value | target | met |", "| --- | --- | --- | --- |"]
    out += [f"| {a} | {b} | {c} | {m} |" for a, b, c, m in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="qdsearch performance benchmark (see experiments/bench/run.py)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, runs in this process: only checks it runs")
    ap.add_argument("--skip-distilabel", action="store_true")
    ap.add_argument("--json", default="", help="also write every figure to this JSON file")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sizes = QUICK if a.quick else Sizes()
    t0 = time.perf_counter()
    res = run(sizes, distilabel=not a.skip_distilabel, emit=lambda s: print(s, flush=True))
    res["bench_s"] = time.perf_counter() - t0
    print()
    print(table(res))
    print(f"\nbenchmark took {res['bench_s']:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
