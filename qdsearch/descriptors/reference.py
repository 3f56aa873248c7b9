"""The shipped topic reference corpus: 64 subject areas, six instructions each.

Written for the project (``qdsearch/data/topic_reference.jsonl``). It is mixed into
the fit of the topic regions so that a campaign's topic cells cover the range of
what people ask, not only the few seeds it starts from, and so that regions get
readable names (``archive.topic_reference = "none"`` leaves it out).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

__all__ = ["builtin_reference"]


@cache
def builtin_reference() -> tuple[tuple[str, str], ...]:
    """(topic, instruction) pairs of the shipped corpus, in file order."""
    text = resources.files("qdsearch").joinpath("data/topic_reference.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return tuple((str(r["topic"]), str(r["instruction"])) for r in rows)
