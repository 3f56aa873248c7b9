"""Topic regions from the reference corpus's taxonomy of domains (the default fit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import ArchiveConfig, ConfigError
from qdsearch.descriptors.reference import builtin_domains, builtin_reference
from qdsearch.descriptors.space import fit_texts, fit_topic_space, load_topic_space
from qdsearch.descriptors.taxonomy import NARROW_MIN_SEEDS, fit_taxonomy

D = 24  # embedding width of the synthetic corpora


def corpus(
    domains: dict[str, list[str]], per: int = 4, spread: float = 0.05, seed: int = 0, close: tuple[str, str] = ("", "")
) -> tuple[np.ndarray, list[str], list[str], dict[str, str], dict[str, np.ndarray]]:
    """A synthetic reference corpus: each domain a direction, each topic a small offset
    from it, ``per`` texts per topic, all sharing one strong common direction (as
    instruction embeddings do). ``close`` names two domains that point nearly the same way."""
    rng = np.random.default_rng(seed)
    common = 3.0 * rng.normal(size=D)
    dirs = {name: rng.normal(size=D) for name in domains}
    if close[0]:
        dirs[close[1]] = dirs[close[0]] + 0.15 * rng.normal(size=D)
    vecs, texts, topics = [], [], []
    for name, tnames in domains.items():
        for t in tnames:
            off = 0.4 * rng.normal(size=D)
            for i in range(per):
                vecs.append(common + dirs[name] + off + spread * rng.normal(size=D))
                texts.append(f"{t} text {i}")
                topics.append(t)
    x = np.asarray(vecs)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mapping = {t: name for name, ts in domains.items() for t in ts}
    return x, texts, topics, mapping, {n: common + v for n, v in dirs.items()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


DOMAINS = {
    "alpha": ["a1", "a2", "a3"],
    "beta": ["b1", "b2"],
    "gamma": ["g1", "g2", "g3", "g4"],
    "delta": ["d1"],
    "epsilon": ["e1", "e2"],
    "zeta": ["z1", "z2"],
    "eta": ["h1"],
    "theta": ["t1", "t2"],
}


def with_seeds(x: np.ndarray, texts: list[str], topics: list[str], seeds: np.ndarray):  # type: ignore[no-untyped-def]
    return (
        np.vstack([seeds, x]),
        [f"seed {i}" for i in range(len(seeds))] + texts,
        [""] * len(seeds) + topics,
    )


def test_one_region_per_domain_named_after_it_and_texts_land_in_their_domain() -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS)
    seeds = unit(np.asarray([dirs[n] for n in DOMAINS]))  # one seed per domain: diverse
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    r = fit_taxonomy(fx, len(DOMAINS), np.random.default_rng(0), ft, fp, mapping)
    assert r.how == "taxonomy" and not r.note
    assert list(r.labels) == sorted(DOMAINS)  # ordered by name: indices do not depend on file order
    lab = r.assign(x)
    for i, t in enumerate(topics):
        assert r.labels[lab[i]] == mapping[t]
    # nothing is clustered: any generator gives the same regions
    r2 = fit_taxonomy(fx, len(DOMAINS), np.random.default_rng(99), ft, fp, mapping)
    assert np.allclose(r.centroids, r2.centroids) and r.labels == r2.labels


def test_fewer_regions_merge_the_most_similar_domains() -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS, close=("alpha", "beta"))
    seeds = unit(np.asarray([dirs[n] for n in DOMAINS]))
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    r = fit_taxonomy(fx, len(DOMAINS) - 1, np.random.default_rng(0), ft, fp, mapping)
    assert r.regions == len(DOMAINS) - 1
    assert "alpha / beta" in r.labels  # the two near-identical domains became one region
    lab = r.assign(x)
    ab = {int(lab[i]) for i, t in enumerate(topics) if mapping[t] in ("alpha", "beta")}
    assert len(ab) == 1
    small = fit_taxonomy(fx, 2, np.random.default_rng(0), ft, fp, mapping)
    assert small.regions == 2 and len(set(small.assign(x).tolist())) == 2


def test_more_regions_split_the_domains_with_most_topics() -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS)
    seeds = unit(np.asarray([dirs[n] for n in DOMAINS]))
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    k = len(DOMAINS) + 3
    r = fit_taxonomy(fx, k, np.random.default_rng(0), ft, fp, mapping)
    assert r.regions == k and len(set(r.labels)) == k
    split = [lab for lab in r.labels if lab.startswith("gamma: ")]
    assert len(split) >= 2  # gamma has the most topics: it is split first
    assert "delta" in r.labels and "eta" in r.labels  # one-topic domains stay whole
    # every region holds some of the corpus
    assert len(set(r.assign(x).tolist())) == k


def test_narrow_seeds_zoom_into_their_domain_and_say_so() -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS, per=6)
    rng = np.random.default_rng(5)
    seeds = unit(dirs["gamma"] + 0.6 * rng.normal(size=(NARROW_MIN_SEEDS + 4, D)))
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    wide = fit_taxonomy(fx, 8, np.random.default_rng(0), ft, fp, mapping)
    assert wide.how == "taxonomy, zoomed"
    assert "gamma" in wide.note and "topic_fit = 'kmeans'" in wide.note
    # the seeds now spread over several regions instead of sharing one
    assert len(set(wide.assign(seeds).tolist())) >= 3
    # few seeds are no evidence: no zoom
    few = with_seeds(x, texts, topics, seeds[: NARROW_MIN_SEEDS - 1])
    assert fit_taxonomy(*few[:1], 8, np.random.default_rng(0), few[1], few[2], mapping).how == "taxonomy"


def test_errors_name_what_is_missing() -> None:
    x, texts, topics, mapping, _ = corpus({"alpha": ["a1"], "beta": ["b1"]}, per=2)
    with pytest.raises(ValueError, match="topic_fit = 'kmeans'"):
        fit_taxonomy(x, 2, np.random.default_rng(0), texts, [""] * len(x), mapping)
    with pytest.raises(ValueError, match="topic_regions = 9"):
        fit_taxonomy(x, 9, np.random.default_rng(0), texts, topics, mapping)
    with pytest.raises(ValueError, match="texts"):
        fit_taxonomy(x, 2, np.random.default_rng(0), texts[:-1], topics, mapping)


def test_config_topic_fit_key() -> None:
    assert ArchiveConfig().topic_fit_kind == "taxonomy"
    assert ArchiveConfig(topic_reference="none").topic_fit_kind == "kmeans"
    with pytest.raises(ConfigError, match=r"archive\.topic_fit"):
        ArchiveConfig(topic_fit="clusters").validate("archive")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"archive\.topic_fit.*topic_reference = 'none'"):
        ArchiveConfig(topic_fit="taxonomy", topic_reference="none").validate("archive")


def test_shipped_corpus_has_sixteen_named_domains() -> None:
    domains = builtin_domains()
    topics = {t for t, _ in builtin_reference()}
    assert set(domains) == topics
    assert len(set(domains.values())) == 16
    assert all(d and d == d.strip() for d in domains.values())


def test_taxonomy_space_saves_and_loads_with_its_note(tmp_path: Path) -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS, per=6)
    seeds = unit(dirs["beta"] + 0.6 * np.random.default_rng(1).normal(size=(10, D)))
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    r = fit_taxonomy(fx, 6, np.random.default_rng(0), ft, fp, mapping)
    r.save(tmp_path / "p.npz")
    back = load_topic_space(tmp_path / "p.npz")
    assert back.how == r.how == "taxonomy, zoomed" and back.note == r.note  # type: ignore[union-attr]
    assert np.array_equal(back.assign(x), r.assign(x))


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 30), seed=st.integers(0, 10_000))
def test_any_region_count_gives_that_many_named_regions(k: int, seed: int) -> None:
    x, texts, topics, mapping, dirs = corpus(DOMAINS, seed=seed % 7)
    seeds = unit(np.asarray([dirs[n] for n in DOMAINS]))
    fx, ft, fp = with_seeds(x, texts, topics, seeds)
    r = fit_taxonomy(fx, k, np.random.default_rng(seed), ft, fp, mapping)
    assert r.regions == k == len(r.labels) == len(set(r.labels))
    assert np.allclose(np.linalg.norm(r.centroids, axis=1), 1.0)
    lab = r.assign(fx)
    assert lab.min() >= 0 and lab.max() < k


def test_default_config_fits_the_taxonomy_through_the_space_api() -> None:
    cfg = ArchiveConfig()
    texts, topics = fit_texts(cfg, ["seed one", "seed two"], [])
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(len(texts), D)))
    space = fit_topic_space(cfg, emb, seed=0, texts=texts, topics=topics)
    assert space.how == "taxonomy"  # type: ignore[union-attr]
    assert sorted(space.labels) == sorted(set(builtin_domains().values()))  # type: ignore[union-attr]
    km = fit_topic_space(ArchiveConfig(topic_fit="kmeans"), emb, seed=0, texts=texts, topics=topics)
    assert km.how == "kmeans"  # type: ignore[union-attr]
