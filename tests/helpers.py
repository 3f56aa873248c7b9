"""Small helpers shared by the campaign-level tests."""

from __future__ import annotations

import asyncio
from typing import Any


def drive(campaign: Any, runtime: Any) -> None:
    """Runs ``campaign`` to its end on a fresh event loop, then closes ``runtime``."""

    async def go() -> None:
        try:
            await campaign.run()
        finally:
            await runtime.close()

    asyncio.run(go())


class HashEmbedder:
    """Deterministic unit vectors from a hash of each text (equal texts, equal vectors)."""

    dim = 32

    def embed(self, texts: Any) -> Any:
        import hashlib

        import numpy as np

        rows = []
        for t in texts:
            digest = hashlib.sha256(str(t).encode("utf-8", "surrogatepass")).digest()
            v = np.frombuffer(digest, dtype=np.uint8).astype(np.float64) - 127.5
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)
