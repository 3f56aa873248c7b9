"""The benchmark's overhead row for two (or more) source trees, side by side.

    .venv/bin/python experiments/bench/ab_overhead.py BEFORE_TREE AFTER_TREE [--repeats N] [--local-llm] [--timers]

For each repeat and each tree in turn, one run of each ``--kinds`` (default: the plain-SDK
loop, the bare ``LLMClient`` loop, then qdsearch; :mod:`experiments.bench.engine`, a fresh
process started in that tree, so each run
uses that tree's ``qdsearch``) against one zero-latency fake endpoint with 64 slots
(:mod:`experiments.bench.server`, started from the first tree), 1000 children at
concurrency 64. Prints one JSON line per run (children/s, client CPU ms per child,
the 1-minute load average), then the load average at the end. Used for a before/after
comparison of a change (``experiments/results/bench.md``): copy the tree before and
after it into two folders, and pass them. The trees take turns going first (odd
repeats in reverse order). With ``--local-llm`` the chat calls are answered in each
run's own process (:mod:`experiments.bench.engine`), and each row adds
``own_cpu_ms_per_child``: the CPU per child besides making the answers (qdsearch minus
bare = the engine's own work).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", type=Path, help="source trees (each holds qdsearch/ and experiments/)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--children", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument(
        "--local-llm",
        action="store_true",
        help="answer chat calls in each run's process (engine.py --local-llm): the engine's own CPU per child",
    )
    ap.add_argument("--timers", action="store_true", help="qdsearch rows add CPU per child by function (engine.py)")
    ap.add_argument(
        "--kinds",
        default="sdk,bare,qdsearch",
        help="comma-separated run kinds of engine.py, in order; qdsearch:RUNTIME:WORKERS picks the runtime "
        "(e.g. qdsearch:process:3; plain qdsearch is the in-process runtime)",
    )
    a = ap.parse_args(argv)
    sys.path.insert(0, str(a.trees[0].resolve()))
    from experiments.bench.run import _last_json, endpoint

    with endpoint() as ep:
        ep.configure(0.0, a.concurrency)
        print("load", os.getloadavg(), flush=True)
        for rep in range(a.repeats):
            for tree in a.trees if rep % 2 == 0 else a.trees[::-1]:  # no tree always first
                root = str(tree.resolve())
                for spec in a.kinds.split(","):
                    kind, *rt = spec.split(":")
                    args = [kind, "--base-url", ep.base_url, "--children", str(a.children)]
                    args += ["--runtime", rt[0], "--workers", rt[1] if len(rt) > 1 else "2"] if rt else []
                    args += ["--concurrency", str(a.concurrency)] + (["--local-llm"] if a.local_llm else [])
                    args += ["--timers"] if a.timers and kind == "qdsearch" else []
                    res = subprocess.run(
                        [sys.executable, "-m", "experiments.bench.engine", *args],
                        cwd=root,
                        capture_output=True,
                        text=True,
                        timeout=900,
                        env=dict(os.environ, PYTHONPATH=root, TOKENIZERS_PARALLELISM="false"),
                    )
                    if res.returncode:
                        raise SystemExit(f"{kind} run in {root} failed:\n{res.stderr[-3000:]}")
                    r = _last_json(res.stdout, kind)
                    row = {
                        "tree": root,
                        "rep": rep,
                        "kind": spec,
                        "per_s": round(r["children_per_s"], 1),
                        "cpu_ms_per_child": round(1000 * r["cpu_s"] / r["children"], 3),
                        "children": r["children"],
                        **(
                            {"own_cpu_ms_per_child": round(1000 * (r["cpu_s"] - r["llm_cpu_s"]) / r["children"], 3)}
                            if a.local_llm
                            else {}
                        ),
                        "load1": round(os.getloadavg()[0], 2),
                        **({"timers_ms_per_child": r["timers_ms_per_child"]} if "timers_ms_per_child" in r else {}),
                    }
                    print(json.dumps(row), flush=True)
        print("load", os.getloadavg(), flush=True)


if __name__ == "__main__":
    main()
