"""Embeddings on a Ray actor (``embedding.where = "actors"``): the driver stays a thin loop.

The campaign embeds finished children one batch at a time (``runtime.embed_batch``),
so one actor is enough: it holds the embedder of ``[embedding]`` (the
sentence-transformers model, or the endpoint client) on the node that
``embedding.actor_resources`` picks, for example ``{GPU = 1}`` for a GPU node, and
each batch is one call to it. The driver never loads the model.

Failures: an embedding error inside the actor comes back as the same
:class:`~qdsearch.descriptors.embedding.EmbeddingError` (with its call record), so
the campaign rejects those children as ``embed_failed`` as it does on the driver.
An actor whose process died is replaced once per batch and the batch sent again; a
second death is an ``EmbeddingError`` with outcome ``"connection"``, counted like an
embedding endpoint that is down.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from qdsearch.config import CampaignConfig, ConfigError, EmbeddingConfig
from qdsearch.descriptors.embedding import EmbeddingError, make_embedder
from qdsearch.llm.client import CallRecord
from qdsearch.runtime.placement import feasible_nodes, ray_resource_options

__all__ = ["ActorEmbedder", "actor_embedder"]

TIMEOUT_S = 600.0  # one batch: a model loading on a cold node included


class _EmbedActor:
    def __init__(self, cfg: EmbeddingConfig) -> None:
        self._embedder = make_embedder(cfg)

    def dim(self) -> int:
        return int(self._embedder.dim)

    def embed(self, texts: list[str]) -> tuple[np.ndarray | None, str, CallRecord | None]:
        """``(vectors, "", None)``, or ``(None, message, record)`` for an embedding
        error (an exception with a record does not survive pickling whole)."""
        try:
            return self._embedder.embed(texts), "", None
        except EmbeddingError as e:
            return None, str(e), e.record

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), str(ray.get_runtime_context().get_node_id())


class ActorEmbedder:
    """An :class:`~qdsearch.descriptors.embedding.Embedder` whose model lives on a Ray actor.

    Args:
        cfg: the ``[embedding]`` section (``actor_resources`` places the actor).

    Raises:
        ConfigError: no live node of the cluster has ``embedding.actor_resources``.
    """

    def __init__(self, cfg: EmbeddingConfig) -> None:
        import ray

        self._ray = ray
        self._cfg = cfg
        if not feasible_nodes(ray.nodes(), cfg.actor_resources):
            raise ConfigError(f"embedding.actor_resources: no live node of the Ray cluster has {cfg.actor_resources}")
        self._cls = ray.remote(max_concurrency=1, **ray_resource_options(cfg.actor_resources))(_EmbedActor)  # type: ignore[call-overload]
        self._actor = self._cls.remote(cfg)
        self.replaced = 0
        self.dim = int(ray.get(self._actor.dim.remote(), timeout=TIMEOUT_S))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds ``texts`` on the actor (one call; the actor batches by ``batch_size``).

        Raises:
            EmbeddingError: the embedder failed there, or the actor died twice.
        """
        died: BaseException | None = None
        for attempt in range(2):
            actor = self._actor
            try:
                vecs, msg, record = self._ray.get(actor.embed.remote(list(texts)), timeout=TIMEOUT_S)
            except self._ray.exceptions.RayActorError as e:
                died = e
                if attempt == 0:
                    self._replace(actor)
                continue
            if vecs is None:
                assert record is not None
                raise EmbeddingError(msg, record)
            return np.asarray(vecs)
        record = CallRecord(tag="embed", model=self._cfg.model, prompt_tokens=0, completion_tokens=0,
                            latency_s=0.0, attempts=2, outcome="connection")  # fmt: skip
        raise EmbeddingError(f"embedding: the embedding actor died twice ({type(died).__name__})", record)

    def _replace(self, dead: Any) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(dead, no_restart=True)
        self._actor = self._cls.remote(self._cfg)
        self.replaced += 1

    def where(self) -> tuple[int, str]:
        """The actor's (process id, node id), for checks and diagnostics."""
        pid, node = self._ray.get(self._actor.where.remote(), timeout=TIMEOUT_S)
        return int(pid), str(node)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(self._actor)


def actor_embedder(runtime: Any, cfg: CampaignConfig) -> ActorEmbedder:
    """The embedder of ``embedding.where = "actors"``, on the cluster of ``runtime``.

    Raises:
        ConfigError: the runtime is not Ray (naming ``embedding.where``), or no node
            has ``embedding.actor_resources``.
    """
    if cfg.runtime.kind != "ray":
        raise ConfigError(f"embedding.where: 'actors' needs runtime.kind = 'ray', got {cfg.runtime.kind!r}")
    return ActorEmbedder(cfg.embedding)
