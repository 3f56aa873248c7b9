"""Budget admission: whether the campaign may hand out one more child.

A pure function of the config, the counters and what is in flight: the caps on
calls, tokens and cost hold for what is spent plus a forecast of what the running
children (and one more) will spend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qdsearch.config import CampaignConfig, EndpointConfig
from qdsearch.events import FORECAST_WINDOW, Counters
from qdsearch.types import Candidate

__all__ = ["FORECAST_QUANTILE", "FORECAST_WINDOW", "budget_left", "forecast"]

# The quantile of the recent children's spend reserved for each child still running.
FORECAST_QUANTILE = 0.9


def _share(cfg: CampaignConfig, e: EndpointConfig) -> float:
    """The share of ``e``'s price a call pays: its batch discount with ``batch = true``
    (a target or grader without a base URL is the [endpoint]'s client)."""
    via = e if e.base_url or e is cfg.endpoint else cfg.endpoint
    return via.batch_discount if via.batch else 1.0


def forecast(cfg: CampaignConfig, counters: Counters, n: int) -> tuple[float, float, float]:
    """Forecast (calls, tokens, cost) of ``n`` children still to finish: a high
    quantile of their total, not ``n`` times the mean.

    From the last finished children (:data:`FORECAST_WINDOW`): at least ``n``
    times their :data:`FORECAST_QUANTILE` quantile, and at least ``n x mean +
    1.64 sqrt(n) x std`` (the total's 95% quantile, normal approximation). A few
    replies far longer than usual (a model that runs on to ``max_tokens``) are
    what overshoots a cap; a mean hides them. Each call can use at most the
    request's own ``max_tokens`` of completion, so the forecast never exceeds
    ``n`` x calls x (prompt tokens per call + ``max_tokens``), priced at the
    dearest endpoint (a batch endpoint at its discounted price: ``batch_discount``;
    the children's spend is already logged at it). Before any child finished: the quantile over the seeds'
    calls, times the calls a child makes when all goes well.
    """
    c = counters
    eps = (cfg.endpoint, cfg.target, cfg.grader)
    max_out = max(e.max_tokens for e in eps)
    price_in = max(e.price_in_per_mtok * _share(cfg, e) for e in eps) / 1e6
    price_out = max(e.price_out_per_mtok * _share(cfg, e) for e in eps) / 1e6
    if c.recent:
        arr = np.asarray(c.recent, dtype=float)
        high = n * np.quantile(arr, FORECAST_QUANTILE, axis=0)
        total = n * arr.mean(axis=0) + 1.64 * np.sqrt(n) * arr.std(axis=0)
        calls, tokens, cost = (float(x) for x in np.maximum(high, total))
    else:
        calls = n * (2.0 + (1.0 if cfg.judge.complexity == "same_call" else 2.0))  # operator, respond, judge
        if not c.seed_calls:
            return calls, 0.0, 0.0
        per_call = np.quantile(np.asarray(c.seed_calls, dtype=float), FORECAST_QUANTILE, axis=0)
        tokens, cost = calls * float(per_call[0]), calls * float(per_call[1])
    prompt_per_call = c.prompt_tokens / c.calls if c.calls else 0.0
    tokens = min(tokens, calls * (prompt_per_call + max_out))
    if price_in or price_out:
        cost = min(cost, calls * (prompt_per_call * price_in + max_out * price_out))
    return calls, tokens, cost


def budget_left(
    cfg: CampaignConfig,
    counters: Counters,
    *,
    in_flight: int,
    buffered: Sequence[Candidate] = (),
    wall_s: float = 0.0,
    stop_requested: bool = False,
    halt_reason: str = "",
) -> str:
    """``""`` while the budget allows another child, else which limit is hit.

    Caps on calls, tokens and cost hold for what is spent (logged, finished and
    not yet logged, and the expected spend of children lost to crashes) plus the
    forecast spending (:func:`forecast`) of the children still running and of one
    more child. So a child is only submitted while the spent amount is within the
    cap, and a cap is overshot by at most what the children in flight at the last
    submission spend beyond their forecast.

    Args:
        cfg: the campaign config (its ``[budget]`` and endpoint prices).
        counters: the totals so far.
        in_flight: children handed to the runtime and not yet logged (the
            ``buffered`` ones included).
        buffered: finished children not yet logged.
        wall_s: the campaign's wall time so far, all sessions.
        stop_requested: the user asked to stop.
        halt_reason: why the campaign cannot usefully go on (``""`` if it can).
    """
    b, c = cfg.budget, counters
    if stop_requested:
        return "stopped by user"
    if halt_reason:
        return halt_reason
    if b.max_children and c.children + in_flight >= b.max_children:
        return "max_children"
    if b.max_calls or b.max_tokens or b.max_cost_usd:
        f_calls, f_tokens, f_cost = forecast(cfg, c, in_flight - len(buffered) + 1)
        calls = c.calls + c.lost_calls + sum(len(x.calls) for x in buffered) + f_calls
        tokens = c.tokens + c.lost_tokens + sum(x.tokens for x in buffered) + f_tokens
        cost = c.cost_usd + c.lost_cost_usd + sum(x.cost_usd for x in buffered) + f_cost
        if b.max_calls and calls > b.max_calls:
            return "max_calls"
        if b.max_tokens and tokens > b.max_tokens:
            return "max_tokens"
        if b.max_cost_usd and cost > b.max_cost_usd:
            return "max_cost_usd"
    if b.max_metric_calls:
        # a child still running is expected to make as many target calls as the mean child
        # (before any child: the mean seed, which had a full evaluation); like GEPA's
        # max_metric_calls, one more child starts while that total is under the cap
        per = c.child_metric_calls / c.children if c.children else c.metric_calls / max(c.seeds, 1)
        spent = c.metric_calls + sum(
            sum(x.get("tag") == "target" and x.get("cache") != "hit" for x in cand.calls) for cand in buffered
        )
        if spent + per * (in_flight - len(buffered)) >= b.max_metric_calls:
            return "max_metric_calls"
    if b.max_wall_s and wall_s >= b.max_wall_s:
        return "max_wall_s"
    return ""
