"""A task's labelled examples and its three splits: train, val, test.

- **train** (``domain.train_path``): what the search learns from: the minibatches a
  child is gated on, the examples the reflective operator shows the mutation model,
  the ``add_example`` pool.
- **val** (``domain.val_path``; ``dev_path`` is its old name): fitness, the score that
  decides which prompt is a cell's elite (a fixed seeded subset of ``dev_limit``
  examples when that is set; without a train split its first ``fewshot`` examples
  are the ``add_example`` pool instead, as before splits existed).
- **test** (``domain.test_path``): held out. The search never sees it; the elites are
  scored on it once at the end of a session, so the best prompt's test score is an
  honest estimate of how it does on new inputs.

No example may be in two splits (the same input, ignoring case and spacing): that is
an error naming both files and lines, since a shared example turns a held-out score
into a training score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qdsearch.config import DomainConfig
from qdsearch.seeds import SeedError, iter_jsonl

__all__ = ["DevExample", "Splits", "load_dev", "load_splits"]


@dataclass(frozen=True)
class DevExample:
    """One labelled example: ``id`` is its line number in its file, ``split`` its split."""

    id: str
    input: str
    expected: str
    split: str = "val"

    @property
    def key(self) -> str:
        """Unique across the splits: ``split:line``."""
        return f"{self.split}:{self.id}"


_INPUT_KEYS = ("input", "question", "text")
_EXPECTED_KEYS = ("output", "expected", "answer", "label")


def load_dev(path: str | Path, split: str = "val") -> list[DevExample]:
    """Reads one split: JSONL of ``{"input", "output"}`` (or question/text and expected/answer/label).

    Raises:
        SeedError: missing/unreadable/empty file or a malformed line (``path:line: what``).
    """
    p = Path(path)
    out: list[DevExample] = []
    for no, obj in iter_jsonl(p, f"{split} split"):
        if not isinstance(obj, dict):
            raise SeedError(f"{p}:{no}: expected a JSON object, got {type(obj).__name__}")
        ik = next((k for k in _INPUT_KEYS if k in obj), None)
        ek = next((k for k in _EXPECTED_KEYS if k in obj), None)
        if ik is None or ek is None:
            missing = (
                "an input key " + str(list(_INPUT_KEYS))
                if ik is None
                else "an expected key " + str(list(_EXPECTED_KEYS))
            )
            raise SeedError(f"{p}:{no}: no {missing}")
        inp, exp = obj[ik], obj[ek]
        if not isinstance(inp, str) or not isinstance(exp, str | int | float) or isinstance(exp, bool):
            raise SeedError(f"{p}:{no}: '{ik}' must be a string and '{ek}' a string or number")
        if not inp.strip() or not str(exp).strip():
            raise SeedError(f"{p}:{no}: empty '{ik}' or '{ek}'")
        out.append(DevExample(str(no), inp.strip(), str(exp).strip(), split))
    if not out:
        raise SeedError(f"{p}: the {split} split is empty")
    return out


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def check_disjoint(named: Sequence[tuple[str, Sequence[DevExample]]]) -> None:
    """Raises when two splits share an example (the same input, ignoring case and spacing).

    Args:
        named: (file, examples) per split, in the order train, val, test.

    Raises:
        SeedError: ``test.jsonl:12: the same example as train.jsonl:3 (...)``.
    """
    seen: dict[str, tuple[str, DevExample]] = {}
    for path, examples in named:
        mine: dict[str, DevExample] = {}
        for ex in examples:
            k = _norm(ex.input)
            other = seen.get(k)
            if other is not None:
                short = ex.input if len(ex.input) <= 80 else ex.input[:79] + "…"
                raise SeedError(
                    f"{path}:{ex.id}: the same example as {other[0]}:{other[1].id} ({short!r}); the "
                    f"{other[1].split} and {ex.split} splits must not share examples"
                )
            mine.setdefault(k, ex)
        seen.update({k: (path, ex) for k, ex in mine.items()})


@dataclass(frozen=True)
class Splits:
    """A task's examples as the search uses them.

    Attributes:
        train: training examples (``[]`` without ``train_path``).
        val: the scored fitness examples (after ``fewshot`` and ``dev_limit``).
        test: held-out examples (``[]`` without ``test_path``).
        pool: the ``add_example`` demonstrations (train, else val's first ``fewshot``).
        answers: every expected answer of every split (for detecting the label set).
    """

    train: list[DevExample]
    val: list[DevExample]
    test: list[DevExample]
    pool: list[DevExample]
    answers: list[DevExample]


def load_splits(d: DomainConfig, seed: int) -> Splits:
    """Reads and checks a task's splits from ``[domain]``.

    Raises:
        SeedError: a file is unusable, two splits share an example, or ``fewshot``
            leaves no val example to score.
    """
    val_path = d.fitness_path
    val = load_dev(val_path, "val")
    train = load_dev(d.train_path, "train") if d.train_path else []
    test = load_dev(d.test_path, "test") if d.test_path else []
    check_disjoint([(d.train_path, train), (val_path, val), (d.test_path, test)])
    if train:
        pool, scored = train, val
    else:
        if len(val) <= d.fewshot:
            raise SeedError(f"{val_path}: {len(val)} examples; domain.fewshot = {d.fewshot} leaves none to score")
        pool, scored = val[: d.fewshot], val[d.fewshot :]
    if d.dev_limit and len(scored) > d.dev_limit:
        pick = np.random.default_rng(seed).choice(len(scored), size=d.dev_limit, replace=False)
        scored = [scored[int(i)] for i in sorted(pick)]
    return Splits(train, scored, test, pool, [*train, *val, *test])
