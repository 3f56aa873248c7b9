"""Topic regions (the default topic descriptor) and the frozen descriptor space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import ArchiveConfig
from qdsearch.descriptors.reference import builtin_reference
from qdsearch.descriptors.regions import TopicRegions, spherical_kmeans
from qdsearch.descriptors.space import embed_fit_texts, fit_texts, fit_topic_space, load_topic_space, topic_cell
from qdsearch.descriptors.topic import TopicProjection

DATA = Path(__file__).resolve().parent / "data"


def blobs(k: int, per: int, d: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` well-separated clusters of unit vectors around a shared direction."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=d)
    centres = rng.normal(size=(k, d))
    x = np.repeat(centres, per, axis=0) + 3.0 * common + spread * rng.normal(size=(k * per, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def test_regions_recover_separated_clusters_and_are_reproducible() -> None:
    x, truth = blobs(5, 12)
    a = TopicRegions.fit(x, 5, np.random.default_rng(1))
    b = TopicRegions.fit(x, 5, np.random.default_rng(1))
    lab = a.assign(x)
    assert np.array_equal(lab, b.assign(x)) and np.allclose(a.centroids, b.centroids)
    # one region per cluster: the partition is the same up to names
    pairs = set(zip(truth.tolist(), lab.tolist(), strict=True))
    assert len(pairs) == 5 and len({p[1] for p in pairs}) == 5
    assert a.transform(x).shape == (60, 1) and set(a.transform(x)[:, 0]) == {r + 0.5 for r in range(5)}


def test_shared_direction_does_not_collapse_regions() -> None:
    # All vectors share a strong common direction (as sentence embeddings of
    # instructions do); without removing it, the clusters would look alike.
    x, _ = blobs(6, 10, spread=0.02)
    r = TopicRegions.fit(x, 6, np.random.default_rng(0))
    assert len(set(r.assign(x).tolist())) == 6


def test_labels_come_from_reference_topics_else_words() -> None:
    x, _ = blobs(2, 6)
    texts = [f"bake bread with flour number {i}" for i in range(6)] + [f"orbit of planets number {i}" for i in range(6)]
    named = TopicRegions.fit(x, 2, np.random.default_rng(0), texts, ["baking"] * 6 + ["astronomy"] * 6)
    assert sorted(named.labels) == ["astronomy", "baking"]
    worded = TopicRegions.fit(x, 2, np.random.default_rng(0), texts, [""] * 12)
    assert any("bake" in lab or "bread" in lab for lab in worded.labels)
    assert all(lab for lab in worded.labels) and len(set(worded.labels)) == 2
    # each region's example is a text of that region
    for j, ex in enumerate(worded.examples):
        assert ex in texts and worded.assign(x[[texts.index(ex)]])[0] == j


def test_fit_errors_name_the_key() -> None:
    x, _ = blobs(2, 3)
    with pytest.raises(ValueError, match=r"archive\.topic_regions = 16 needs at least 16"):
        TopicRegions.fit(x, 16, np.random.default_rng(0))
    with pytest.raises(ValueError, match="3 texts for 6 embeddings"):
        TopicRegions.fit(x, 2, np.random.default_rng(0), texts=["a", "b", "c"])


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, _ = blobs(4, 5)
    r = TopicRegions.fit(x, 4, np.random.default_rng(0), [f"t{i}" for i in range(20)], ["a", "b", "c", "d"] * 5)
    r = TopicRegions(r.center, r.centroids, r.labels, r.examples, complexity_blend=0.5)
    r.save(tmp_path / "p.npz")
    back = load_topic_space(tmp_path / "p.npz")
    assert isinstance(back, TopicRegions)
    assert back.labels == r.labels and back.examples == r.examples and back.complexity_blend == 0.5
    assert np.array_equal(back.assign(x), r.assign(x))
    # a PCA projection saved by an older version (no kind, no blend) still loads
    p = TopicProjection.fit(x, 2, 2.5)
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez(f, mean=p.mean, components=p.components, scale=p.scale, range=np.array(p.range))
    old = load_topic_space(tmp_path / "old.npz")
    assert isinstance(old, TopicProjection) and old.complexity_blend == -1.0
    assert np.allclose(old.transform(x), p.transform(x))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(2, 30), st.integers(1, 8), st.integers(0, 2**16))
def test_kmeans_invariants(n: int, k: int, seed: int) -> None:
    k = min(k, n)
    x = np.random.default_rng(seed).normal(size=(n, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = spherical_kmeans(x, k, np.random.default_rng(seed), n_init=2)
    assert c.shape == (k, 5) and np.all(np.isfinite(c))
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0)


def test_duplicate_points_and_k_equal_n() -> None:
    x = np.tile(blobs(1, 1)[0], (5, 1))  # five identical texts
    r = TopicRegions.fit(x, 5, np.random.default_rng(0))
    assert np.all(np.isfinite(r.centroids)) and r.assign(x).shape == (5,)


def test_fit_texts_adds_the_builtin_corpus_for_regions_only() -> None:
    ref = builtin_reference()
    assert len(ref) >= 300 and len({t for t, _ in ref}) >= 50
    texts, topics = fit_texts(ArchiveConfig(), ["seed a", "seed b"], ["mine"])
    assert texts[:3] == ["seed a", "seed b", "mine"] and topics[:3] == ["", "", ""]
    assert len(texts) == 3 + len(ref) and topics[3] == ref[0][0]
    assert fit_texts(ArchiveConfig(topic_reference="none"), ["a"], []) == (["a"], [""])
    assert fit_texts(ArchiveConfig(topic="pca"), ["a"], ["b"]) == (["a", "b"], ["", ""])


def test_topic_cell_of_a_pca_space_ignores_complexity() -> None:
    x, _ = blobs(3, 10, d=8)
    cfg = ArchiveConfig(topic="pca", topic_dims=2, topic_bins=4, topic_range=2.0)
    space = fit_topic_space(cfg, x, seed=0)
    cells = topic_cell(cfg, space, x)
    assert cells.min() >= 0 and cells.max() < 16
    coords = space.transform(x)
    idx = np.clip(((coords + 2.0) / 4.0 * 4).astype(int), 0, 3)
    assert np.array_equal(cells, idx[:, 0] * 4 + idx[:, 1])


# ----------------------------------------------------------------- real text


def _ami(a: list[str], b: list[int]) -> float:
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(a, b))


@pytest.fixture(scope="module")
def real() -> dict[str, object]:
    """Sentence-transformer embeddings of the test seeds, the shipped reference
    corpus, and a categorized set of foreign requests (written for these tests)."""
    from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder()
    seeds = [json.loads(line)["instruction"] for line in (DATA / "seeds.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (DATA / "foreign.jsonl").read_text().splitlines()]
    return {
        "seeds": seeds,
        "cats": [r["category"] for r in rows],
        "foreign": e.embed([r["instruction"] for r in rows]),
        "fit": e.embed(fit_texts(ArchiveConfig(), seeds, [])[0]),
        "seed_vecs": e.embed(seeds),
        "embedder": e,
    }


@pytest.mark.slow  # statistical, on real sentence-transformer embeddings (its fixture: about 30 s)
def test_regions_separate_foreign_categories_where_the_seed_pca_grid_collapses(real: dict) -> None:
    cfg = ArchiveConfig()
    texts, topics = fit_texts(cfg, real["seeds"], [])  # type: ignore[arg-type]
    space = fit_topic_space(cfg, real["fit"], seed=0, texts=texts, topics=topics)  # type: ignore[arg-type]
    lab = topic_cell(cfg, space, real["foreign"]).tolist()  # type: ignore[arg-type]
    counts = np.bincount(lab, minlength=cfg.topic_regions)
    assert (counts > 0).sum() >= cfg.topic_regions // 2  # half the regions used
    assert counts.max() <= 0.25 * len(lab)
    regions_ami = _ami(real["cats"], lab)  # type: ignore[arg-type]
    # the old default: PCA-2 of the seeds alone, 6 x 6 topic cells
    old = ArchiveConfig(topic="pca", topic_dims=2, topic_bins=6)
    pca = fit_topic_space(old, real["seed_vecs"], seed=0)  # type: ignore[arg-type]
    old_lab = topic_cell(old, pca, real["foreign"]).tolist()  # type: ignore[arg-type]
    old_ami = _ami(real["cats"], old_lab)  # type: ignore[arg-type]
    assert regions_ami >= 0.25 and regions_ami > old_ami + 0.1, (regions_ami, old_ami)
    assert all(lab and lab != "misc" for lab in space.labels)


PLAIN = {  # requests whose domain nobody would dispute (not in the reference corpus)
    "programming": "Write a Go function that merges two sorted slices of integers into one sorted slice.",
    "mathematics": "Find all real solutions of x^2 - 5x + 6 = 0 and check them.",
    "roleplay & characters": "You are a grumpy lighthouse keeper. Stay in character and greet the tourists.",
    "hypotheticals & what-ifs": "What would have happened if the printing press had never been invented?",
    "creative writing & ideas": "Write a haiku about the first snow of winter.",
    "business & money": "How should a small bakery price a new line of wedding cakes to stay profitable?",
    "health & life sciences": "What are the early warning signs of type 2 diabetes?",
    "home & everyday life": "How do I stop my sourdough bread from collapsing in the oven?",
}


@pytest.mark.slow  # real sentence-transformer embeddings (the module fixture)
def test_default_regions_are_the_taxonomy_and_plain_requests_land_in_their_domain(real: dict) -> None:
    cfg = ArchiveConfig()
    texts, topics = fit_texts(cfg, real["seeds"], [])  # type: ignore[arg-type]
    space = fit_topic_space(cfg, real["fit"], seed=0, texts=texts, topics=topics)  # type: ignore[arg-type]
    assert isinstance(space, TopicRegions) and space.how == "taxonomy" and not space.note
    got = space.assign(real["embedder"].embed(list(PLAIN.values())))  # type: ignore[attr-defined]
    landed = {want: space.labels[int(r)] for want, r in zip(PLAIN, got, strict=True)}
    assert sum(want == lab for want, lab in landed.items()) >= len(PLAIN) - 1, landed


@pytest.mark.slow  # embeds the reference corpus with a local model, about 60 s on 2 busy cores
def test_reference_embeddings_are_cached_on_disk_for_a_local_model(
    real: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qdsearch.descriptors import reference
    from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

    monkeypatch.setenv("QDSEARCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(reference, "_MEMO", {})
    e = SentenceTransformerEmbedder()
    calls: list[int] = []
    inner = e.embed

    def counting(texts: Any) -> np.ndarray:
        calls.append(len(texts))
        return inner(texts)

    e.embed = counting  # type: ignore[method-assign]
    first = reference.reference_embeddings(e)
    n = len(builtin_reference())
    assert calls == [n] and first.shape[0] == n
    files = list(tmp_path.glob("reference-*.npy"))
    assert len(files) == 1
    monkeypatch.setattr(reference, "_MEMO", {})  # a new process: only the disk is left
    again = reference.reference_embeddings(e)
    assert calls == [n] and np.array_equal(first, again)
    # the fit texts' embeddings are the same as embedding everything directly
    texts = fit_texts(ArchiveConfig(), ["a seed"], [])[0]
    direct = inner(texts)
    assert np.allclose(embed_fit_texts(e, ArchiveConfig(), texts), direct, atol=1e-5)
    # a damaged cache file is ignored and rewritten
    files[0].write_bytes(b"garbage")
    monkeypatch.setattr(reference, "_MEMO", {})
    assert np.allclose(reference.reference_embeddings(e), first)
