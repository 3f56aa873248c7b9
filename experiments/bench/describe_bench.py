"""Benchmark: ``qdsearch describe`` on 1,000 records with the default embedder (issue 16).

Records: the project's own categorized request sets (``experiments/data``), cycled
with a numbered suffix to ``--n`` records. Prints the wall and CPU seconds of each
stage (model load, topic fit with the reference corpus cache cold and warm,
embedding and placing the records) and the whole command as a user runs it.

    .venv/bin/python experiments/bench/describe_bench.py [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def records(n: int) -> list[dict[str, str]]:
    rows = []
    for name in ("descriptor_eval_tasks.jsonl", "descriptor_eval_subjects.jsonl"):
        for line in (ROOT / "experiments/data" / name).read_text().splitlines():
            r = json.loads(line)
            rows.append({"instruction": r["instruction"], "input": r.get("input", "")})
    out = []
    for i in range(n):
        r = rows[i % len(rows)]
        suffix = "" if i < len(rows) else f" (variant {i // len(rows)})"
        out.append({"instruction": r["instruction"] + suffix, "input": r["input"]})
    return out


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="qds-describe-") as tmp:
        os.environ["QDSEARCH_CACHE_DIR"] = tmp
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records(args.n)))
        from qdsearch.config import load_config
        from qdsearch.describe import describe_records, fit_space, summarize_placement
        from qdsearch.descriptors.embedding import SentenceTransformerEmbedder
        from qdsearch.measure import load_records
        from qdsearch.seeds import load_seeds

        cfg = load_config(ROOT / "experiments/quickstart.toml")
        seeds = [s.prompt_text() for s in load_seeds(str(ROOT / "experiments/seeds/example_seeds.jsonl"))]
        stages = []
        w, c = clock()
        emb = SentenceTransformerEmbedder()
        stages.append(("load the model", w, c))
        w, c = clock()
        fit_space(cfg, seeds, [], emb)
        stages.append(("fit the topic space (reference cache cold)", w, c))
        w, c = clock()
        space = fit_space(cfg, seeds, [], emb)
        stages.append(("fit the topic space (cache warm)", w, c))
        w, c = clock()
        recs = load_records(data)
        placed = describe_records(recs, cfg, space, emb)
        summarize_placement(placed, cfg, space)
        stages.append((f"read, embed and place {len(recs)} records", w, c))
        print(f"describe benchmark, {args.n} records, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        marks = [(s[1], s[2]) for s in stages] + [clock()]
        for (name, _, _), (w0, c0), (w1, c1) in zip(stages, marks[:-1], marks[1:], strict=True):
            print(f"  {name:48s} {w1 - w0:7.2f} s wall {c1 - c0:7.2f} s CPU")
        env = dict(os.environ, QDSEARCH_CACHE_DIR=tmp)
        cmd = [sys.executable, "-m", "qdsearch.cli", "describe", str(data), "--config", "experiments/quickstart.toml"]
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        print(f"  {'the command (warm reference cache)':48s} {time.perf_counter() - t:7.2f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
