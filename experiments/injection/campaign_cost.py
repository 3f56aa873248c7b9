"""What each ``[judge] injection_check`` mode costs per child, through the campaign's path.

Runs :func:`qdsearch.judge.screening.screen_sample` (the code a worker runs for each
child, policy ``reject``: instruction and input before the respond call, then the
response) on the benign and attack sets of ``detector.py``, one child at a time as a
worker screens them, and prints per mode: benign flagged, attacks caught, and the
CPU and wall time per child; the classifier's one-off load per worker process; the
judge question's prompt size (it is one extra grader call per child).

    .venv/bin/python experiments/injection/campaign_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector import attacks, benign

from qdsearch.config import from_dict
from qdsearch.domains.base import EvalContext
from qdsearch.judge import screening
from qdsearch.judge.injection_check import render_question
from qdsearch.types import Sample


async def _screen(cfg: object, s: Sample) -> bool:
    ctx = EvalContext(cfg, None, None, None, np.random.default_rng(0), [])  # type: ignore[arg-type]
    pre = dataclasses.replace(s, response="")
    found = await screening.screen_sample(pre, ctx, ask=False)
    if found:
        return True
    return bool(await screening.screen_sample(s, ctx, skip=found.classified, ask=False))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="/work/shared/data")
    args = ap.parse_args(argv)
    good = [s for _, _, s in benign(Path(args.data_dir))]
    bad = attacks()
    fresh = [s for name, _, _, s in bad if name == "fresh_attacks"]
    held = [s for name, _, _, s in bad if name == "heldout_attacks"]
    print(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}.\n")  # fmt: skip
    t, w = time.process_time(), time.perf_counter()
    screening.classifier()
    print(f"classifier load (once per worker process): {time.process_time() - t:.1f} s CPU, "
          f"{time.perf_counter() - w:.1f} s wall\n")  # fmt: skip
    print("| injection_check | benign flagged | fresh attacks caught | heldout caught | CPU / child | wall / child |")
    print("|---|---|---|---|---|---|")
    for mode in ("scan", "scan+classifier"):
        cfg = from_dict({"judge": {"injection_check": mode}})

        async def run(samples: list[Sample], cfg: object = cfg) -> list[bool]:
            return [await _screen(cfg, s) for s in samples]

        t, w = time.process_time(), time.perf_counter()
        fp = asyncio.run(run(good))
        cpu, wall = (time.process_time() - t) / len(good), (time.perf_counter() - w) / len(good)
        caught_f, caught_h = asyncio.run(run(fresh)), asyncio.run(run(held))
        print(f"| {mode} | {sum(fp)}/{len(good)} | {sum(caught_f)}/{len(fresh)} | {sum(caught_h)}/{len(held)} | "
              f"{cpu * 1e3:.1f} ms | {wall * 1e3:.1f} ms |")  # fmt: skip
    words = [sum(len(m["content"].split()) for m in render_question(s, np.random.default_rng(0))) for s in good]
    print(f"\njudge question (scan+judge, all): one extra grader call per child that passes the scan (and the "
          f"classifier); its prompt is {np.mean(words):.0f} words on average (median {np.median(words):.0f}, max "
          f"{max(words)}) on the benign set, the reply one short JSON object (max_tokens = judge.max_tokens).")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
