"""Topic regions from a taxonomy: the shipped corpus's 16 domains (the default fit).

The shipped reference corpus (``qdsearch/data/topic_reference.jsonl``) groups its 64
topics into 16 domains (mathematics, programming, creative writing & ideas, roleplay &
characters, business & money, ...). With ``archive.topic_fit = "taxonomy"`` each
domain is one topic region: its centroid is the mean direction of the domain's
reference texts, in the space centred on the fitting set (seeds plus corpus), and a
text belongs to the region whose centroid is nearest. Nothing is clustered, so the
regions do not depend on the fit seed, and each has a name a person chose.

Why not k-means over the seeds plus the corpus (``topic_fit = "kmeans"``, the
previous default): the 64 topic prototypes are nearly orthogonal once centred, so
grouping them into 16 clusters is close to arbitrary ("calculus / cars & vehicles"),
varies with the fit seed, and its cells agreed less with the categories of foreign
question sets (``experiments/descriptors.py``: mean AMI 0.35 against 0.43 for the
taxonomy, same 16 regions).

Other region counts: fewer regions than domains merge the most similar domains
(agglomerative, on the centroids' cosine); more split the domains with the most
topics (D'Hondt allocation) by spherical k-means of their topics. When the seeds are
narrow (at least :data:`NARROW_MIN_SEEDS` seeds, more than :data:`NARROW_SHARE` of them
in one domain or all in fewer than a quarter of the domains, e.g. a cooking dataset),
one broad region would hold most of the campaign: the fit then zooms in, fitting ``k`` regions by k-means on the seeds and the
reference topics of the domains they occupy, and says so in :attr:`TopicRegions.note`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from qdsearch.descriptors.regions import TopicRegions, normalize, spherical_kmeans

__all__ = ["NARROW_MIN_SEEDS", "NARROW_SHARE", "fit_taxonomy"]

NARROW_MIN_SEEDS = 8
"""Seeds needed before the fit judges them narrow (fewer say little about the data)."""
NARROW_SHARE = 0.5
"""Share of the seeds in one domain above which the fit zooms in."""


def _merge(cents: list[np.ndarray], members: list[list[str]], weights: list[int], k: int) -> None:
    """Merges the two most similar groups (weighted centroid cosine) until ``k`` remain."""
    while len(cents) > k:
        m = np.asarray(cents)
        sims = m @ m.T
        np.fill_diagonal(sims, -np.inf)
        i, j = (int(a) for a in np.unravel_index(int(np.argmax(sims)), sims.shape))
        i, j = min(i, j), max(i, j)
        w = weights[i] + weights[j]
        cents[i] = normalize(((cents[i] * weights[i] + cents[j] * weights[j]) / w)[None, :])[0]
        members[i] = members[i] + members[j]
        weights[i] = w
        del cents[j], members[j], weights[j]


def _shares(sizes: Sequence[int], caps: Sequence[int], k: int) -> list[int]:
    """``k`` regions over domains of ``sizes`` topics: one each, the rest by D'Hondt, at
    most ``caps[d]`` per domain."""
    shares = [1] * len(sizes)
    for _ in range(k - len(sizes)):
        open_ = [d for d in range(len(sizes)) if shares[d] < caps[d]]
        if not open_:
            break
        d = max(open_, key=lambda d: (sizes[d] / shares[d], -d))
        shares[d] += 1
    return shares


def fit_taxonomy(
    embeddings: np.ndarray,
    k: int,
    rng: np.random.Generator,
    texts: Sequence[str],
    topics: Sequence[str],
    domains: Mapping[str, str],
) -> TopicRegions:
    """``k`` named topic regions from the domains of the reference topics.

    Args:
        embeddings: (n, d) unit embeddings of the fitting texts (seeds first, then the
            reference corpus), as :func:`qdsearch.descriptors.space.fit_texts` orders them.
        k: number of regions.
        rng: the run's generator (used only when domains are split or the fit zooms in).
        texts: the n texts (labels and examples).
        topics: a topic name per text; ``""`` for seeds and unlabelled reference texts.
        domains: topic name -> domain name.

    Raises:
        ValueError: no text has a topic with a domain, wrong lengths, or more regions
            than the fitting set can give.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(texts) != len(x) or len(topics) != len(x):
        raise ValueError(f"fit_taxonomy: {len(texts)} texts and {len(topics)} topics for {len(x)} embeddings")
    dom = [domains.get(t, "") if t else "" for t in topics]
    names = list(dict.fromkeys(d for d in dom if d))
    if not names:
        raise ValueError(
            "archive.topic_fit = 'taxonomy' needs reference texts with domains (the shipped corpus, "
            "archive.topic_reference = 'builtin'); use archive.topic_fit = 'kmeans' without it"
        )
    center = x.mean(axis=0)
    z = normalize(x - center)
    rows = {n: [i for i, d in enumerate(dom) if d == n] for n in names}
    dcent = normalize(np.asarray([z[rows[n]].mean(axis=0) for n in names]))
    seeds = [i for i, t in enumerate(topics) if not t]

    if len(seeds) >= NARROW_MIN_SEEDS:
        hits = Counter(np.argmax(z[seeds] @ dcent.T, axis=1).tolist())
        top = hits.most_common(1)[0][1] / len(seeds)
        if top > NARROW_SHARE or len(hits) < max(2, math.ceil(len(names) / 4)):
            return _zoom(x, k, rng, texts, topics, dom, names, dcent, seeds, hits)

    topics_of = {n: list(dict.fromkeys(topics[i] for i in rows[n])) for n in names}
    if k <= len(names):
        cents = [dcent[j] for j in range(len(names))]
        members = [[n] for n in names]
        weights = [len(topics_of[n]) for n in names]
        _merge(cents, members, weights, k)
        labels = [" / ".join(m[:2]) + (" / ..." if len(m) > 2 else "") for m in members]
        centroids = np.asarray(cents)
    else:
        caps = [len(rows[n]) for n in names]
        shares = _shares([len(topics_of[n]) for n in names], caps, k)
        if sum(shares) < k:
            raise ValueError(
                f"archive.topic_regions = {k}: the taxonomy's {sum(caps)} reference texts give at most "
                f"{sum(shares)} regions"
            )
        out_c, labels = [], []
        for j, n in enumerate(names):
            if shares[j] == 1:
                out_c.append(dcent[j])
                labels.append(n)
                continue
            tnames = topics_of[n]
            if shares[j] <= len(tnames):  # one point per topic of the domain
                pts = normalize(np.asarray([z[[i for i in rows[n] if topics[i] == t]].mean(axis=0) for t in tnames]))
                pnames = tnames
            else:  # more regions than topics: the domain's texts themselves
                pts = z[rows[n]]
                pnames = [topics[i] for i in rows[n]]
            sub = spherical_kmeans(pts, shares[j], rng)
            near = np.argmax(pts @ sub.T, axis=1)
            for s in range(shares[j]):
                mine = [pnames[p] for p in np.flatnonzero(near == s)]
                named = [t for t, _ in Counter(mine).most_common(2)]
                labels.append(f"{n}: {' / '.join(named) if named else 'misc'}")
                out_c.append(sub[s])
        centroids = np.asarray(out_c)
    return _finish(center, centroids, labels, texts, z, "taxonomy", "")


def _zoom(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    texts: Sequence[str],
    topics: Sequence[str],
    dom: Sequence[str],
    names: Sequence[str],
    dcent: np.ndarray,
    seeds: Sequence[int],
    hits: Counter[int],
) -> TopicRegions:
    """Regions fitted on the seeds and the topics of the domains they fall into (more
    domains, nearest to the seeds' mean direction first, until ``k`` points are there)."""
    chosen = [names[j] for j, _ in hits.most_common()]
    z = normalize(x - x.mean(axis=0))
    pull = normalize(z[list(seeds)].mean(axis=0, keepdims=True))[0]
    rest = [names[j] for j in np.argsort(-(dcent @ pull)).tolist() if names[j] not in chosen]

    def points(ds: Sequence[str]) -> list[int]:
        return list(seeds) + [i for i, d in enumerate(dom) if d in ds]

    while len(set(topics[i] for i in points(chosen) if topics[i])) + len(seeds) < k and rest:
        chosen.append(rest.pop(0))
    sel = points(chosen)
    r = TopicRegions.fit(x[sel], k, rng, [texts[i] for i in sel], [topics[i] for i in sel])
    note = (
        f"the {len(seeds)} seeds fall into {len(hits)} of the {len(names)} taxonomy domains "
        f"({', '.join(names[j] for j, _ in hits.most_common())}): the {k} topic regions were fitted inside "
        f"{'that domain' if len(chosen) == 1 else 'those domains'} instead "
        "(set archive.topic_fit = 'kmeans' to fit over every domain)"
    )
    return TopicRegions(
        center=r.center,
        centroids=r.centroids,
        labels=r.labels,
        examples=r.examples,
        how="taxonomy, zoomed",
        note=note,
    )


def _finish(
    center: np.ndarray,
    centroids: np.ndarray,
    labels: Sequence[str],
    texts: Sequence[str],
    z: np.ndarray,
    how: str,
    note: str,
) -> TopicRegions:
    """Regions ordered by label (indices then do not depend on the corpus order), each
    with its nearest fitting text as example."""
    sims = z @ centroids.T
    examples = [texts[int(np.argmax(sims[:, j]))][:200] if len(texts) else "" for j in range(len(labels))]
    order = sorted(range(len(labels)), key=lambda j: (labels[j], examples[j]))
    seen: Counter[str] = Counter()
    named = []
    for j in order:
        seen[labels[j]] += 1
        named.append(labels[j] if seen[labels[j]] == 1 else f"{labels[j]} ({seen[labels[j]]})")
    return TopicRegions(
        center=center,
        centroids=np.asarray(centroids)[order],
        labels=tuple(named),
        examples=tuple(examples[j] for j in order),
        how=how,
        note=note,
    )
