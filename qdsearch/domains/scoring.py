"""Scoring a target's reply against an expected answer, in ways hedging cannot satisfy.

A task's *candidate answers* are its label set when it has one (``[domain]
labels = [...]``, or detected from the dev set: see :meth:`LabelSet.detect`),
else every distinct expected answer of its dev set. The matching rule, used by
``contains`` scoring and by the gaming guards:

- text and labels are compared as lower-cased (``casefold``) runs of letters and
  digits, so case, punctuation, underscores and hyphens do not matter
  (``"Tech-Support"`` names ``tech support``);
- a label is named only as whole words (``account`` is not named by
  ``accounting``, nor ``bill`` by ``billing``);
- a match never spans punctuation such as ``, . : ; ! ? ( )``
  (``"x, y"`` does not name a label ``x y``);
- where labels overlap, the longest one wins at each position, scanning left to
  right (with labels ``spam`` and ``not spam``, ``"not spam"`` names only
  ``not spam``);
- repeating a label is fine (``"billing. Category: billing"`` names one label).

A reply is **correct** under ``contains`` when it names exactly one candidate
answer and that is the expected one. A reply that names several (``"billing,
shipping or account"``) is wrong even when the expected one is among them, and
so is one that names none. Negations are not understood: ``"not billing but
shipping"`` names two labels. Prompts that reason before answering should set
``answer_pattern`` so that only the extracted final answer is scored.
``exact`` and ``regex`` compare the (extracted) answer with the expected one as
before.

Every scored example gets a :class:`Verdict` whose ``reason`` says why it was
marked wrong (``several_labels``, ``no_label``, ``wrong_label``, ``mismatch``,
``no_answer``...) and whose :meth:`Verdict.feedback` is a sentence for the
mutation model. :class:`Guards` are the per-evaluation figures that catch
gaming (replies naming several labels, reply length against the target's
``max_tokens``, the score of the replies' first words, the lenient
"expected appears anywhere" score); :func:`summarize` turns the elites' guard
lines into a per-campaign summary with warnings.

Everything here is pure: no I/O, no model calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CLASSIFY_MAX_TOKENS",
    "FREE_MAX_TOKENS",
    "SHORT_REPLY_WORDS",
    "Guards",
    "LabelSet",
    "Verdict",
    "contains_anywhere",
    "extract",
    "key",
    "parse_guards",
    "score_reply",
    "short_reply",
    "summarize",
]

CLASSIFY_MAX_TOKENS = 16
"""The target's default ``max_tokens`` for a label task without ``answer_pattern``."""
FREE_MAX_TOKENS = 256
"""The target's default ``max_tokens`` otherwise (free-text answers, reasoning)."""
SHORT_REPLY_WORDS = 8
"""Words of a reply kept for the short-reply score: about 12 tokens. At temperature 0
a reply generated with a small ``max_tokens`` is a prefix of the longer one."""

_TOKEN = re.compile(r"[^\W_]+")
# Punctuation that ends a phrase: a label never matches across it.
_BREAK = re.compile(r"[^\w\s'\-/]+")


def key(text: str) -> tuple[str, ...]:
    """The words ``text`` is matched by: case-folded runs of letters and digits."""
    return tuple(_TOKEN.findall(text.casefold()))


@dataclass(frozen=True)
class LabelSet:
    """The candidate answers of a task and the rule that finds them in a reply.

    Attributes:
        labels: the labels as written (first spelling seen), in order.
        free_text: True when these are a free-text task's expected answers rather
            than a label set (only changes the words of the feedback).
    """

    labels: tuple[str, ...]
    free_text: bool = False

    def __post_init__(self) -> None:
        keys = [key(lab) for lab in self.labels]
        if any(not k for k in keys):
            raise ValueError(
                f"a label has no letters or digits: {[lab for lab, k in zip(self.labels, keys, strict=True) if not k]}"
            )
        if len(set(keys)) != len(keys):
            raise ValueError("labels must differ after ignoring case and punctuation")
        by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for k, lab in sorted(zip(keys, self.labels, strict=True), key=lambda kl: -len(kl[0])):
            by_first.setdefault(k[0], []).append((k, lab))
        object.__setattr__(self, "_by_first", by_first)
        object.__setattr__(self, "_of_key", dict(zip(keys, self.labels, strict=True)))

    @classmethod
    def detect(cls, answers: Sequence[str], given: Sequence[str] = ()) -> LabelSet:
        """The candidate answers of a task with these expected answers.

        ``given`` labels are used as they are. Otherwise the answers form a label
        set when there are 2 to 20 distinct ones (ignoring case and punctuation),
        each of at most 5 words, and at most half as many as there are answers (each
        label appears twice on average); if not, every distinct answer is a
        candidate (``free_text``).

        Raises:
            ValueError: a given label has no letters or digits, or two given labels
                differ only in case or punctuation.
        """
        if given:
            return cls(tuple(given))
        distinct: dict[tuple[str, ...], str] = {}
        for a in answers:
            k = key(a)
            if k:
                distinct.setdefault(k, a.strip())
        labelish = 2 <= len(distinct) <= 20 and len(distinct) * 2 <= len(answers) and all(len(k) <= 5 for k in distinct)
        return cls(tuple(distinct.values()), free_text=not labelish)

    def canonical(self, text: str) -> str | None:
        """The label ``text`` is a spelling of, or None."""
        return self._of_key.get(key(text))  # type: ignore[attr-defined, no-any-return]

    def named(self, text: str) -> tuple[str, ...]:
        """The distinct labels ``text`` names, in order of first mention."""
        found: list[str] = []
        by_first: dict[str, list[tuple[tuple[str, ...], str]]] = self._by_first  # type: ignore[attr-defined]
        for chunk in _BREAK.split(text):
            toks = key(chunk)
            i = 0
            while i < len(toks):
                for k, lab in by_first.get(toks[i], ()):
                    if toks[i : i + len(k)] == k:
                        if lab not in found:
                            found.append(lab)
                        i += len(k)
                        break
                else:
                    i += 1
        return tuple(found)


@dataclass(frozen=True)
class Verdict:
    """How one reply scored, and why.

    Attributes:
        score: in [0, 1] (1.0 or 0.0 for rule-based scoring).
        reason: ``correct``; ``several_labels``, ``no_label``, ``wrong_label``
            (label sets under ``contains``); ``other_answers``, ``missing``,
            ``wrong_answer`` (free text under ``contains``); ``mismatch``
            (``exact``/``regex``); ``no_answer`` (``answer_pattern`` found nothing);
            ``graded`` (``judge``); ``scorer_error`` (the scorer raised: counted
            as wrong, the error in ``detail``).
        named: the candidate answers the (extracted) reply names.
        detail: extra words (the grader's reason under ``judge``, the answer given
            under ``exact``/``regex``, the error under ``scorer_error``).
    """

    score: float
    reason: str
    named: tuple[str, ...] = ()
    detail: str = ""

    @property
    def correct(self) -> bool:
        return self.score >= 0.5

    def feedback(self, expected: str) -> str:
        """One sentence saying why the reply was right or wrong."""
        names = ", ".join(self.named)
        return {
            "correct": "correct",
            "several_labels": f"named several labels ({names}); exactly one is wanted: {expected}",
            "no_label": f"named none of the labels; expected {expected}",
            "wrong_label": f"named {names}; expected {expected}",
            "other_answers": f"also named other candidate answers ({names}); expected only {expected}",
            "missing": f"does not contain the expected answer {expected}",
            "wrong_answer": f"answered {names}; expected {expected}",
            "mismatch": (f"answered {self.detail!r}, " if self.detail else "the answer is ")
            + f"not exactly {expected}",
            "no_answer": "the answer pattern found no answer in the reply",
            "graded": f"graded {self.score:.2f} against the reference {expected}"
            + (f": {self.detail}" if self.detail else ""),
            "scorer_error": f"could not be scored, so counted as wrong ({self.detail}); expected {expected}",
        }.get(self.reason, self.reason)


def extract(output: str, pattern: str) -> str | None:
    """The answer in ``output``: ``pattern``'s first group (or whole match), or the output."""
    if not pattern:
        return output
    m = re.search(pattern, output, flags=re.IGNORECASE | re.DOTALL)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


def _norm(text: str) -> str:
    return " ".join(key(text))


def contains_anywhere(output: str, expected: str, pattern: str = "") -> float:
    """The lenient rule ``contains`` used to be: the expected answer appears as whole
    words anywhere, whatever else the reply names. Kept only as a guard figure."""
    answer = extract(output, pattern)
    e = key(expected)
    if answer is None or not e:
        return 0.0
    return 1.0 if re.search(rf"(^| ){re.escape(' '.join(e))}( |$)", _norm(answer)) else 0.0


def score_reply(output: str, expected: str, scoring: str, labels: LabelSet | None = None, pattern: str = "") -> Verdict:
    """Scores one reply by a rule (``exact``, ``contains``, ``regex``).

    Args:
        output: the target's reply.
        expected: the expected answer.
        scoring: ``exact``, ``regex`` (same as exact after extraction) or ``contains``.
        labels: the task's candidate answers; under ``contains`` a reply naming any
            candidate besides the expected one is wrong. None: the expected answer
            is the only candidate (so ``contains`` cannot see hedging).
        pattern: ``answer_pattern``; only the extracted answer is scored.
    """
    answer = extract(output, pattern)
    if answer is None:
        return Verdict(0.0, "no_answer")
    if scoring != "contains":
        ok = bool(key(expected)) and _norm(answer) == _norm(expected)
        said = " ".join(answer.split())
        return Verdict(1.0, "correct") if ok else Verdict(0.0, "mismatch", detail=said[:80])
    cands = labels if labels is not None and labels.canonical(expected) is not None else LabelSet((expected,))
    named = cands.named(answer)
    want = cands.canonical(expected)
    free = cands.free_text or labels is None
    if named == (want,):
        return Verdict(1.0, "correct", named)
    if not named:
        return Verdict(0.0, "missing" if free else "no_label")
    if want in named:
        return Verdict(0.0, "other_answers" if free else "several_labels", named)
    if len(named) > 1 and not free:
        return Verdict(0.0, "several_labels", named)
    return Verdict(0.0, "wrong_answer" if free else "wrong_label", named)


def short_reply(output: str, words: int = SHORT_REPLY_WORDS) -> str:
    """The first ``words`` whitespace-separated words of ``output``."""
    return " ".join(output.split()[:words])


@dataclass(frozen=True)
class Guards:
    """Figures of one prompt's evaluation that show a score won by gaming.

    Attributes:
        n: scored examples.
        hedged: replies (their extracted answers) naming more than one candidate answer.
        cut: replies that stopped at ``max_tokens`` (``finish_reason = "length"``).
        reply_tokens: mean completion tokens of the replies.
        max_tokens: the target's ``max_tokens``.
        short_score: summed score of the replies' first :data:`SHORT_REPLY_WORDS`
            words (-1 when not computed: ``judge`` scoring).
        lenient_score: summed score under :func:`contains_anywhere`.
    """

    n: int
    hedged: int
    cut: int
    reply_tokens: float
    max_tokens: int
    short_score: float
    lenient_score: float

    def line(self) -> str:
        """The report line (``guards: ...``), parsed back by :func:`parse_guards`."""
        short = "n/a" if self.short_score < 0 else f"{self.short_score:.1f}/{self.n}"
        return (
            f"guards: hedged={self.hedged}/{self.n} cut={self.cut}/{self.n} "
            f"reply_tokens={self.reply_tokens:.1f} max_tokens={self.max_tokens} "
            f"short_score={short} lenient_score={self.lenient_score:.1f}/{self.n}"
        )


_GUARD_LINE = re.compile(
    r"^guards: hedged=(\d+)/(\d+) cut=(\d+)/\d+ reply_tokens=([\d.]+) max_tokens=(\d+) "
    r"short_score=(n/a|[\d.]+)(?:/\d+)? lenient_score=([\d.]+)/\d+$",
    re.MULTILINE,
)


def parse_guards(report: str) -> Guards | None:
    """The :class:`Guards` in a prompt's dev-set report, or None if it has none."""
    m = _GUARD_LINE.search(report)
    if m is None:
        return None
    h, n, cut, tok, mt, short, lenient = m.groups()
    return Guards(
        int(n), int(h), int(cut), float(tok), int(mt), -1.0 if short == "n/a" else float(short), float(lenient)
    )


HEDGE_WARN = 0.25
"""Share of hedged replies among the best elites' that makes a campaign warn."""
GAP_WARN = 0.25
"""Dev score minus short-reply score (both as shares) of the best elites that warns."""


def summarize(elites: Iterable[tuple[float, str]], top: int = 3) -> dict[str, object]:
    """Per-campaign gaming guards from the elites' (quality, dev-set report) pairs.

    Returns:
        ``{"elites", "hedged_share", "top": {"n", "hedged_share", "reply_tokens",
        "max_tokens", "cut_share", "dev_score", "short_score", "lenient_score",
        "gap"}, "warnings": [str, ...]}``; shares are over scored examples. Empty
        (``{}``) when no elite has a guard line.
    """
    rows = [(q, g) for q, rep in elites if (g := parse_guards(rep)) is not None and g.n > 0]
    if not rows:
        return {}
    rows.sort(key=lambda qg: -qg[0])
    best = rows[:top]

    def share(gs: Sequence[Guards], f: str) -> float:
        return sum(float(getattr(g, f)) for g in gs) / sum(g.n for g in gs)

    gs = [g for _, g in best]
    dev = sum((q - 1.0) / 9.0 * g.n for q, g in best) / sum(g.n for g in gs)
    short = share(gs, "short_score") if all(g.short_score >= 0 for g in gs) else None
    top_d: dict[str, object] = {
        "n": len(best),
        "hedged_share": round(share(gs, "hedged"), 4),
        "cut_share": round(share(gs, "cut"), 4),
        "reply_tokens": round(sum(g.reply_tokens * g.n for g in gs) / sum(g.n for g in gs), 2),
        "max_tokens": max(g.max_tokens for g in gs),
        "dev_score": round(dev, 4),
        "short_score": None if short is None else round(short, 4),
        "lenient_score": round(share(gs, "lenient_score"), 4),
        "gap": None if short is None else round(dev - short, 4),
    }
    warnings: list[str] = []
    if float(top_d["hedged_share"]) >= HEDGE_WARN:  # type: ignore[arg-type]
        warnings.append(
            f"the best {len(best)} elites' replies name several labels on {float(top_d['hedged_share']):.0%} "  # type: ignore[arg-type]
            "of dev examples: their scores may come from hedging, not from solving the task"
        )
    if short is not None and dev - short >= GAP_WARN:
        warnings.append(
            f"the best {len(best)} elites score {dev:.2f} on the dev set but {short:.2f} on their replies' first "
            f"{SHORT_REPLY_WORDS} words: the score depends on long replies"
        )
    return {
        "elites": len(rows),
        "hedged_share": round(share([g for _, g in rows], "hedged"), 4),
        "top": top_d,
        "warnings": warnings,
    }
