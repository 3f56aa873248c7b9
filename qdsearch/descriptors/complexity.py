"""Complexity descriptor: what a task demands, counted without a model, blended with the judge.

The LLM-free part (:func:`structural_complexity`) counts what makes a task harder
to satisfy, not how long it is:

==============  =====================================================================
constraints     clauses that require, limit or forbid something (``must``, ``at most
                50 words``, ``do not``, ``avoid``, ``include``, ``in the style of``...)
formats         required output forms (JSON, table, bullet list, N paragraphs, code)
steps           demanded reasoning or procedure (step by step, explain why, prove,
                compare, enumerated items, first/then/finally)
sub-questions   questions and task verbs beyond the first
inputs          material to work on (a separate input, code, data, quoted text)
technical       formal content (equations, numbers in computations, code tokens)
==============  =====================================================================

Each clause (a sentence or list item) counts at most once per kind, so neutral
filler adds nothing and every added explicit requirement adds about one point;
the sum maps to ``[1, 10]`` by ``1 + 9 (1 - exp(-s / 4))``. Length only breaks
ties (at most +0.3 for a very long text).

:func:`blend_complexity` mixes it with the judged complexity. The blend weight is
frozen per run at the seed phase, where the judged part is calibrated against the
LLM-free one: :func:`judged_is_degenerate` detects a judge that gives (almost) every
seed the same complexity bin, :func:`judged_disagrees` one whose ranking of the seeds
has no positive relation to what the tasks demand; either way the campaign uses the
LLM-free measure alone and says why. How judged complexity follows evolution depth
(a child of ``add_constraints`` or ``deepen`` should be at least as complex as its
parent) is measured per operator from the event log by
:func:`qdsearch.campaign.calibration.depth_monotonicity`.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qdsearch.descriptors.base import Axis, FitData, Observation, register
from qdsearch.types import Sample

if TYPE_CHECKING:
    from qdsearch.config import CampaignConfig

__all__ = [
    "COMPLEXITY_RANGE",
    "ComplexityDescriptor",
    "blend_complexity",
    "cheap_complexity",
    "choose_blend",
    "complexity_features",
    "count_constraints",
    "judged_is_degenerate",
    "structural_complexity",
]

_I = re.IGNORECASE

_CONSTRAINT = re.compile(
    r"\b(?:must|should|shall|need(?:s)? to|has to|have to|make sure|ensure|be sure|required?|requirement|"
    r"at least|at most|no more than|no less than|fewer than|less than|more than|up to|exactly|maximum|minimum|"
    r"under \d+|within \d+|limit(?:ed)? to|keep it|keep (?:the|your)|only|without|avoid|never|do not|don't|"
    r"cannot|can't|must not|refrain|exclude|except|include|including|mention|cite|reference|incorporate|"
    r"use (?:a|an|the|only|exactly|at|no|simple|formal|plain|one|two|three|\d+)|written (?:in|for|as)|"
    r"write (?:it )?(?:in|for|as)|in the (?:style|voice|tone) of|tone|audience|suitable for|aimed at|"
    r"for (?:a|an) (?:beginner|child|expert|\d+-year-old)|begin with|start with|end with|finish with|"
    r"each|every|per|rhym\w*|alliterat\w*|acrostic|palindrom\w*|deadline|budget of|assume)\b",
    _I,
)
_FORMAT = re.compile(
    r"\b(?:json|yaml|xml|csv|markdown|html|latex|table|tabular|bullet(?:ed)?(?: points?)?|numbered|list|"
    r"headings?|sections?|columns?|code block|pseudo-?code|diagram|outline|template|format(?:ted)?|"
    r"\d+ (?:words?|sentences?|paragraphs?|lines?|items?|points?|bullets?|examples?|steps?|options?|tips?|"
    r"reasons?|ideas?|questions?|characters?|syllables?|stanzas?)|"
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten) (?:words?|sentences?|paragraphs?|lines?|items?|"
    r"points?|bullets?|examples?|steps?|options?|tips?|reasons?|ideas?|questions?|stanzas?)|"
    r"haiku|sonnet|limerick|title|summary table|subject line)\b",
    _I,
)
_STEPS = re.compile(
    r"\b(?:step[- ]by[- ]step|steps?|explain (?:why|how)|justify|prove|derive|show (?:your|the) (?:work|reasoning)|"
    r"reason(?:ing)?|walk (?:me |the reader )?through|compare|contrast|analy[sz]e|evaluate|assess|critique|"
    r"trade-?offs?|pros and cons|advantages and disadvantages|first(?:ly)?|second(?:ly)?|then|next|finally|"
    r"afterwards|followed by|before|after that|in order|sequence|plan|strategy|optimi[sz]e|debug|design|"
    r"calculate|compute|estimate|solve|determine|deduce|infer)\b",
    _I,
)
_TASK_VERB = re.compile(
    r"(?:^|[.!?;:,]\s*|\b(?:and|then|also|first|next|finally|and then)\s+)(?:please )?(?:write|list|explain|describe|compare|give|provide|"
    r"calculate|compute|summari[sz]e|translate|classify|identify|suggest|propose|design|create|draft|generate|"
    r"rewrite|analy[sz]e|evaluate|prove|derive|estimate|find|name|outline|discuss|convert|extract|implement|"
    r"solve|recommend|rank|predict|justify|argue|plan|compose|define|illustrate)\b",
    _I,
)
_TECH = re.compile(
    r"(?:\d+\s*[-+*/^=<>%]\s*\d+|[=<>]\s*-?\d|\b\d+(?:\.\d+)?\s*(?:km|kg|m|cm|mm|s|ms|h|hours?|minutes?|%|"
    r"dollars?|usd|eur)\b|\b(?:def|return|class|function|select|from|where|join|import|lambda|array|"
    r"algorithm|complexity|equation|integral|derivative|matrix|vector|probability|theorem|lemma|variable|"
    r"regex|api|sql|python|javascript|java|c\+\+|rust|recursion|big-o|o\(n)\b|[{}\[\];]|\$[^$]+\$)",
    _I,
)
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+|,\s*(?=(?:and |but |then |while |using |without |with |in )?\w)")
_ENUMERATED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)

# The fast path (``complexity_features`` runs on every child). ``re`` tries an
# IGNORECASE alternation branch by branch at every position; the same pattern without
# the flag rejects a branch on its first letter, 3-5x faster. So the patterns (whose
# literals are all lower case) run case-sensitively on :func:`_folded` text, which
# they match exactly where the IGNORECASE ones match the text, at the same positions.
_CONSTRAINT_F = re.compile(_CONSTRAINT.pattern)
_FORMAT_F = re.compile(_FORMAT.pattern)
_STEPS_F = re.compile(_STEPS.pattern)
_TASK_VERB_F = re.compile(_TASK_VERB.pattern)
_TECH_F = re.compile(_TECH.pattern)
# ``_CLAUSE_SPLIT`` (the definition of a clause) led by the character class its every
# match starts with, so ``re`` skips to candidates: the same alternatives in the same
# order, the same matches, twice as fast.
_CLAUSE_SEP = re.compile(
    r"[\s,](?:(?<=[.!?;]\s)\s*|(?<=\n)\n*|(?<=,)\s*(?=(?:and |but |then |while |using |without |with |in )?\w))"
)
# The four characters ``re`` matches to an ASCII letter under IGNORECASE (lower() maps
# U+0130 to two characters and leaves U+0131 and U+017F alone).
_RE_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_FOLD_CHARS = re.compile("[\u0130\u0131\u017f\u212a]")


def _folded(text: str) -> str:
    """``text`` as the case-sensitive patterns read it: ASCII letters lower-cased, the
    four IGNORECASE folds mapped to their letter, one character for one (``lower()``
    of any other character is one character, never ASCII, and keeps ``\\w``, ``\\d``
    and ``\\s`` as they were: the tests check every code point)."""
    if text.isascii():
        return text.lower()
    if _FOLD_CHARS.search(text):
        text = text.translate(_RE_FOLDS)
    return text.lower()


def _matching_clauses(pattern: re.Pattern[str], low: str, seps: list[int]) -> int:
    """How many clauses (the pieces between the separators ``seps``, their start
    positions, then a sentinel ``len(low)``) hold a match of ``pattern`` in ``low``.

    Searching the whole text finds what searching each clause finds: a match of the
    per-clause patterns starts with a word character and holds only word characters,
    spaces and hyphens, while a separator is a comma, newlines, or white space after a
    ``.!?;`` that ends the clause before it; so a match lies inside one clause, and
    the text next to a clause's edges is non-word either way (``\\b`` reads the same).
    After a match the search resumes at the end of its clause."""
    n = 0
    search = pattern.search
    m = search(low)
    while m is not None:
        n += 1
        end = seps[bisect_left(seps, m.end())]
        if end >= len(low):
            break
        m = search(low, end)
    return n


def count_constraints(text: str) -> int:
    """Number of clauses of ``text`` that state a requirement, limit or prohibition."""
    low = _folded(text)
    return _matching_clauses(_CONSTRAINT_F, low, _separators(text))


def _separators(text: str) -> list[int]:
    """The start positions of the clause separators of ``text``, then ``len(text)``."""
    seps = [m.start() for m in _CLAUSE_SEP.finditer(text)]
    seps.append(len(text))
    return seps


def complexity_features(sample: Sample) -> dict[str, float]:
    """The counts behind :func:`structural_complexity`, by kind (see the module doc)."""
    instr = sample.instruction or ""
    low = _folded(instr)
    seps = _separators(instr)
    constraints = _matching_clauses(_CONSTRAINT_F, low, seps)
    formats = _matching_clauses(_FORMAT_F, low, seps)
    steps = _matching_clauses(_STEPS_F, low, seps) + 0.5 * len(_ENUMERATED.findall(instr))
    questions = instr.count("?")
    verbs = len(_TASK_VERB_F.findall(low))
    subq = max(0, questions + verbs - 1)
    inp = sample.input or ""
    inputs = 0.0
    if inp.strip():
        inputs = 1.0 + min(2.0, math.log1p(len(inp.split())) / math.log(20.0))
    if "```" in instr or "\n    " in instr:
        inputs += 1.0
    technical = min(4.0, 0.5 * len(_TECH_F.findall(_folded(instr + "\n" + inp))))
    return {
        "constraints": float(constraints),
        "formats": float(formats),
        "steps": float(steps),
        "subquestions": float(min(subq, 6)),
        "inputs": float(inputs),
        "technical": float(technical),
    }


COMPLEXITY_RANGE = (1.0, 10.0)

_WEIGHTS = {"constraints": 1.0, "formats": 0.7, "steps": 0.8, "subquestions": 0.6, "inputs": 0.7, "technical": 0.5}
_SCALE = 4.0


def structural_complexity(sample: Sample) -> float:
    """A model-free complexity in [1, 10] from what the task demands (see the module doc)."""
    f = complexity_features(sample)
    s = sum(_WEIGHTS[k] * v for k, v in f.items())
    words = len(sample.prompt_text().split())
    tie = 0.3 * min(1.0, math.log1p(words) / math.log1p(1000))
    return float(min(10.0, 1.0 + 9.0 * (1.0 - math.exp(-s / _SCALE)) + tie))


def cheap_complexity(sample: Sample) -> float:
    """The LLM-free complexity (an alias of :func:`structural_complexity`)."""
    return structural_complexity(sample)


def blend_complexity(judged: float, sample: Sample, weight: float) -> float:
    """``(1 - weight) * judged + weight * structural_complexity(sample)``, in [1, 10]."""
    if weight <= 0:
        return float(judged)
    if weight >= 1:
        return structural_complexity(sample)
    return float((1.0 - weight) * judged + weight * structural_complexity(sample))


def _top_share(values: Sequence[float], bins: int) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return 0.0
    idx = np.clip(((v - 1.0) / 9.0 * bins).astype(int), 0, bins - 1)
    return float(np.bincount(idx, minlength=bins).max() / v.size)


def judged_is_degenerate(
    judged: Sequence[float], bins: int, structural: Sequence[float] = (), share: float = 0.8
) -> tuple[bool, float]:
    """Whether judged complexities are (nearly) constant while the texts are not.

    Degenerate: ``share`` or more of ``judged`` fall in one of ``bins`` equal bins over
    [1, 10], and the LLM-free complexities of the same texts (``structural``, when
    given) are spread more (their largest bin holds a smaller share): a judge that
    sees no difference where the tasks' structure shows one. Seeds that are all
    alike are not a weak judge. Fewer than 4 values are never called degenerate.

    Returns:
        (degenerate, the largest judged bin's share).
    """
    v = [x for x in judged if np.isfinite(x)]
    if len(v) < 4 or bins < 2:
        return False, 0.0
    top = _top_share(v, bins)
    if top < share:
        return False, top
    if structural and _top_share(structural, bins) >= top:
        return False, top
    return True, top


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size != y.size or x.size < 2:
        return float("nan")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=float)
        for val in np.unique(v):  # ties share their mean rank
            m = v == val
            r[m] = r[m].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def judged_disagrees(
    judged: Sequence[float], structural: Sequence[float], min_n: int = 12, rho_max: float = 0.0
) -> tuple[bool, float]:
    """Whether the judge ranks the seeds' complexity with no positive relation to the
    LLM-free measure: Spearman rho <= ``rho_max`` over at least ``min_n`` seeds whose
    LLM-free complexities differ. A capable judge sees more than structure, but it
    should not rank a plain question above one with four explicit requirements as
    often as the other way round.

    Returns:
        (disagrees, rho); rho is NaN when it cannot be computed.
    """
    pairs = [(j, s) for j, s in zip(judged, structural, strict=False) if np.isfinite(j) and np.isfinite(s)]
    if len(pairs) < min_n:
        return False, float("nan")
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    if not np.isfinite(rho):
        return False, rho
    return rho <= rho_max, rho


def choose_blend(cfg: CampaignConfig, judged: Sequence[float], structural: Sequence[float]) -> tuple[float, str]:
    """The run's complexity blend, chosen once from the judged seeds.

    The config's ``judge.complexity_blend``, or 1.0 (LLM-free only) when the judge
    gave nearly every seed the same complexity bin (:func:`judged_is_degenerate`).
    A blend of exactly 0 (judged only) or 1 is kept as asked, and so is any blend of
    a categorical or non-instruction domain.

    Args:
        cfg: the campaign config.
        judged: the judged seeds' complexities.
        structural: the same seeds' :func:`structural_complexity`.

    Returns:
        (the blend, a note for the user when it fell back to 1.0, else ``""``).
    """
    w = float(cfg.judge.complexity_blend)
    if not 0.0 < w < 1.0 or cfg.domain.categorical or cfg.domain.kind != "instruct":
        return w, ""
    bins = cfg.archive.complexity_bins
    degenerate, share = judged_is_degenerate(judged, bins, structural)
    if degenerate:
        why = f"judged complexity is nearly constant ({share:.0%} of {len(judged)} judged seeds in one of {bins} bins)"
    else:
        disagrees, rho = judged_disagrees(judged, structural)
        if not disagrees:
            return w, ""
        why = (
            f"judged complexity does not follow what the seeds demand (Spearman rho = {rho:.2f} with the "
            f"LLM-free measure over {len(judged)} judged seeds)"
        )
    note = (
        f"{why}: the complexity descriptor uses the LLM-free measure alone in this run "
        "(as judge.complexity_blend = 1.0); a more capable judge avoids this"
    )
    return 1.0, note


class ComplexityDescriptor:
    """The complexity axis: judged complexity blended with :func:`structural_complexity`.

    Fit: the blend weight, frozen per run (the config's, or 1.0 when the judge gave
    nearly every seed the same bin: :func:`judged_is_degenerate`); saved with the
    topic space as ``complexity_blend``. Compute: the judgement's complexity, which
    the campaign has already blended with the frozen weight.
    """

    name = "complexity"
    categorical = False

    def axes(self, cfg: CampaignConfig, frozen: Any = None) -> tuple[Axis, ...]:
        return (Axis("complexity", "complexity", COMPLEXITY_RANGE, cfg.archive.complexity_bins, key="c"),)

    def fit(self, cfg: CampaignConfig, data: FitData) -> float:
        judged = [o.judgement.complexity for o in data.seeds]
        return choose_blend(cfg, judged, [structural_complexity(o.sample) for o in data.seeds])[0]

    def compute(self, obs: Observation, frozen: Any = None) -> Sequence[float]:
        return [float(obs.judgement.complexity)]

    def fields(self, values: Sequence[float], axes: Sequence[Axis]) -> Mapping[str, Any]:
        return {}  # every record has ``complexity`` already

    def card_text(self, cfg: CampaignConfig, frozen: Any = None) -> str:
        return f"complexity ({cfg.archive.complexity_bins} bins; judged blended with an LLM-free count of requirements)"


register(ComplexityDescriptor())
