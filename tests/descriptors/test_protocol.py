"""The built-in descriptors on the protocol: axes, measures, fit, fields and card text
give what the archive, campaign and export computed by hand before."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.base import DESCRIPTORS, FitData, Observation, register
from qdsearch.descriptors.complexity import ComplexityDescriptor, structural_complexity
from qdsearch.descriptors.measures import (
    axes_of,
    card_text,
    descriptor_fields,
    descriptor_names,
    is_categorical,
    label_axes,
    measure_row,
)
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.types import Judgement, Sample


def cfg(**over: Any) -> CampaignConfig:
    return from_dict(over)


class _Named:
    labels = ("cooking", "law", "music")


def test_default_descriptors_per_domain() -> None:
    assert descriptor_names(cfg()) == ("complexity", "topic")
    assert descriptor_names(cfg(domain={"kind": "probe"})) == ("labels",)
    assert is_categorical(cfg(domain={"kind": "probe"})) and not is_categorical(cfg())
    assert label_axes(cfg(domain={"kind": "probe"}))["risk"][0] == "off_topic"
    assert label_axes(cfg()) == {}


def test_axes_give_the_old_ranges_and_bins() -> None:
    regions = cfg(archive={"complexity_bins": 4, "topic_regions": 12})
    assert [(a.range, a.bins) for a in axes_of(regions)] == [((1.0, 10.0), 4), ((0.0, 12.0), 12)]
    pca = cfg(archive={"topic": "pca", "topic_dims": 3, "topic_bins": 2, "topic_range": 2.0, "kind": "cvt"})
    assert [(a.range, a.bins) for a in axes_of(pca)] == [((1.0, 10.0), 5)] + [((-2.0, 2.0), 2)] * 3
    assert [a.tag for a in axes_of(pca)] == ["c", "t1", "t2", "t3"]
    probe = cfg(domain={"kind": "probe"})
    assert [(a.name, a.range, a.bins, a.nominal) for a in axes_of(probe)] == [
        ("risk", (0.0, 4.0), 4, True),
        ("style", (0.0, 4.0), 4, True),
    ]
    assert axes_of(regions, _Named())[1].labels == _Named.labels
    assert axes_of(regions)[1].names()[:2] == ("region 0", "region 1")


def test_measure_row_is_complexity_then_topic_or_the_labels() -> None:
    s = Sample("c1", "Explain tides.", "", "The moon.")
    j = Judgement(7.0, 4.5, "ok", labels=(2, 1))
    assert measure_row(cfg(), Observation(s, j, topic=np.array([3.5]))).tolist() == [4.5, 3.5]
    assert measure_row(cfg(domain={"kind": "probe"}), Observation(s, j)).tolist() == [2.5, 1.5]
    emb = np.random.default_rng(1).normal(size=(10, 6))
    proj = TopicProjection.fit(emb, 2, 2.5)
    pca = cfg(archive={"topic": "pca", "topic_dims": 2})
    got = measure_row(pca, Observation(s, j, embedding=emb[3]), proj)
    assert np.allclose(got, np.concatenate([[4.5], proj.transform(emb[3:4])[0]]))


def test_complexity_fit_freezes_the_blend_as_the_campaign_does() -> None:
    seeds = [
        Observation(Sample(f"s{i}", text, "", "x"), Judgement(5.0, 5.0, "ok"))
        for i, text in enumerate(
            [
                "Say hi.",
                "List three fruits.",
                "Write a 200-word essay in JSON with a title, three sections and a summary; cite two sources.",
                "Prove step by step that the square root of 2 is irrational, then explain why the proof works.",
                "Name a colour.",
            ]
        )
    ]
    assert len({round(structural_complexity(o.sample)) for o in seeds}) > 1
    d = ComplexityDescriptor()
    assert d.fit(cfg(judge={"complexity_blend": 0.5}), FitData(seeds)) == 1.0  # the judge saw no difference
    assert d.fit(cfg(judge={"complexity_blend": 0.0}), FitData(seeds)) == 0.0  # judged only, as asked
    spread = [Observation(o.sample, Judgement(5.0, 1.0 + 2 * i, "ok")) for i, o in enumerate(seeds)]
    assert d.fit(cfg(judge={"complexity_blend": 0.5}), FitData(spread)) == 0.5


def test_fields_and_card_text() -> None:
    regions = cfg(archive={"topic_regions": 3})
    assert descriptor_fields(regions, [4.0, 1.5], _Named()) == {"topic_region": "law"}
    assert descriptor_fields(regions, [4.0, 1.5]) == {}  # no names frozen: no field
    assert card_text(regions).startswith("complexity (5 bins; judged blended with an LLM-free count")
    assert card_text(regions).endswith(
        "and 3 named topic regions of sentence-embedding space (each record's `topic_region`)"
    )
    assert card_text(cfg(domain={"kind": "probe"})).startswith("risk (off_topic, made_up_facts")


def test_a_name_belongs_to_one_descriptor() -> None:
    class Other(ComplexityDescriptor):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register(Other())
    assert type(DESCRIPTORS["complexity"]) is ComplexityDescriptor
