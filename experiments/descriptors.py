"""Do the archive's cells mean what their names say? Descriptor designs on foreign text.

For each topic design, the space is fitted as a campaign fits it: on the seeds of a
config (default ``experiments/seeds/example_seeds.jsonl``) plus the design's
reference texts, with the run seed; then foreign categorized sets are described.
Reported per design and set: AMI and ARI of the topic cell with the category; the
same for k-means fitted on the set's own raw embeddings with the same number of
clusters (an upper reference: it sees the data); occupied regions, the largest
region's share, and the normalised entropy of region sizes.

Complexity checks (LLM-free descriptor, old and new): Spearman with word count,
bins used, AUC of math/coding/reasoning above writing/roleplay, and monotonicity:
adding 2 and 4 explicit constraints must raise it, padding with neutral filler of
the same length must not raise it by a bin (5 bins over [1, 10]).

Sets: ``../shared/data/vicuna_questions.jsonl`` (80, 9 categories; experiment use
only, not shipped), ``experiments/data/descriptor_eval_tasks.jsonl`` (96, 8 task
kinds) and ``descriptor_eval_subjects.jsonl`` (90, 10 subjects), written for the
project; ``../shared/data/seed_tasks.jsonl`` (175, no categories) for spread only.

    .venv/bin/python experiments/descriptors.py [--out experiments/results/descriptors.md] [--fits 5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qdsearch.descriptors import complexity as cx  # noqa: E402
from qdsearch.descriptors.reference import builtin_domains, builtin_reference  # noqa: E402
from qdsearch.descriptors.regions import TopicRegions, spherical_kmeans  # noqa: E402
from qdsearch.descriptors.taxonomy import fit_taxonomy  # noqa: E402
from qdsearch.descriptors.topic import TopicProjection  # noqa: E402
from qdsearch.types import Sample  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

# --------------------------------------------------------------------- metrics


def _entropy_norm(labels: np.ndarray, k: int) -> float:
    p = np.bincount(labels, minlength=k) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(min(k, len(labels)))) if k > 1 else 0.0


def _ami_ari(cat: list[str], lab: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    return float(adjusted_mutual_info_score(cat, lab)), float(adjusted_rand_score(cat, lab))


def _kmeans_reference(x: np.ndarray, cat: list[str], k: int, fits: int) -> float:
    from sklearn.cluster import KMeans

    return float(np.mean([_ami_ari(cat, KMeans(k, n_init=10, random_state=s).fit_predict(x))[0] for s in range(fits)]))


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg)) if pos and neg else float("nan")


# --------------------------------------------------------------------- designs

Assign = Callable[[np.ndarray], np.ndarray]


def _pca_grid(fit: np.ndarray, bins: int) -> tuple[Assign, int]:
    proj = TopicProjection.fit(fit, 2, 2.5)

    def assign(x: np.ndarray) -> np.ndarray:
        idx = np.clip(((proj.transform(x) + 2.5) / 5.0 * bins).astype(int), 0, bins - 1)
        return idx[:, 0] * bins + idx[:, 1]

    return assign, bins * bins


def design_pca_grid(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    """Today's default before this change: PCA-2 fitted on the seeds, 6x6 topic cells."""
    return _pca_grid(seeds, 6)


def design_pca_grid_ref(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    """PCA-2 fitted on seeds + the shipped reference (wider spread), 4x4 cells."""
    return _pca_grid(np.vstack([seeds, ref]), 4)


def design_cvt_pca8(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """CVT-style: PCA-8 of seeds + reference, k-means centroids there (Euclidean)."""
    fit = np.vstack([seeds, ref])
    proj = TopicProjection.fit(fit, 8, 2.5)
    z = proj.transform(fit)
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=8, random_state=rng_seed).fit(z)
    return (lambda x: km.predict(proj.transform(x))), k


REF_TOPICS: list[str] = []  # topic name per reference text, set in main()


def _regions(fit: np.ndarray, k: int, rng_seed: int, topics: list[str] | None = None) -> tuple[Assign, int]:
    r = TopicRegions.fit(fit, k, np.random.default_rng(rng_seed), topics=topics or ())
    return r.assign, k


def design_regions_seeds(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """Regions (centred spherical k-means, full 384-d) on the seeds alone."""
    return _regions(seeds, min(k, len(seeds)), rng_seed)


def design_regions_texts(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """Regions on seeds + every reference text as its own point."""
    return _regions(np.vstack([seeds, ref]), k, rng_seed)


def design_regions(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """Regions on seeds + one point per reference topic (the default, k = 16)."""
    return _regions(np.vstack([seeds, ref]), k, rng_seed, [""] * len(seeds) + REF_TOPICS)


def design_taxonomy(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """Regions = the shipped corpus's domains (topic_fit = "taxonomy", the default)."""
    texts = [""] * len(seeds) + [t for _, t in builtin_reference()]
    r = fit_taxonomy(
        np.vstack([seeds, ref]),
        k,
        np.random.default_rng(rng_seed),
        texts,
        [""] * len(seeds) + REF_TOPICS,
        builtin_domains(),
    )
    return r.assign, k


def design_taxonomy_12(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    return design_taxonomy(seeds, ref, 12, rng_seed)


def design_taxonomy_24(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    return design_taxonomy(seeds, ref, 24, rng_seed)


def design_regions_12(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    return design_regions(seeds, ref, 12, rng_seed)


def design_regions_24(seeds: np.ndarray, ref: np.ndarray, rng_seed: int = 0) -> tuple[Assign, int]:
    return design_regions(seeds, ref, 24, rng_seed)


def design_uncentred(seeds: np.ndarray, ref: np.ndarray, k: int = 16, rng_seed: int = 0) -> tuple[Assign, int]:
    """Regions without removing the mean direction."""
    c = spherical_kmeans(np.vstack([seeds, ref]), k, np.random.default_rng(rng_seed))
    return (lambda x: np.argmax(x @ c.T, axis=1)), k


DESIGNS: dict[str, Callable[..., tuple[Assign, int]]] = {
    "pca2 grid 6x6, seeds (old default)": design_pca_grid,
    "pca2 grid 4x4, seeds+ref": design_pca_grid_ref,
    "cvt on pca8, seeds+ref, k=16": design_cvt_pca8,
    "regions, seeds only, k=16": design_regions_seeds,
    "regions, uncentred, seeds+ref texts, k=16": design_uncentred,
    "regions, seeds+ref texts, k=16": design_regions_texts,
    "regions, seeds+ref topics, k=12": design_regions_12,
    "regions, seeds+ref topics, k=16 (kmeans; previous default)": design_regions,
    "regions, seeds+ref topics, k=24": design_regions_24,
    "taxonomy, 16 domains merged to k=12": design_taxonomy_12,
    "taxonomy, 16 domains, k=16 (default)": design_taxonomy,
    "taxonomy, 16 domains split to k=24": design_taxonomy_24,
}

# ------------------------------------------------------------------ complexity

CONSTRAINTS = [
    "Answer in at most 120 words.",
    "Use exactly three bullet points.",
    "Do not use any technical jargon.",
    "Include one concrete example.",
    "Write it for a ten-year-old reader.",
    "End with a one-sentence summary.",
    "Format the answer as a table.",
    "Avoid mentioning any brand names.",
    "Cite at least two sources.",
    "Keep the tone formal.",
    "Start with a short definition.",
    "Make sure every claim is justified.",
]
FILLER = [
    "I have been wondering about this for a while now.",
    "My friend and I talked about it over coffee yesterday.",
    "It came up again when I was reading in the garden.",
    "Thanks a lot in advance, I really appreciate it.",
    "This is something that has been on my mind lately.",
    "We were chatting about it on a long walk last weekend.",
]


def _pad_to(words: int, rng: np.random.Generator) -> str:
    out: list[str] = []
    while len(" ".join(out).split()) < words:
        out.append(FILLER[int(rng.integers(len(FILLER)))])
    return " ".join(" ".join(out).split()[:words]).rstrip(",.") + "."


def _bin(v: float, bins: int = 5) -> int:
    return min(bins - 1, int((v - 1.0) / 9.0 * bins))


def old_cheap(sample: Sample) -> float:
    """The LLM-free complexity before this change (length + constraint words)."""
    import re

    pat = re.compile(
        r"\b(must|should|at least|at most|no more than|exactly|without|only|include|including|avoid|"
        r"each|every|step|steps|then|first|finally|format|words|sentences|list|table|explain why|justify)\b",
        re.IGNORECASE,
    )
    text = sample.prompt_text()
    length_part = min(1.0, math.log1p(len(text.split())) / math.log1p(400))
    return 1.0 + 9.0 * (0.5 * length_part + 0.5 * min(1.0, len(pat.findall(text)) / 8.0))


def complexity_checks(
    samples: list[Sample], cats: list[str] | None, fn: Callable[[Sample], float], seed: int = 0
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    vals = [fn(s) for s in samples]
    words = [len(s.prompt_text().split()) for s in samples]
    up2 = up4 = pad_ok = 0
    for s in samples:
        base = fn(s)
        picks = rng.choice(len(CONSTRAINTS), size=4, replace=False)
        add2 = " ".join(CONSTRAINTS[i] for i in picks[:2])
        add4 = " ".join(CONSTRAINTS[i] for i in picks)
        c2 = fn(Sample(s.id, f"{s.instruction} {add2}", input=s.input))
        c4 = fn(Sample(s.id, f"{s.instruction} {add4}", input=s.input))
        up2 += c2 > base
        up4 += c4 > c2
        padded = Sample(s.id, f"{s.instruction} {_pad_to(len(add4.split()), rng)}", input=s.input)
        pad_ok += _bin(fn(padded)) - _bin(base) < 1
    out = {
        "spearman_len": _spearman(vals, words),
        "bins_used": float(len({_bin(v) for v in vals})),
        "up_2": up2 / len(samples),
        "up_4": up4 / len(samples),
        "pad_no_bin": pad_ok / len(samples),
    }
    if cats:
        hard = [v for v, c in zip(vals, cats, strict=True) if c in ("math", "coding", "reasoning", "fermi")]
        soft = [v for v, c in zip(vals, cats, strict=True) if c in ("writing", "roleplay")]
        out["auc_hard_vs_writing"] = _auc(hard, soft)
    return out


# ------------------------------------------------------------------------ main


def _load(path: Path) -> tuple[list[Sample], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    samples, cats = [], []
    for i, r in enumerate(rows):
        inp = r.get("input", "")
        if not inp and r.get("instances"):
            inp = r["instances"][0].get("input", "")
        samples.append(Sample(f"x{i}", r["instruction"], input=inp))
        cats.append(r.get("category", ""))
    return samples, cats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    ap.add_argument("--fits", type=int, default=5, help="fit seeds per design (mean and spread reported)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    seeds, _ = _load(Path(args.seeds))
    ref_rows = builtin_reference()
    REF_TOPICS[:] = [t for t, _ in ref_rows]
    t0 = time.perf_counter()
    e_seeds = emb.embed([s.prompt_text() for s in seeds])
    e_ref = emb.embed([t for _, t in ref_rows])
    sets: dict[str, tuple[list[Sample], list[str]]] = {}
    for name, path in [
        ("vicuna-80", SHARED / "vicuna_questions.jsonl"),
        ("tasks-96", ROOT / "experiments/data/descriptor_eval_tasks.jsonl"),
        ("subjects-90", ROOT / "experiments/data/descriptor_eval_subjects.jsonl"),
        ("seed_tasks-175", SHARED / "seed_tasks.jsonl"),
    ]:
        if path.exists():
            sets[name] = _load(path)
    vecs = {n: emb.embed([s.prompt_text() for s in smp]) for n, (smp, _) in sets.items()}
    embed_s = time.perf_counter() - t0
    lines = [
        "# Descriptors on foreign text",
        "",
        f"Command: `.venv/bin/python experiments/descriptors.py --fits {args.fits}`; embedder all-MiniLM-L6-v2; "
        f"space fitted on `{Path(args.seeds).name}` ({len(seeds)} seeds) plus, where the design says so, the shipped "
        f"reference corpus ({len(ref_rows)} texts, 64 topics); mean ± sd over {args.fits} fit seeds. "
        "k-means = sklearn KMeans on the set's own embeddings, same number of clusters (it sees the data).",
        "",
        "## Topic cells",
        "",
        "| design | set | cells | AMI | ARI | k-means AMI | AMI / k-means | occupied | largest | entropy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    km_cache: dict[tuple[str, int], float] = {}
    for dname, design in DESIGNS.items():
        for sname, (_smp, cats) in sets.items():
            x = vecs[sname]
            res = []
            for f in range(args.fits):
                assign, k = design(e_seeds, e_ref, rng_seed=f)
                lab = np.asarray(assign(x))
                occ = len(set(lab.tolist())) / k
                big = np.bincount(lab, minlength=k).max() / len(lab)
                ami, ari = _ami_ari(cats, lab) if any(cats) else (float("nan"), float("nan"))
                res.append((ami, ari, occ, big, _entropy_norm(lab, k)))
            r = np.asarray(res)
            mean, sd = np.nanmean(r, axis=0), np.nanstd(r, axis=0)
            if any(cats):
                key = (sname, k)
                if key not in km_cache:
                    km_cache[key] = _kmeans_reference(x, cats, k, 3)
                km = km_cache[key]
                cells = f"{mean[0]:.3f} ± {sd[0]:.3f} | {mean[1]:.3f} | {km:.3f} | {mean[0] / km:.2f}"
            else:
                cells = "– | – | – | –"
            lines.append(f"| {dname} | {sname} | {k} | {cells} | {mean[2]:.0%} | {mean[3]:.0%} | {mean[4]:.2f} |")
    lines += [
        "",
        "## Complexity (LLM-free)",
        "",
        "Spearman with word count; bins used of 5; AUC of math/coding/reasoning/fermi above writing/roleplay; share "
        "of texts whose complexity rises with 2 added constraints (`up 2`) and again with 2 more (`up 4`); share "
        "whose bin does not rise when padded with neutral filler of the 4 constraints' length.",
        "",
        "| descriptor | set | Spearman(len) | bins | AUC hard>writing | up 2 | up 4 | filler: no bin up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cname, fn in [("old: length + keywords", old_cheap), ("new: structural", cx.structural_complexity)]:
        for sname, (smp, cats) in sets.items():
            c = complexity_checks(smp, cats if any(cats) else None, fn)
            auc = f"{c['auc_hard_vs_writing']:.2f}" if "auc_hard_vs_writing" in c else "–"
            lines.append(
                f"| {cname} | {sname} | {c['spearman_len']:.2f} | {c['bins_used']:.0f} | {auc} | "
                f"{c['up_2']:.0%} | {c['up_4']:.0%} | {c['pad_no_bin']:.0%} |"
            )
    lines += ["", f"Embedding all texts took {embed_s:.1f} s.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
