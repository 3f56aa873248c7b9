"""Operator selection: fixed weights, or a discounted UCB bandit.

The bandit's reward for a child is the archive gain it brought (QD-score added: its
quality in a new cell, or its improvement over the elite it replaced) per 1k
tokens it cost. Old rewards decay by ``discount`` at every update, so the choice
follows the campaign's phase (early on almost anything fills cells; later only
some operators still pay). Both selectors are pure: state in, choice out, with an
explicit random generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["DiscountedUCB", "FixedWeights", "Selector", "make_selector", "pareto_parent", "reward"]


def reward(gain: float, tokens: int) -> float:
    """Archive gain per 1k tokens (0 for a child that gained nothing)."""
    return 1000.0 * max(0.0, gain) / max(1, tokens)


class Selector:
    names: list[str]

    def choose(self, rng: np.random.Generator) -> tuple[str, str]:
        """(operator name, reason for the event log)."""
        raise NotImplementedError

    def update(self, name: str, r: float) -> None:
        """Feeds back one child's reward."""


class FixedWeights(Selector):
    """Draws operators with fixed probabilities proportional to ``weights``."""

    def __init__(self, names: Sequence[str], weights: Mapping[str, float]) -> None:
        self.names = list(names)
        w = np.array([weights.get(n, 1.0) for n in self.names], dtype=float)
        if w.sum() <= 0:
            raise ValueError("operators.weights: all weights are zero")
        self.p = w / w.sum()

    def choose(self, rng: np.random.Generator) -> tuple[str, str]:
        i = int(rng.choice(len(self.names), p=self.p))
        return self.names[i], f"fixed p={self.p[i]:.3f}"


class DiscountedUCB(Selector):
    """Discounted UCB1 over operators (Garivier & Moulines' D-UCB).

    An operator's mean reward is divided by the (equally discounted) mean reward
    of all operators, so 1.0 is "as good as the average operator" whatever the
    token prices and quality scale, and the exploration coefficient means the same
    in every campaign. (Scaling by the largest reward seen, as before, squeezed the
    sparse archive gains into [0, 0.2] under a bonus of about 0.5, and the choice
    stayed uniform; the synthetic world showed it.) Choices still in flight count
    as pulls for the exploration bonus, so with many children in flight one
    optimistic arm is not chosen for all of them before its first reward comes back.
    """

    def __init__(self, names: Sequence[str], discount: float = 0.97, exploration: float = 0.3) -> None:
        self.names = list(names)
        self.discount = discount
        self.exploration = exploration
        self.n = np.zeros(len(self.names))
        self.s = np.zeros(len(self.names))
        self.pending = np.zeros(len(self.names))

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean reward relative to the all-operator mean, exploration bonus) per operator."""
        total_n = self.n.sum()
        scale = self.s.sum() / total_n if total_n > 0 and self.s.sum() > 0 else 1.0
        mean = self.s / np.maximum(self.n, 1e-12) / scale
        n_eff = np.maximum(self.n + self.pending, 1e-12)
        total = max(n_eff.sum(), 1.0)
        bonus = self.exploration * np.sqrt(2.0 * math.log(total + 1.0) / n_eff)
        return mean, bonus

    def choose(self, rng: np.random.Generator) -> tuple[str, str]:
        untried = np.flatnonzero(self.n + self.pending < 1e-9)
        if len(untried):
            i = int(untried[int(rng.integers(len(untried)))])
            self.pending[i] += 1
            return self.names[i], "ucb untried"
        mean, bonus = self.scores()
        ucb = mean + bonus
        best = np.flatnonzero(ucb >= ucb.max() - 1e-12)
        i = int(best[int(rng.integers(len(best)))])
        self.pending[i] += 1
        return self.names[i], f"ucb mean={mean[i]:.3f} bonus={bonus[i]:.3f}"

    def update(self, name: str, r: float) -> None:
        i = self.names.index(name)
        self.pending[i] = max(0.0, self.pending[i] - 1)
        self.n *= self.discount
        self.s *= self.discount
        self.n[i] += 1.0
        self.s[i] += r


def make_selector(
    names: Sequence[str], kind: str, weights: Mapping[str, float], discount: float, exploration: float
) -> Selector:
    if kind == "ucb":
        return DiscountedUCB(names, discount, exploration)
    return FixedWeights(names, weights)


def pareto_parent(scores: Sequence[Sequence[float] | None], rng: np.random.Generator) -> int:
    """A parent index drawn from the per-instance Pareto front (GEPA's selection).

    For every instance (validation example) some candidates score best; a candidate
    best on at least one instance and not Pareto-dominated (another candidate at least
    as good on every instance and better on one) is drawn with probability
    proportional to the number of instances it is best on. So a prompt that alone
    solves a few hard examples stays a parent even when its mean is lower. Instances
    nobody solves (best score 0) are left out.

    Args:
        scores: one per candidate: its (n_instances,) scores, or None when it has
            none (such candidates are drawn only when no candidate has scores).
        rng: the random generator.

    Returns:
        The index of the chosen candidate (uniform over all when no instance is solved).
    """
    rows = {i: [float(x) for x in s] for i, s in enumerate(scores) if s is not None and len(s)}
    have = list(rows)
    n = min((len(r) for r in rows.values()), default=0)
    if not have or n == 0:
        return int(rng.integers(len(scores)))
    m = np.array([rows[i][:n] for i in have], dtype=np.float64)
    best = m.max(axis=0)
    on_front = (m >= best - 1e-12) & (best > 0)
    wins = on_front.sum(axis=1).astype(float)
    for a in np.flatnonzero(wins):
        dominated = np.all(m >= m[a], axis=1) & np.any(m > m[a], axis=1)
        if dominated.any():
            wins[a] = 0.0
    if wins.sum() <= 0:
        return int(rng.integers(len(scores)))
    return have[int(rng.choice(len(have), p=wins / wins.sum()))]
