"""Embedding finished children for the topic descriptor and the novelty filter.

Both schedules (:mod:`qdsearch.campaign.loop`, :mod:`qdsearch.campaign.schedule`)
embed a batch of judged children at a time; this is how a batch is embedded and how
a failure is narrowed down to the children whose text the endpoint refuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from qdsearch.descriptors.embedding import EmbeddingError
from qdsearch.types import Candidate

__all__ = ["embed_children", "input_refused"]


def input_refused(e: EmbeddingError) -> bool:
    """Whether the endpoint refused the request for what it contained (a 4xx other
    than a timeout or a rate limit), rather than being down or overloaded."""
    out = e.record.outcome
    return out.startswith("http_4") and out not in ("http_408", "http_429")


async def embed_children(
    embed: Callable[[list[str]], Awaitable[np.ndarray]],
    missing_parent_text: Callable[[Candidate], str | None],
    ok: Sequence[Candidate],
) -> tuple[list[np.ndarray | None], dict[str, np.ndarray], dict[str, str]]:
    """Embeds judged children (and their parents that have no cached vector).

    Args:
        embed: texts -> (n, dim) unit vectors; raises :class:`EmbeddingError`.
        missing_parent_text: a child's parent text when the parent has no cached
            vector (it left the archive while the child was in flight), else None.
        ok: the judged children.

    Returns:
        One vector per child (None where its embedding failed after the
        embedder's retries), parent id -> vector, and child id -> why it failed.
        A batch the endpoint refuses for its input (a 4xx other than 408/429) is
        embedded again one child at a time, so only the children whose text is
        refused fail; any other failure (connection, timeout, 5xx: the endpoint is
        unwell) fails the whole batch.
    """

    # Parents displaced from the archive while their child was in flight have no
    # cached vector: embed them with the batch.
    def parent_text(c: Candidate) -> list[str]:
        t = missing_parent_text(c)
        return [t] if t is not None else []

    texts = [c.sample.prompt_text() for c in ok] + [t for c in ok for t in parent_text(c)]
    try:
        vecs = await embed(texts) if texts else np.zeros((0, 0))
    except EmbeddingError as e:
        if len(ok) <= 1 or not input_refused(e):
            return [None] * len(ok), {}, {c.sample.id: str(e) for c in ok}
    else:
        missing = [c.sample.parent_id for c in ok if parent_text(c)]
        return list(vecs[: len(ok)]), dict(zip(missing, vecs[len(ok) :], strict=True)), {}
    out: list[np.ndarray | None] = []
    extra: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    for c in ok:
        try:
            v = await embed([c.sample.prompt_text(), *parent_text(c)])
        except EmbeddingError as e:
            out.append(None)
            failures[c.sample.id] = str(e)
            continue
        out.append(v[0])
        if len(v) > 1:
            extra[c.sample.parent_id] = v[1]
    return out, extra, failures
