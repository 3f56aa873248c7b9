"""The shipped topic reference corpus: 64 subject areas in 16 domains, six instructions each.

Written for the project (``qdsearch/data/topic_reference.jsonl``). It is mixed into
the fit of the topic regions so that a campaign's topic cells cover the range of
what people ask, not only the few seeds it starts from, and so that regions get
readable names (``archive.topic_reference = "none"`` leaves it out).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["builtin_domains", "builtin_reference", "reference_embeddings"]

_MEMO: dict[str, np.ndarray] = {}


@cache
def builtin_reference() -> tuple[tuple[str, str], ...]:
    """(topic, instruction) pairs of the shipped corpus, in file order."""
    text = resources.files("qdsearch").joinpath("data/topic_reference.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return tuple((str(r["topic"]), str(r["instruction"])) for r in rows)


@cache
def builtin_domains() -> dict[str, str]:
    """Topic name -> its domain (the taxonomy of ``archive.topic_fit = "taxonomy"``)."""
    text = resources.files("qdsearch").joinpath("data/topic_reference.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {str(r["topic"]): str(r["domain"]) for r in rows}


def _cache_dir() -> Path:
    root = os.environ.get("QDSEARCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "qdsearch"
    )
    return Path(root)


def reference_embeddings(embedder: Any) -> np.ndarray:
    """(n, d) embeddings of the shipped corpus by ``embedder``.

    A local sentence-transformers model (it has a ``model_name`` path) is
    deterministic, so its result is kept in memory and on disk (``$QDSEARCH_CACHE_DIR``,
    default ``~/.cache/qdsearch``; keyed by the model folder, its weights' size and
    mtime, and the corpus text): a campaign start or ``describe`` then embeds only
    its own texts. Any other embedder (an endpoint) is asked every time. A cache that
    cannot be read or written is ignored.
    """
    texts = [t for _, t in builtin_reference()]
    model = getattr(embedder, "model_name", "")
    if not model or not os.path.isdir(model):
        return np.asarray(embedder.embed(texts))
    stamp = []
    for f in sorted(Path(model).glob("*.safetensors")) + sorted(Path(model).glob("*.bin")):
        st = f.stat()
        stamp.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    key = hashlib.sha256(json.dumps([os.path.realpath(model), stamp, texts]).encode()).hexdigest()[:24]
    if key in _MEMO:
        return _MEMO[key]
    path = _cache_dir() / f"reference-{key}.npy"
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(texts):
            _MEMO[key] = cached
            return cached
    except (OSError, ValueError):
        pass
    vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
    _MEMO[key] = vecs
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as out:
            np.save(out, vecs)
        os.replace(tmp, path)
    except OSError:
        pass
    return vecs
