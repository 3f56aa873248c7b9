"""One prompt's results on examples, and the report the search keeps of them.

A prompt's report is its sample's ``response``; everything the search later needs
from an evaluation is in it, so it survives the event log, resume and Ray workers:

- ``dev-set score: R/N`` and up to three val ``mistakes`` (shown by ``error_hint``);
- ``val_scores: 1 0 0.5 ...``: the score of every val example, in val order (the
  per-instance Pareto parent selection reads them);
- ``train minibatch: R/K`` and one ``trace:`` line per training example
  (:func:`qdsearch.operators.reflective.trace_line`: input, the target's output,
  expected answer, the scorer's feedback), which the ``reflect`` operator shows and
  the minibatch gate compares a child with;
- the ``guards:`` line (:class:`qdsearch.domains.scoring.Guards`).

The test split is never written into a report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qdsearch.domains.scoring import Guards, Verdict
from qdsearch.domains.task_prompt.data import DevExample
from qdsearch.operators.reflective import Trace, trace_line

__all__ = ["ExampleResult", "dev_errors", "guards_of", "report", "val_scores"]


@dataclass(frozen=True)
class ExampleResult:
    """One example run with a prompt: the target's reply and its verdict.

    Attributes:
        example: the example.
        output: the target's reply (stripped).
        verdict: its score and the reason it was marked wrong (``scorer_error`` when
            the scorer raised: the example counts as wrong and the error is the detail).
        completion_tokens: tokens of the reply (0 if the endpoint reports none).
        cut: the reply stopped at ``max_tokens``.
        hedged: the (extracted) reply names more than one candidate answer.
        short_score: the score of the reply's first words (-1: not computed).
        lenient_score: the score under "the expected answer appears anywhere".
    """

    example: DevExample
    output: str
    verdict: Verdict
    completion_tokens: int = 0
    cut: bool = False
    hedged: bool = False
    short_score: float = -1.0
    lenient_score: float = 0.0

    @property
    def feedback(self) -> str:
        """Why the reply was right or wrong, in one sentence."""
        return self.verdict.feedback(self.example.expected)

    def trace(self) -> Trace:
        ex = self.example
        return Trace(ex.key, ex.input, self.output, ex.expected, self.feedback, self.verdict.score)


def _short(s: str, n: int = 160) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def guards_of(results: Sequence[ExampleResult], max_tokens: int) -> Guards:
    n = len(results)
    return Guards(
        n=n,
        hedged=sum(r.hedged for r in results),
        cut=sum(r.cut for r in results),
        reply_tokens=sum(r.completion_tokens for r in results) / max(n, 1),
        max_tokens=max_tokens,
        short_score=-1.0 if any(r.short_score < 0 for r in results) else sum(r.short_score for r in results),
        lenient_score=sum(r.lenient_score for r in results),
    )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}".rstrip("0")


def report(
    val: Sequence[ExampleResult] | None, train: Sequence[ExampleResult], guards: Guards, label: str = "dev-set"
) -> str:
    """The report text (see the module docstring); ``val`` None: a gated-out child's
    report, with its minibatch only."""
    lines: list[str] = []
    if val is not None:
        right = sum(r.verdict.score for r in val)
        lines.append(f"{label} score: {right:.1f}/{len(val)}")
        mistakes = [r for r in val if not r.verdict.correct]
        if mistakes:
            lines.append("mistakes:")
            lines += [f"- input: {_short(r.example.input)} | expected: {_short(r.example.expected, 60)} | "
                      f"got: {_short(r.output)} | why: {_short(r.feedback, 120)}" for r in mistakes[:3]]  # fmt: skip
        lines.append("val_scores: " + " ".join(_num(r.verdict.score) for r in val))
    if train:
        lines.append(f"train minibatch: {sum(r.verdict.score for r in train):.1f}/{len(train)}")
        lines += [trace_line(r.trace()) for r in train]
    lines.append(guards.line())
    return "\n".join(lines)


_VAL = re.compile(r"^val_scores: ?(.*)$", re.MULTILINE)


def val_scores(report_text: str) -> list[float] | None:
    """The per-val-example scores of a report, or None when it has none."""
    m = _VAL.search(report_text)
    if m is None:
        return None
    try:
        return [float(x) for x in m.group(1).split()]
    except ValueError:
        return None


def dev_errors(report_text: str) -> Sequence[str]:
    """The mistake lines of a prompt's dev-set report."""
    return [ln for ln in report_text.splitlines() if ln.startswith("- input: ")]
