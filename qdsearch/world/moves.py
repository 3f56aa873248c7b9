"""How each operator moves the latent state: one small pure function per operator.

A move takes a :class:`MoveContext` (the parent's latent state, a second parent,
in-context examples, a hint, a generator and the world config) and returns the
child's state. :data:`MOVES` maps operator names to moves; an operator the world
does not know gets :func:`generic` (a rephrase or one more clause).

=====================  ======================================================
operator               characteristic move (noisy)
=====================  ======================================================
add_constraints        +1 clause (65 %) or +2
deepen                 +1 step (70 %) else +1 clause; 30 %: +1 detail
increase_reasoning     +1 step (60 %) or +2
concretize             +1 detail; 30 %: one more word of the same topic
complicate_input       +1 input record (60 %) or +2
in_breadth             jump to a topic not in parent/examples, same clause count
new_question           fresh task (1-3 words, 0-1 clause) on an unseen topic
question_rephrase      new opener; 50 % swap a word in-topic, 25 % from another topic
crossover              words, clauses, steps and details mixed from both parents
directional            follows its hint: harder, simpler, toward a named subject, ...
answer_augmentation    (response) answer level +1 (60 %) or +2; the task is unchanged
=====================  ======================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from qdsearch.world.model import (
    CLAUSES,
    DECEPTIVE_TOPIC,
    DETAILS,
    MAX_DATA,
    MAX_STEPS,
    MAX_WORDS,
    OPENERS,
    R_MAX,
    TOPICS,
    WORD_TOPIC,
    Latent,
    WorldConfig,
    parse_latent,
    topic_of,
    topics_in,
)

__all__ = ["MOVES", "RESPONSE_MOVES", "MoveContext", "generic", "generic_response", "stall"]


@dataclass(frozen=True)
class MoveContext:
    """What a move may use.

    Attributes:
        parent: the parent's state.
        rng: the move's randomness.
        cfg: the world config.
        partner: the second parent (crossover), if any.
        examples: states of the in-context example tasks.
        hint: the directional hint, ``""`` if none.
    """

    parent: Latent
    rng: np.random.Generator
    cfg: WorldConfig
    partner: Latent | None = None
    examples: tuple[Latent, ...] = ()
    hint: str = ""


Move = Callable[[MoveContext], Latent]
T = TypeVar("T")


# --------------------------------------------------------------------- helpers
def _chance(ctx: MoveContext, p: float) -> bool:
    return bool(ctx.rng.random() < p)


def _new_opener(latent: Latent, rng: np.random.Generator) -> Latent:
    choices = [i for i in range(len(OPENERS)) if i != latent.opener]
    return latent.with_(opener=choices[int(rng.integers(len(choices)))])


def _pick(rng: np.random.Generator, pool: Sequence[T], k: int) -> list[T]:
    k = min(k, len(pool))
    return [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)] if k else []


def _add_clauses(latent: Latent, n: int, rng: np.random.Generator) -> Latent:
    unused = [i for i in range(len(CLAUSES)) if i not in latent.clauses]
    return latent.with_(clauses=(*latent.clauses, *_pick(rng, unused, n)))


def _add_detail(latent: Latent, rng: np.random.Generator) -> Latent:
    unused = [i for i in range(len(DETAILS)) if i not in latent.details]
    return latent.with_(details=(*latent.details, *_pick(rng, unused, 1)))


def _target_topic(ctx: MoveContext, avoid: set[str]) -> str:
    """A topic to jump to: not in ``avoid`` where possible, pulled toward the deceptive
    topic with probability ``deceptive_pull`` when the trap is on."""
    if ctx.cfg.deceptive and DECEPTIVE_TOPIC not in avoid and _chance(ctx, ctx.cfg.deceptive_pull):
        return DECEPTIVE_TOPIC
    plain = [t for t in TOPICS if not (ctx.cfg.deceptive and t == DECEPTIVE_TOPIC)]
    pool = [t for t in plain if t not in avoid] or [t for t in plain if t != topic_of(ctx.parent)]
    return pool[int(ctx.rng.integers(len(pool)))]


def _words_of(topic: str, k: int, rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(_pick(rng, list(TOPICS[topic]), k))


def _swap_word(latent: Latent, topic: str, rng: np.random.Generator) -> Latent:
    """Replaces one word with an unused word of ``topic`` (no change if none is left)."""
    unused = [w for w in TOPICS[topic] if w not in latent.words]
    if not unused:
        return latent
    words = list(latent.words)
    words[int(rng.integers(len(words)))] = unused[int(rng.integers(len(unused)))]
    return latent.with_(words=tuple(words))


def _toward(latent: Latent, topic: str, rng: np.random.Generator) -> Latent:
    """One word of another topic replaced by (or, with room, one added from) ``topic``."""
    unused = [w for w in TOPICS[topic] if w not in latent.words]
    off = [i for i, w in enumerate(latent.words) if WORD_TOPIC[w] != topic]
    if not unused:
        return latent
    words = list(latent.words)
    new = unused[int(rng.integers(len(unused)))]
    if off:
        words[off[int(rng.integers(len(off)))]] = new
    elif len(words) < MAX_WORDS:
        words.append(new)
    return latent.with_(words=tuple(words))


# --------------------------------------------------------------------- moves
def stall(ctx: MoveContext) -> Latent:
    """No progress: the same task in other words (an operator that stopped helping)."""
    return _new_opener(ctx.parent, ctx.rng)


def add_constraints(ctx: MoveContext) -> Latent:
    child = _add_clauses(ctx.parent, 1 if _chance(ctx, 0.65) else 2, ctx.rng)
    return _new_opener(child, ctx.rng) if _chance(ctx, 0.3) else child


def deepen(ctx: MoveContext) -> Latent:
    p = ctx.parent
    child = p.with_(steps=p.steps + 1) if _chance(ctx, 0.7) and p.steps < MAX_STEPS else _add_clauses(p, 1, ctx.rng)
    return _add_detail(child, ctx.rng) if _chance(ctx, 0.3) else child


def increase_reasoning(ctx: MoveContext) -> Latent:
    p = ctx.parent
    return p.with_(steps=min(MAX_STEPS, p.steps + (1 if _chance(ctx, 0.6) else 2)))


def concretize(ctx: MoveContext) -> Latent:
    child = _add_detail(ctx.parent, ctx.rng)
    if _chance(ctx, 0.3) and len(child.words) < MAX_WORDS:
        more = [w for w in TOPICS[topic_of(child)] if w not in child.words]
        if more:
            child = child.with_(words=(*child.words, more[int(ctx.rng.integers(len(more)))]))
    return child


def complicate_input(ctx: MoveContext) -> Latent:
    p = ctx.parent
    return p.with_(data=min(MAX_DATA, p.data + (1 if _chance(ctx, 0.6) else 2)))


def in_breadth(ctx: MoveContext) -> Latent:
    p = ctx.parent
    avoid = {topic_of(p)} | {topic_of(e) for e in ctx.examples}
    topic = _target_topic(ctx, avoid)
    fresh = Latent(_words_of(topic, 2, ctx.rng), steps=p.steps, opener=p.opener)
    return _new_opener(_add_clauses(fresh, len(p.clauses), ctx.rng), ctx.rng)


def new_question(ctx: MoveContext) -> Latent:
    avoid = {topic_of(ctx.parent)} | {topic_of(e) for e in ctx.examples}
    topic = _target_topic(ctx, avoid)
    fresh = Latent(_words_of(topic, int(ctx.rng.integers(1, 4)), ctx.rng), opener=int(ctx.rng.integers(len(OPENERS))))
    return _add_clauses(fresh, int(ctx.rng.integers(0, 2)), ctx.rng)


def question_rephrase(ctx: MoveContext) -> Latent:
    child = _new_opener(ctx.parent, ctx.rng)
    u = ctx.rng.random()
    if u < 0.5:
        child = _swap_word(child, topic_of(child), ctx.rng)
    elif u < 0.75:
        others = [t for t in TOPICS if t not in topics_in(child)]
        child = _swap_word(child, others[int(ctx.rng.integers(len(others)))], ctx.rng)
    return child


def crossover(ctx: MoveContext) -> Latent:
    a, b = ctx.parent, ctx.partner
    if b is None:
        return question_rephrase(ctx)
    rng = ctx.rng
    words = list(a.words[: int(rng.integers(1, min(2, len(a.words)) + 1))])
    for w in b.words[: int(rng.integers(1, min(2, len(b.words)) + 1))]:
        if w not in words and len(words) < MAX_WORDS:
            words.append(w)
    clauses = sorted(set(a.clauses) | set(b.clauses))
    details = sorted(set(a.details) | set(b.details))
    return Latent(
        tuple(words),
        tuple(sorted(_pick(rng, clauses, max(len(a.clauses), len(b.clauses))))),
        max(a.steps, b.steps),
        tuple(sorted(_pick(rng, details, max(len(a.details), len(b.details))))),
        max(a.data, b.data),
        int(rng.integers(len(OPENERS))),
    )


def _simpler(ctx: MoveContext) -> Latent:
    p = ctx.parent
    options: list[Latent] = []
    if p.clauses:
        drop = int(ctx.rng.integers(len(p.clauses)))
        options.append(p.with_(clauses=p.clauses[:drop] + p.clauses[drop + 1 :]))
    if p.steps:
        options.append(p.with_(steps=p.steps - 1))
    if p.details:
        options.append(p.with_(details=p.details[:-1]))
    if p.data:
        options.append(p.with_(data=p.data - 1))
    if not options:
        return stall(ctx)
    return options[int(ctx.rng.integers(len(options)))]


def _harder(ctx: MoveContext) -> Latent:
    return increase_reasoning(ctx) if _chance(ctx, 0.35) and ctx.parent.steps < MAX_STEPS else add_constraints(ctx)


def _drift(ctx: MoveContext) -> Latent:
    others = [t for t in TOPICS if t not in topics_in(ctx.parent)]
    return _swap_word(ctx.parent, others[int(ctx.rng.integers(len(others)))], ctx.rng)


_TOWARD = re.compile(r"toward\w*\s+the\s+subject\s+of\s+this\s+other\s+task\s*:?\s*(.+)$", re.IGNORECASE | re.DOTALL)
_HINT_RULES: tuple[tuple[re.Pattern[str], Move], ...] = (
    (re.compile(r"\b(more demanding|harder|more complex|more constraints|more steps)\b", re.I), _harder),
    (re.compile(r"\b(simpler|easier|fewer requirements|more accessible)\b", re.I), _simpler),
    (re.compile(r"\b(neighbou?ring|nearby|related)\b.*\bsubject\b", re.I), _drift),
    (re.compile(r"\bdifferent\b", re.I), in_breadth),
)


def directional(ctx: MoveContext) -> Latent:
    """Follows the hint: toward a quoted task's subject, harder, simpler, a
    neighbouring subject, or somewhere different; an unreadable hint only rephrases."""
    m = _TOWARD.search(ctx.hint)
    if m:
        target = parse_latent(m.group(1).strip().strip(".").strip("'\""), ctx.cfg.seed)
        moved = _toward(ctx.parent, topic_of(target), ctx.rng)
        return moved if moved != ctx.parent else stall(ctx)
    for pattern, move in _HINT_RULES:
        if pattern.search(ctx.hint):
            return move(ctx)
    return question_rephrase(ctx)


def generic(ctx: MoveContext) -> Latent:
    """An operator the world does not know: a rephrase or one more clause."""
    return question_rephrase(ctx) if _chance(ctx, 0.5) else _add_clauses(ctx.parent, 1, ctx.rng)


MOVES: dict[str, Move] = {
    "add_constraints": add_constraints,
    "deepen": deepen,
    "increase_reasoning": increase_reasoning,
    "concretize": concretize,
    "complicate_input": complicate_input,
    "in_breadth": in_breadth,
    "new_question": new_question,
    "question_rephrase": question_rephrase,
    "crossover": crossover,
    "directional": directional,
}
"""Instruction operators' moves, by operator name."""


# --------------------------------------------------------------------- response moves
ResponseMove = Callable[[int, np.random.Generator], int]


def answer_augmentation(level: int, rng: np.random.Generator) -> int:
    """A better answer: level +1 (60 %) or +2, at most R_MAX."""
    return min(R_MAX, level + (1 if rng.random() < 0.6 else 2))


def generic_response(level: int, rng: np.random.Generator) -> int:
    """A response operator the world does not know: level -1, 0 or +1."""
    return int(np.clip(level + int(rng.integers(-1, 2)), 1, R_MAX))


RESPONSE_MOVES: dict[str, ResponseMove] = {"answer_augmentation": answer_augmentation}
"""Response operators' moves on the answer level, by operator name."""
