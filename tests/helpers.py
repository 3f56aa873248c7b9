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
