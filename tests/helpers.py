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


def check_state(state: dict[str, Any]) -> None:
    """Asserts the invariants of a ``state.json`` (or ``Counters.to_dict()``).

    Seeds and children are accounted apart; every child handed to the runtime is
    logged, lost, or (in a snapshot taken mid-run) still in flight; counts are never
    negative; ids are never given out twice.
    """
    counts = ("seeds", "seeds_accepted", "children", "accepted", "rejected", "failed", "submitted", "lost")
    for key in (*counts, "calls", "failed_calls", "prompt_tokens", "completion_tokens", "new_cells", "improvements"):
        assert state[key] >= 0, (key, state[key])
    for key in ("cost_usd", "lost_calls", "lost_tokens", "lost_cost_usd"):
        assert state[key] >= 0, (key, state[key])
    assert state["children"] == state["accepted"] + state["rejected"] + state["failed"], state
    assert sum(state["rejects"].values()) == state["rejected"] + state["failed"], state
    assert state["failed"] == sum(n for r, n in state["rejects"].items() if r.startswith("llm_"))
    assert state["seeds"] == state["seeds_accepted"] + sum(state["seed_rejects"].values()), state
    in_flight = state.get("in_flight", 0)
    assert state["submitted"] == state["children"] + state["lost"] + in_flight, state
    assert state["next_child"] == state["submitted"], state  # no id handed out twice
    assert state["new_cells"] + state["improvements"] <= state["accepted"] + state["seeds_accepted"]
    assert state["failed_calls"] <= state["calls"]
    assert sum(r["children"] for r in state["ops"].values()) == state["children"]
    assert (state["lost"] == 0) == (state["lost_calls"] == 0), state
