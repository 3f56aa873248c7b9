"""Where a judged child's measures come from, and the run's frozen complexity blend.

:func:`compute_measures` is the one place the campaign turns a judged, embedded
candidate into its measures (the archive's coordinates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from qdsearch.config import CampaignConfig
from qdsearch.descriptors.base import Observation
from qdsearch.descriptors.complexity import blend_complexity, choose_blend, structural_complexity
from qdsearch.descriptors.measures import measure_row
from qdsearch.descriptors.space import TopicSpace
from qdsearch.domains import Domain
from qdsearch.types import Candidate

__all__ = ["compute_measures", "frozen_blend"]


def compute_measures(
    domain: Domain,
    projection: TopicSpace,
    blend: float,
    cands: Sequence[Candidate],
    vectors: Sequence[np.ndarray],
) -> list[tuple[Candidate, np.ndarray]]:
    """The measures of judged and embedded candidates.

    A categorical domain (one with ``axes``) places a candidate by the judge's
    labels (each label index + 0.5). Otherwise the measures are the complexity (the
    judged one blended with the LLM-free one by ``blend``) followed by the topic
    coordinates of its embedding in the frozen ``projection``.

    Args:
        domain: the campaign's domain.
        projection: the frozen topic space.
        blend: weight of the LLM-free complexity (see
            :func:`qdsearch.descriptors.complexity.blend_complexity`).
        cands: judged candidates (``judgement`` is not None), in order.
        vectors: their embeddings, one (dim,) unit vector each.

    Returns:
        Per candidate: the candidate (its judgement's complexity replaced by the
        blended one in a non-categorical domain) and its (n_measures,) measures.
    """
    coords = projection.transform(np.stack(vectors)) if len(vectors) else None
    out: list[tuple[Candidate, np.ndarray]] = []
    for k, cand in enumerate(cands):
        j = cand.judgement
        assert j is not None and coords is not None
        if not domain.axes:  # the complexity measure: judged blended with LLM-free
            cx = blend_complexity(j.complexity, cand.sample, blend)
            j = dataclasses.replace(j, complexity=cx)
            cand = dataclasses.replace(cand, judgement=j)
        # the campaign's descriptors, in order (default: complexity then topic, or the labels)
        obs = Observation(cand.sample, j, topic=coords[k])
        measures = measure_row(domain.cfg, obs, projection)  # type: ignore[attr-defined]
        out.append((cand, measures))
    return out


def frozen_blend(cfg: CampaignConfig, domain: Domain, seeds: Sequence[Candidate]) -> tuple[float, str]:
    """The run's complexity blend, chosen once from the judged seeds (see
    :func:`qdsearch.descriptors.complexity.choose_blend`; a domain with label axes
    keeps the config's blend).

    Returns:
        (the blend, a note for the user when it fell back to 1.0, else ``""``).
    """
    if domain.axes:
        return float(cfg.judge.complexity_blend), ""
    ok = [c for c in seeds if c.judgement is not None]
    judged = [c.judgement.complexity for c in ok if c.judgement is not None]
    return choose_blend(cfg, judged, [structural_complexity(c.sample) for c in ok])
