"""Quality, diversity and complexity (QDC) of any instruction dataset.

Layers, each usable alone (all names are re-exported here):

- :mod:`~qdsearch.measure.metrics`: pure metrics on arrays and token lists
  (:func:`vendi_score`, :func:`distinct_n`, :func:`self_similarity`,
  :func:`mean_pairwise_cosine_distance`, :func:`cluster_entropy`,
  :func:`near_duplicate_rate`, :func:`heuristic_constraints`, :func:`summarize`);
- :mod:`~qdsearch.measure.records`: :func:`load_records` reads any accepted dataset,
  with errors that name ``file:line`` and what is wrong;
- :mod:`~qdsearch.measure.dataset`: :func:`measure_dataset` turns records into one
  flat dict of metrics; :func:`format_table` lays several side by side;
- :mod:`~qdsearch.measure.tagging`: the LLM edge, :func:`llm_judge` (project judge
  verdict plus an InsTag-like tag count) against an OpenAI-compatible endpoint.

The ``qdsearch measure`` command is :mod:`qdsearch.cli.measure`.

Diversity metrics are computed on the prompt text (instruction, a blank line and
the input, as a model sees it), which is also what campaigns embed.
"""

from __future__ import annotations

from qdsearch.measure.dataset import METRICS, JudgeFn, format_cell, format_table, measure_dataset
from qdsearch.measure.metrics import (
    cluster_entropy,
    distinct_n,
    heuristic_constraints,
    mean_pairwise_cosine_distance,
    near_duplicate_rate,
    self_similarity,
    summarize,
    tokenize,
    vendi_score,
)
from qdsearch.measure.records import MeasureError, load_records, parse_record, parse_records, prompt_text
from qdsearch.measure.tagging import MAX_TAGS, TAGS_SCHEMA, TagReject, llm_judge, parse_tags, render_tags

__all__ = [
    "MAX_TAGS",
    "METRICS",
    "TAGS_SCHEMA",
    "JudgeFn",
    "MeasureError",
    "TagReject",
    "cluster_entropy",
    "distinct_n",
    "format_cell",
    "format_table",
    "heuristic_constraints",
    "llm_judge",
    "load_records",
    "mean_pairwise_cosine_distance",
    "measure_dataset",
    "near_duplicate_rate",
    "parse_record",
    "parse_records",
    "parse_tags",
    "prompt_text",
    "render_tags",
    "self_similarity",
    "summarize",
    "tokenize",
    "vendi_score",
]
