"""Task prompts under the old lenient ``contains`` and the label-set rule (issue 23).

Runs each prompt (the seed prompts, and optionally a finished campaign's elites) on
the val and test splits of a label task with the target at temperature 0, for
each ``split:max_tokens`` pass (by default 192 tokens, the reply length the issue's
numbers used, and 16, the task's fixed ``target_max_tokens``). For each it prints
the strict score (exactly one label, the expected one: what ``contains`` scores
now), the lenient score (the expected label anywhere in the reply: what
``contains`` scored before), the share of replies naming several labels and the
mean reply length in tokens.

    .venv/bin/python experiments/task_prompt_scoring.py                       # the embedded model
    .venv/bin/python experiments/task_prompt_scoring.py --run archives/tickets4   # ...and that run's elites
    .venv/bin/python experiments/task_prompt_scoring.py --base-url http://127.0.0.1:8000/v1 --model M

With no ``--base-url`` the embedded offline model (SmolLM2-135M) is the target.
The run's elites are read from ``<run>/export/elites.jsonl`` (``qdsearch export``
first). Prints a markdown table; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from qdsearch.config import EndpointConfig, LocalModelConfig, from_dict  # noqa: E402
from qdsearch.domains.base import EvalContext  # noqa: E402
from qdsearch.domains.scoring import parse_guards  # noqa: E402
from qdsearch.domains.task_prompt import TaskPromptDomain  # noqa: E402
from qdsearch.llm import open_endpoint  # noqa: E402
from qdsearch.llm.client import LLMClient  # noqa: E402
from qdsearch.seeds import load_seeds  # noqa: E402
from qdsearch.types import Sample  # noqa: E402

LABELS = ["billing", "technical", "shipping", "account"]


def _domain(split: Path, max_tokens: int) -> TaskPromptDomain:
    cfg = from_dict(
        {
            "domain": {
                "kind": "task_prompt",
                "dev_path": str(split),
                "fewshot": 0,
                "scoring": "contains",
                "labels": LABELS,
                "target_max_tokens": max_tokens,
            }
        }
    )
    cfg.validate()
    return TaskPromptDomain(cfg)


async def _score(dom: TaskPromptDomain, prompts: list[str], ep: EndpointConfig) -> list[dict[str, float]]:
    client = LLMClient(ep)
    calls: list[dict[str, Any]] = []
    ctx = EvalContext(dom.cfg, client, client, client, np.random.default_rng(0), calls)
    out = []
    try:
        for i, p in enumerate(prompts):
            sample, j = await dom.evaluate(Sample(f"p{i}", p), ctx)
            g = parse_guards(sample.response)
            assert g is not None
            out.append(
                {
                    "strict": (j.quality - 1.0) / 9.0,
                    "lenient": g.lenient_score / g.n,
                    "hedged": g.hedged / g.n,
                    "tokens": g.reply_tokens,
                }
            )
    finally:
        await client.aclose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", default=str(HERE / "seeds" / "ticket_prompts.jsonl"))
    ap.add_argument("--val", default=str(HERE / "data" / "tickets4_val.jsonl"))
    ap.add_argument("--test", default=str(HERE / "data" / "tickets4_test.jsonl"))
    ap.add_argument("--run", default="", help="also score this run's exported elites")
    ap.add_argument("--top", type=int, default=4, help="elites of --run to score, best first")
    ap.add_argument(
        "--passes",
        default="val:192,val:16,test:16,test:192",
        help="split:max_tokens pairs to run, in order (the target's reply length)",
    )
    ap.add_argument("--base-url", default="")
    ap.add_argument("--model", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)

    rows: list[tuple[str, str]] = [("seed", s.instruction) for s in load_seeds(a.prompts)]
    if a.run:
        recs = [json.loads(x) for x in (Path(a.run) / "export" / "elites.jsonl").read_text().splitlines()]
        recs.sort(key=lambda r: -float(r["quality"]))
        rows += [(f"elite q={float(r['quality']):.2f} ({r['operator']})", r["instruction"]) for r in recs[: a.top]]
    prompts = [p for _, p in rows]
    splits = {"val": Path(a.val), "test": Path(a.test)}
    passes = [(sp, int(mt)) for sp, mt in (x.split(":") for x in a.passes.split(","))]
    lines = [
        "| prompt | split | max_tokens | strict (now) | lenient (before) | hedged | reply tokens | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    t0 = time.monotonic()
    with open_endpoint(EndpointConfig(base_url=a.base_url, model=a.model, timeout_s=900), LocalModelConfig()) as ep:
        for sp, mt in passes:
            for (kind, p), prompt in zip(rows, prompts, strict=True):
                t1 = time.monotonic()
                (r,) = asyncio.run(_score(_domain(splits[sp], mt), [prompt], ep))
                short_p = p if len(p) <= 90 else p[:89] + "…"
                line = (
                    f"| {kind}: {short_p!r} | {sp} | {mt} | {r['strict']:.3f} | {r['lenient']:.3f} "
                    f"| {r['hedged']:.3f} | {r['tokens']:.1f} | {time.monotonic() - t1:.0f} |"
                )
                lines.append(line)
                print(line, file=sys.stderr, flush=True)
        model = ep.model
    text = (
        f"target: {model} (temperature 0); val {a.val}, test {a.test}; total wall {time.monotonic() - t0:.0f}s\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
