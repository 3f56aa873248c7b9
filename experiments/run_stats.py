"""The issue-24 figures of a finished run folder, read from its event log.

Prints JSON: seeds, seeds judged, seeds in the archive (the ``seed_report``), children,
children judged (and their share), judge calls, judge calls whose verdict was used
(every judged sample has exactly one; the other judge calls were retried after a
malformed or truncated verdict, or ended in a ``judge_*`` reject), and the reject
reasons of seeds and children.

Usage::

    .venv/bin/python experiments/run_stats.py archives/probe24
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path


def run_stats(run_dir: Path) -> dict[str, object]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    report = next((e for e in events if e.get("type") == "seed_report"), {})
    items = [e for e in events if e.get("type") in ("seed", "child")]
    seeds = [e for e in items if e["type"] == "seed"]
    children = [e for e in items if e["type"] == "child"]
    judge_calls = sum(1 for e in items for c in e["calls"] if str(c.get("tag", "")).startswith("judge"))
    used = sum(1 for e in items if e["quality"] is not None)
    rejects = collections.Counter(f"{e['type']}:{e['reject']}" for e in items if e["reject"])
    judged_children = sum(1 for e in children if e["quality"] is not None)
    return {
        "seeds": len(seeds),
        "seeds_judged": sum(1 for e in seeds if e["quality"] is not None),
        "seeds_in_archive": report.get("in_archive"),
        "children": len(children),
        "children_judged": judged_children,
        "children_judged_share": round(judged_children / len(children), 3) if children else None,
        "judge_calls": judge_calls,
        "judge_calls_valid": used,
        "judge_valid_share": round(used / judge_calls, 3) if judge_calls else None,
        "rejects": dict(rejects.most_common()),
    }


if __name__ == "__main__":
    print(json.dumps(run_stats(Path(sys.argv[1])), indent=1))
