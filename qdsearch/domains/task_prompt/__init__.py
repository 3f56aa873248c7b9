"""The ``task_prompt`` domain: prompts for a task, scored on labelled splits.

- :mod:`~qdsearch.domains.task_prompt.data`: the examples and the train / val / test splits;
- :mod:`~qdsearch.domains.task_prompt.results`: per-example results and a prompt's report;
- :mod:`~qdsearch.domains.task_prompt.domain`: :class:`TaskPromptDomain` (evaluation,
  the minibatch gate, the held-out test pass) and its operators.
"""

from __future__ import annotations

from qdsearch.domains.scoring import extract
from qdsearch.domains.task_prompt.data import DevExample, Splits, load_dev, load_splits
from qdsearch.domains.task_prompt.domain import TASK_OPERATORS, TaskPromptDomain, score_output
from qdsearch.domains.task_prompt.results import ExampleResult, dev_errors, val_scores

__all__ = [
    "TASK_OPERATORS",
    "DevExample",
    "ExampleResult",
    "Splits",
    "TaskPromptDomain",
    "dev_errors",
    "extract",
    "load_dev",
    "load_splits",
    "score_output",
    "val_scores",
]
