"""Validation helpers: errors that name the dotted key, what was expected and what was received."""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _check_retries(cfg: Any, key: str) -> None:
    """The timeout and retry keys an endpoint and an embedding section share."""
    # finite: the HTTP client and asyncio timers fail on an infinite timeout
    _check(0 < cfg.timeout_s < math.inf, f"{key}.timeout_s", f"must be > 0 and finite, got {cfg.timeout_s}")
    _check(cfg.max_retries >= 0, f"{key}.max_retries", f"must be >= 0, got {cfg.max_retries}")
    _check(0 <= cfg.backoff_s < math.inf, f"{key}.backoff_s", f"must be >= 0 and finite, got {cfg.backoff_s}")
    _check(
        0 <= cfg.max_backoff_s < math.inf, f"{key}.max_backoff_s", f"must be >= 0 and finite, got {cfg.max_backoff_s}"
    )


def _show(value: Any) -> str:
    """``repr(value)`` for an error message, shortened, and safe for huge integers
    (whose ``repr`` raises ValueError past ``sys.get_int_max_str_digits()``)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# TOML integers are 64-bit; larger ones (which tomllib and from_dict's callers can
# still produce) are rejected before they reach a validation message or a float().
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
