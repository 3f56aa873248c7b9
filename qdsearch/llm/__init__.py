"""LLM access: the only network code of qdsearch.

The client and server modules (the HTTP stack, about a second to import) load on
first use of one of their names, so pure code that imports :mod:`qdsearch.llm.ask`
(the reject type, tasks) does not pay for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qdsearch.config import EndpointConfig, LocalModelConfig

if TYPE_CHECKING:
    from qdsearch.llm.client import CallRecord, Completion, LLMClient, LLMError, Usage, response_format
    from qdsearch.llm.server import LocalModelServer, default_gguf, free_port

__all__ = [
    "CallRecord",
    "Completion",
    "LLMClient",
    "LLMError",
    "LocalModelServer",
    "Usage",
    "default_gguf",
    "free_port",
    "open_endpoint",
    "response_format",
]

_LAZY = {
    **dict.fromkeys(("CallRecord", "Completion", "LLMClient", "LLMError", "Usage", "response_format"), "client"),
    **dict.fromkeys(("LocalModelServer", "default_gguf", "free_port"), "server"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


@contextlib.contextmanager
def open_endpoint(cfg: EndpointConfig, local: LocalModelConfig | None = None) -> Iterator[EndpointConfig]:
    """Yields a ready endpoint config: the configured one, or the embedded server.

    With an empty ``cfg.base_url`` the embedded llama.cpp server is started for the
    duration of the block and stopped afterwards, also on errors and Ctrl-C. A
    ``json_mode`` of ``"auto"`` is resolved to ``"json_object"`` (with schema) for
    the embedded server and ``"json_schema"`` otherwise.
    """
    if not cfg.embedded:
        mode = "json_schema" if cfg.json_mode == "auto" else cfg.json_mode
        yield dataclasses.replace(cfg, json_mode=mode)
        return
    from qdsearch.llm.server import LocalModelServer

    with LocalModelServer(local) as srv:
        mode = "json_object" if cfg.json_mode == "auto" else cfg.json_mode
        yield dataclasses.replace(cfg, base_url=srv.base_url, model=cfg.model or srv.model, json_mode=mode)
