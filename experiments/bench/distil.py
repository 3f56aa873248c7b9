"""distilabel's Evol-Instruct pipeline against the benchmark endpoint, in a process of its own.

    python -m experiments.bench.distil --base-url URL --evolutions 192 --concurrency 64

The pipeline is distilabel's own public API, set up the way its documentation
shows, with the same three calls per evolution as a qdsearch child:

    LoadDataFromDicts (seed instructions, cycled)
      >> EvolInstruct(num_evolutions=1, generate_answers=True)   # mutate, then answer
      >> TextGeneration(template=<a grading prompt>)              # judge

every task with an ``OpenAILLM`` pointed at the endpoint's base URL and an
``input_batch_size`` of ``--concurrency`` (distilabel sends a task's batch
concurrently, so each task keeps up to that many calls in flight; the endpoint
serves at most its own number of slots at once either way). Prints one JSON line
(the last line of stdout): ``evolutions`` (rows out), ``wall_s`` (``Pipeline.run``,
from its start to the distiset), ``evolutions_per_s``, ``peak_rss_mb`` of this
process. distilabel's cache is off and lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.bench.engine import SEEDS  # noqa: E402

__all__ = ["JUDGE_TEMPLATE", "run_distilabel"]

JUDGE_TEMPLATE = (
    "Grade this instruction and response for a training set. Answer with a JSON object with "
    'the keys "quality" and "complexity" (1-10) and "reason".\n'
    "## Instruction\n{{ evolved_instruction }}\n## Response\n{{ answer }}"
)


def run_distilabel(base_url: str, evolutions: int, concurrency: int) -> dict[str, Any]:
    """Runs the pipeline (module docstring); returns its figures."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import EvolInstruct, TextGeneration

    def llm() -> Any:
        return OpenAILLM(
            model="bench-model",
            base_url=base_url,
            api_key="EMPTY",  # type: ignore[arg-type]
            timeout=300,
            generation_kwargs={"max_new_tokens": 512, "temperature": 0.8},
        )

    data = [{"instruction": SEEDS[i % len(SEEDS)]["instruction"]} for i in range(evolutions)]
    with tempfile.TemporaryDirectory(prefix="qds-bench-distilabel-") as tmp:
        os.environ["DISTILABEL_CACHE_DIR"] = tmp
        with Pipeline(name="bench-evol-instruct", cache_dir=tmp) as pipeline:
            load = LoadDataFromDicts(data=data, batch_size=concurrency)
            evol = EvolInstruct(llm=llm(), num_evolutions=1, generate_answers=True, input_batch_size=concurrency)
            judge = TextGeneration(
                llm=llm(),
                template=JUDGE_TEMPLATE,
                columns=["evolved_instruction", "answer"],
                input_batch_size=concurrency,
            )
            load >> evol >> judge
        t0 = time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        wall = time.perf_counter() - t0
        ds = distiset["default"]["train"]
        rows = len(ds)
        ok = sum(1 for g in ds["generation"] if g)
    return {
        "kind": "distilabel",
        "evolutions": rows,
        "judged": ok,
        "wall_s": wall,
        "evolutions_per_s": rows / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="distilabel Evol-Instruct against the benchmark endpoint")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--evolutions", type=int, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    a = ap.parse_args(argv)
    print(json.dumps(run_distilabel(a.base_url, a.evolutions, a.concurrency)), flush=True)


if __name__ == "__main__":
    main()
