"""World-native seed tasks: a seed set that already spans the grid, with weak answers.

The example seeds are foreign texts to the world: each gets two words of one topic
and no clauses, so every seed lands at complexity 1 and a few topic cells. To study
how the best strategy depends on the budget per seed (issue 4's sweep, run in the
world), the seed set itself must carry diversity: :func:`seed_tasks` draws tasks
over every plain topic and the whole complexity range, each with an answer of a
chosen (low) answer level, so a large seed set covers many cells with answers that
answer augmentation can still improve.
"""

from __future__ import annotations

import json
from pathlib import Path

from qdsearch.world.model import (
    CLAUSES,
    CONFLICTS,
    DECEPTIVE_TOPIC,
    DETAILS,
    OPENERS,
    R_MAX,
    TOPICS,
    Latent,
    hash_rng,
    render,
    render_response,
)

__all__ = ["seed_tasks", "write_seed_tasks"]


def _task(i: int, seed: int) -> Latent:
    rng = hash_rng("seed-task", seed, i)
    plain = [t for t in TOPICS if t != DECEPTIVE_TOPIC]
    topic = plain[(i + int(hash_rng("seed-topics", seed).integers(len(plain)))) % len(plain)]
    words = tuple(TOPICS[topic][int(j)] for j in rng.choice(len(TOPICS[topic]), size=2, replace=False))
    # A target load drawn uniformly over 0..10 (complexity 1..10), split into steps,
    # details, input records and clauses (no contradicting pair).
    target = float(rng.uniform(0.0, 10.0))
    steps = int(rng.integers(0, min(4, int(target / 1.5)) + 1))
    rest = target - 1.5 * steps
    n_details = min(2, int(rng.integers(0, 3)), int(rest / 0.5))
    rest -= 0.5 * n_details
    data = min(2, int(rng.integers(0, 3)), int(rest / 0.5))
    rest -= 0.5 * data
    clauses: list[int] = []
    for c in rng.permutation(len(CLAUSES)):
        if len(clauses) >= round(rest):
            break
        if not any((int(c), o) in CONFLICTS or (o, int(c)) in CONFLICTS for o in clauses):
            clauses.append(int(c))
    details = tuple(sorted(int(d) for d in rng.choice(len(DETAILS), size=n_details, replace=False)))
    return Latent(words, tuple(sorted(clauses)), steps, details, data, opener=int(rng.integers(len(OPENERS))))


def seed_tasks(n: int, seed: int = 0, level: int = 1) -> list[dict[str, str]]:
    """``n`` seed records (``instruction``, ``input``, ``response``) written by the world.

    Topics cycle through the plain (non-deceptive) topics; each task's load is drawn
    uniformly over 0..10 and split into steps (0-4), details (0-2), input records
    (0-2) and clauses (no contradicting pair), so complexities spread over 1..10 (not
    evenly: loads come in steps of 0.5 and 1.5, but every band of a 5-bin complexity
    axis gets seeds). Every response has answer level ``level``. Deterministic in ``(n, seed, level)``; the first ``k`` records of a call
    with ``n > k`` are the records of a call with ``n = k``.

    Raises:
        ValueError: ``n < 1`` or ``level`` outside ``1..R_MAX``.
    """
    if n < 1:
        raise ValueError(f"seed_tasks: n must be >= 1, got {n}")
    if not 1 <= level <= R_MAX:
        raise ValueError(f"seed_tasks: level must be in 1..{R_MAX}, got {level}")
    out = []
    for i in range(n):
        latent = _task(i, seed)
        instruction, inp = render(latent)
        response = render_response(latent, level, hash_rng("seed-answer", seed, i))
        out.append({"instruction": instruction, "input": inp, "response": response})
    return out


def write_seed_tasks(path: str | Path, n: int, seed: int = 0, level: int = 1) -> Path:
    """Writes :func:`seed_tasks` as JSONL to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in seed_tasks(n, seed, level)), encoding="utf-8")
    return path
