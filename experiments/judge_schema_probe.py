"""How many judge calls give a valid verdict, with the old and the current verdict schema.

Runs the project's own judge prompt (:func:`qdsearch.judge.render_judge`, quality and
complexity in one call, ``temperature = 0``) on seed samples that carry their answer,
once with the verdict schema as it was before issue 24 (``integer`` scores with
``minimum``/``maximum``, a ``reason`` with only a ``maxLength``, the reason first) and
once with :data:`qdsearch.judge.VERDICT_SCHEMA` (integer ``enum`` scores first, a
one-line ``reason`` pattern), both as ``json_object`` + schema, the way the embedded
llama.cpp server is asked. Each reply goes through the strict parser
(:func:`qdsearch.judge.parse_verdict`); one call per sample and schema, no retries.

Usage (the embedded model; ``qdsearch serve`` prints the base URL)::

    .venv/bin/qdsearch serve &          # note its PID and base URL
    .venv/bin/python experiments/judge_schema_probe.py --base-url http://127.0.0.1:PORT/v1 \\
        --seeds experiments/seeds/foreign_long.jsonl experiments/seeds/example_seeds.jsonl --n 20
    kill PID
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qdsearch.config import EndpointConfig  # noqa: E402
from qdsearch.judge import VERDICT_SCHEMA, JudgeReject, parse_verdict, render_judge  # noqa: E402
from qdsearch.llm.client import LLMClient  # noqa: E402
from qdsearch.seeds import load_seeds  # noqa: E402

OLD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 200},
        "quality": {"type": "integer", "minimum": 1, "maximum": 10},
        "complexity": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["complexity", "quality", "reason"],
}


async def probe(base_url: str, seeds: list[str], n: int, max_tokens: int) -> dict[str, Any]:
    samples = [s for p in seeds for s in load_seeds(p) if s.response][:n]
    cfg = EndpointConfig(base_url=base_url, model="smollm2-135m-instruct", json_mode="json_object", timeout_s=300)
    client = LLMClient(cfg)
    out: dict[str, Any] = {"samples": len(samples)}
    try:
        for name, schema in (("old", OLD_SCHEMA), ("new", VERDICT_SCHEMA["both"])):
            reasons: collections.Counter[str] = collections.Counter()
            tokens = 0
            for i, s in enumerate(samples):
                msgs = render_judge(s, "both", np.random.default_rng(i))
                comp = await client.chat(msgs, json_schema=schema, temperature=0.0, max_tokens=max_tokens, tag="judge")
                tokens += comp.record.completion_tokens
                try:
                    parse_verdict(comp.text, "both", comp.finish_reason)
                    reasons["valid"] += 1
                except JudgeReject as e:
                    reasons[e.reason] += 1
            out[name] = {"valid": reasons["valid"], "outcomes": dict(reasons), "completion_tokens": tokens}
            print(name, out[name], file=sys.stderr, flush=True)
    finally:
        await client.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=256)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(probe(a.base_url, a.seeds, a.n, a.max_tokens))))


if __name__ == "__main__":
    main()
