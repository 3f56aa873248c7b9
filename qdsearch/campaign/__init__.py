"""A search campaign: the pure state (ask/tell) and the async loop that schedules it.

Modules:
    state       :class:`CampaignState`: ``ask`` (parent, operator, hint) and ``tell``
                (novelty, archive add, counters -> events), no runtime needed
    loop        :class:`Campaign`: the seed phase and the steady-state loop
    schedule    the generational schedule: generations drawn from a fixed archive state,
                added in child-id order (reproducible runs); :func:`stable_events`
    embed       embedding a batch of finished children
    budget      admission: the caps and the forecast of the children in flight
    novelty     the near-duplicate filter over the elites' embeddings
    direction   the hint of operators that need a direction
    measures    where a judged child's measures come from; the frozen complexity blend

The event schema, the counters and the replay live in :mod:`qdsearch.events`.
"""

from __future__ import annotations

from qdsearch.campaign.budget import FORECAST_QUANTILE, FORECAST_WINDOW
from qdsearch.campaign.loop import Campaign, Sink
from qdsearch.campaign.state import CampaignError, CampaignState
from qdsearch.events import Counters, StepStats, candidate_event, replay, sample_of

# The event builder's old private name (kept for importers of qdsearch.campaign).
_event = candidate_event

__all__ = [
    "FORECAST_QUANTILE",
    "FORECAST_WINDOW",
    "Campaign",
    "CampaignError",
    "CampaignState",
    "Counters",
    "Sink",
    "StepStats",
    "replay",
    "sample_of",
]
