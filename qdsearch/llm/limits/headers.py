"""Rate-limit headers: ``Retry-After`` and OpenAI's ``x-ratelimit-*``, with their
duration format (``6m0s``, ``1s``, ``20ms``). Parsers never raise: a malformed value
reads as absent."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RateHeaders", "format_duration", "parse_duration", "rate_headers", "retry_after_s"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: object) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value, or None if it is not one.

    OpenAI writes Go durations (``"6m0s"``, ``"1s"``, ``"20ms"``, ``"1h2m3.5s"``);
    other servers send plain seconds (``"0.5"``). Negative, empty, non-finite or
    malformed values give None, never an exception.
    """
    if not isinstance(text, str | bytes):
        return None
    s = (text.decode("latin-1") if isinstance(text, bytes) else text).strip()
    if len(s) > 64:
        return None
    if _NUMBER.fullmatch(s):
        v = float(s)
    else:
        pos, v = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                return None
            v += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == 0 or pos != len(s):
            return None
    return v if math.isfinite(v) else None


def format_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset time: ``"20ms"`` below a second, else
    ``"1h2m3.5s"`` style (used by the fake endpoint of the tests)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    out = f"{int(h)}h" if h else ""
    out += f"{int(m)}m" if h or m else ""
    return out + f"{round(s, 3):g}s"


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    v = headers.get(name)
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` headers, if present.

    ``Retry-After`` may be a number of seconds or an HTTP date. Unparsable values
    give None.
    """
    if headers is None:
        return None
    ms = _number(headers, "retry-after-ms")
    if ms is not None:
        return ms / 1000.0
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RateHeaders:
    """The ``x-ratelimit-*`` headers of one answer (None: absent or malformed)."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None


def rate_headers(headers: Mapping[str, Any]) -> RateHeaders:
    """Reads OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.

    ``headers`` is case-insensitive (an HTTP client's) or has lower-case names.
    """
    return RateHeaders(
        _number(headers, "x-ratelimit-limit-requests"),
        _number(headers, "x-ratelimit-remaining-requests"),
        parse_duration(headers.get("x-ratelimit-reset-requests")),
        _number(headers, "x-ratelimit-limit-tokens"),
        _number(headers, "x-ratelimit-remaining-tokens"),
        parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )
