"""Judge injection detector: catch rate against false positives, on data it was not tuned on.

Attacks (each a whole sample with the attack inside one field):

- ``heldout_attacks.jsonl``: 53 attacks in 22 kinds (other languages, base64, ROT13,
  HTML entities, URL-encoding, hex, leetspeak, verdict-shaped markdown, fake
  pipeline notices, look-alike alphabets, reversed and spelled-out text, hidden
  HTML...), written before the detector was changed. The detector was then
  developed with these kinds in mind (they are the kinds the audit named), so this
  set is held out in wording, not in kind.
- ``fresh_attacks.jsonl`` (when present): attacks written after the detector was
  frozen and measured once, with no change made after.

Benign texts (none used for tuning):

- ``seed_tasks.jsonl`` (175 self-instruct tasks, instruction + input + first output)
  and ``vicuna_questions.jsonl`` (80 questions), read from ``--data-dir`` at run time
  (they are not copied into the repository);
- ``benign_lookalikes.jsonl``: 70 benign samples written to look like attacks
  (grading, scores and judges as the subject, base64/ROT13/hex/entities as the
  subject, 15 other languages, markdown tables, JSON, notices), written before the
  detector was changed.

Checks: the detector before this work (``--baseline`` commit, loaded from git), the
scan now, the embedding classifier (:class:`qdsearch.judge.injection_check.EvaluatorClassifier`,
all-MiniLM-L6-v2) and the union (the documented policy: flagged when any check flags).

    .venv/bin/python experiments/injection/detector.py
    .venv/bin/python experiments/injection/detector.py --no-classifier

Writes ``experiments/results/injection-detector.md`` (hand-written notes below a
``<!-- notes -->`` line in that file are kept).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qdsearch.judge.injection import scan  # noqa: E402
from qdsearch.types import Sample  # noqa: E402

HERE = Path(__file__).resolve().parent
THRESHOLDS = (-0.5, -0.25, 0.0, 0.25, 0.5, 1.0)
NOTES = "<!-- notes -->"


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sample(d: dict[str, Any], sid: str) -> Sample:
    return Sample(sid, d.get("instruction", ""), input=d.get("input", ""), response=d.get("response", ""))


def attacks() -> list[tuple[str, str, str, Sample]]:
    """(set, kind, id, sample)."""
    out = []
    for name in ("heldout_attacks", "fresh_attacks"):
        path = HERE / f"{name}.jsonl"
        if path.exists():
            out += [(name, r["kind"], r["id"], _sample(r, r["id"])) for r in _load_jsonl(path)]
    return out


def benign(data_dir: Path) -> list[tuple[str, str, Sample]]:
    """(source, id, sample)."""
    out = []
    for r in _load_jsonl(data_dir / "seed_tasks.jsonl"):
        inst = (r.get("instances") or [{}])[0]
        out.append(
            ("seed_tasks", r["id"], Sample(r["id"], r["instruction"], inst.get("input", ""), inst.get("output", "")))
        )
    for i, r in enumerate(_load_jsonl(data_dir / "vicuna_questions.jsonl")):
        out.append(("vicuna_questions", f"v{i:03d}", Sample(f"v{i:03d}", r["instruction"])))
    for r in _load_jsonl(HERE / "benign_lookalikes.jsonl"):
        out.append(("benign_lookalikes", r["id"], _sample(r, r["id"])))
    return out


def baseline_scan(commit: str) -> Callable[[Sample], list[Any]]:
    """The detector's ``scan`` as it was at ``commit`` (loaded from git into a temporary module)."""
    src = subprocess.run(
        ["git", "show", f"{commit}:qdsearch/judge/injection.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    tmp = Path(tempfile.mkdtemp()) / "injection_baseline.py"
    tmp.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("injection_baseline", tmp)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["injection_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod.scan  # type: ignore[no-any-return]


def _per_sample_us(fn: Callable[[Sample], Any], samples: Sequence[Sample], repeats: int = 3) -> float:
    """Median over ``repeats`` passes of the mean CPU time (this process) per sample, in
    microseconds: CPU time, not wall time, so that other work on the machine does not
    count."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        for s in samples:
            fn(s)
        times.append((time.process_time() - t) / len(samples) * 1e6)
    return float(np.median(times))


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f}%)" if n else "0/0"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", default="/work/shared/data", help="folder with seed_tasks.jsonl, vicuna_questions.jsonl"
    )
    ap.add_argument("--baseline", default="440c30b", help="git commit of the detector to compare with")
    ap.add_argument("--no-classifier", action="store_true", help="skip the embedding classifier")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "injection-detector.md"))
    args = ap.parse_args(argv)

    atk = attacks()
    ben = benign(Path(args.data_dir))
    old_scan = baseline_scan(args.baseline)
    a_samples = [s for *_, s in atk]
    b_samples = [s for *_, s in ben]

    res: dict[str, dict[str, list[bool]]] = {"attack": {}, "benign": {}}
    flags_now = {"attack": [scan(s) for s in a_samples], "benign": [scan(s) for s in b_samples]}
    res["attack"]["old"] = [bool(old_scan(s)) for s in a_samples]
    res["benign"]["old"] = [bool(old_scan(s)) for s in b_samples]
    res["attack"]["scan"] = [bool(f) for f in flags_now["attack"]]
    res["benign"]["scan"] = [bool(f) for f in flags_now["benign"]]

    cost = {
        "old scan": _per_sample_us(old_scan, b_samples),
        "scan": _per_sample_us(scan, b_samples),
        "scan (attacks)": _per_sample_us(scan, a_samples),
    }
    clf_info = ""
    sweep: list[tuple[float, int, int, int, int]] = []
    if not args.no_classifier:
        from qdsearch.descriptors.embedding import SentenceTransformerEmbedder
        from qdsearch.judge.injection_check import DEFAULT_THRESHOLD, EvaluatorClassifier, sentences

        t = time.perf_counter()
        clf = EvaluatorClassifier(SentenceTransformerEmbedder(batch_size=64))
        load_s = time.perf_counter() - t

        # one score per sample: the highest sentence logit over its fields
        def sample_scores(samples: Sequence[Sample]) -> np.ndarray:
            per = [
                [
                    sent
                    for name in ("instruction", "input", "response")
                    if getattr(s, name)
                    for sent in sentences(getattr(s, name))
                ]
                for s in samples
            ]
            t0 = time.process_time()
            flat = clf.sentence_scores([x for p in per for x in p])
            dt_s = time.process_time() - t0
            out, k = [], 0
            for p in per:
                out.append(float(flat[k : k + len(p)].max()) if p else float("-inf"))
                k += len(p)
            batch[0] += dt_s
            batch[1] += len(samples)
            return np.array(out)

        batch = [0.0, 0]
        a_sc, b_sc = sample_scores(a_samples), sample_scores(b_samples)
        cost["classifier (batched, per sample)"] = batch[0] / batch[1] * 1e6
        one = b_samples[:20]
        t = time.process_time()
        for s in one:
            clf.check(s)
        cost["classifier (one sample at a time)"] = (time.process_time() - t) / len(one) * 1e6
        th = DEFAULT_THRESHOLD
        res["attack"]["classifier"] = list(a_sc >= th)
        res["benign"]["classifier"] = list(b_sc >= th)
        res["attack"]["union"] = [
            a or b for a, b in zip(res["attack"]["scan"], res["attack"]["classifier"], strict=True)
        ]
        res["benign"]["union"] = [
            a or b for a, b in zip(res["benign"]["scan"], res["benign"]["classifier"], strict=True)
        ]
        for x in THRESHOLDS:
            sweep.append(
                (
                    x,
                    int((a_sc >= x).sum()),
                    int(((a_sc >= x) | np.array(res["attack"]["scan"])).sum()),
                    int((b_sc >= x).sum()),
                    int(((b_sc >= x) | np.array(res["benign"]["scan"])).sum()),
                )
            )
        clf_info = f"classifier: all-MiniLM-L6-v2, threshold {th:g} (logit), model load + prototype fit {load_s:.1f} s"
    checks = list(res["attack"])

    lines = [
        "# Judge injection detector: catch rate and false positives",
        "",
        f"Run {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average at start "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "    .venv/bin/python experiments/injection/detector.py" + (" --no-classifier" if args.no_classifier else ""),
        "",
        f"Checks: `old` = the scan at commit {args.baseline} (before this work), `scan` = the scan now"
        + (
            ", `classifier` = the embedding classifier alone, `union` = scan or classifier (the policy)."
            if clf_info
            else "."
        ),
        (clf_info + "." if clf_info else ""),
        "",
        "## Overall",
        "",
        "| set | n | " + " | ".join(checks) + " |",
        "|---|---|" + "---|" * len(checks),
    ]
    for set_name in sorted({a[0] for a in atk}):
        idx = [i for i, a in enumerate(atk) if a[0] == set_name]
        row = [_pct(sum(res["attack"][c][i] for i in idx), len(idx)) for c in checks]
        lines.append(f"| attacks: {set_name} (caught) | {len(idx)} | " + " | ".join(row) + " |")
    for src in ("seed_tasks", "vicuna_questions", "benign_lookalikes"):
        idx = [i for i, b in enumerate(ben) if b[0] == src]
        row = [_pct(sum(res["benign"][c][i] for i in idx), len(idx)) for c in checks]
        lines.append(f"| benign: {src} (flagged) | {len(idx)} | " + " | ".join(row) + " |")
    row = [_pct(sum(res["benign"][c]), len(ben)) for c in checks]
    lines.append(f"| benign: all (false positives) | {len(ben)} | " + " | ".join(row) + " |")

    lines += ["", "## Attacks caught, per kind", "", "| set | kind | n | " + " | ".join(checks) + " |"]
    lines.append("|---|---|---|" + "---|" * len(checks))
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for i, (set_name, kind, _, _) in enumerate(atk):
        groups[(set_name, kind)].append(i)
    for (set_name, kind), idx in groups.items():
        row = [f"{sum(res['attack'][c][i] for i in idx)}/{len(idx)}" for c in checks]
        lines.append(f"| {set_name} | {kind} | {len(idx)} | " + " | ".join(row) + " |")

    if sweep:
        na, nb = len(atk), len(ben)
        lines += [
            "",
            "## Trade-off: classifier threshold",
            "",
            "| threshold (logit) | classifier catches | union catches | classifier FP | union FP |",
            "|---|---|---|---|---|",
        ]
        for x, ca, ua, cb, ub in sweep:
            lines.append(f"| {x:g} | {_pct(ca, na)} | {_pct(ua, na)} | {_pct(cb, nb)} | {_pct(ub, nb)} |")

    lines += ["", "## Misses and false positives of the scan now", ""]
    for i, (set_name, kind, rid, _) in enumerate(atk):
        if not res["attack"]["scan"][i]:
            extra = " (classifier: caught)" if res["attack"].get("classifier", [False] * len(atk))[i] else ""
            lines.append(f"- missed: {set_name} {rid} ({kind}){extra}")
    for i, (src, rid, _) in enumerate(ben):
        if res["benign"]["scan"][i]:
            lines.append(
                f"- false positive: {src} {rid}: {', '.join(f'{f.family}@{f.field} {f.excerpt!r}' for f in flags_now['benign'][i])}"
            )
        elif res["benign"].get("classifier", [False] * len(ben))[i]:
            lines.append(f"- false positive (classifier only): {src} {rid}")

    lines += ["", "## Cost per sample (CPU time of this process)", "", "| check | per sample |", "|---|---|"]
    for name, us in cost.items():
        lines.append(f"| {name} | {us / 1000:.2f} ms |" if us >= 1000 else f"| {name} | {us:.0f} µs |")
    lines.append("")
    out = Path(args.out)
    notes = ""  # hand-written notes below the marker survive a re-run
    if out.exists() and NOTES in (old := out.read_text(encoding="utf-8")):
        notes = old[old.index(NOTES) :]
    out.write_text("\n".join(lines) + ("\n" + notes if notes else ""), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
