"""QD-score and coverage against LLM calls in the synthetic world, five methods, repeats, 95% CIs.

Issue 9, part 2. For each repeat ``r`` a world with seed ``first_seed + r`` is served
(:class:`qdsearch.world.WorldServer`, chat and embeddings on 127.0.0.1); the seeds are
judged once (a shared seed phase, which also freezes the topic projection), then every
method runs from that seed phase at the same LLM-call budget, each against a fresh
server of the same world (so no method sees another's request counters), and its
QD-score and coverage on the shared grid are read at call checkpoints
(:func:`baselines.curve`). The best reachable archive on the same grid and projection
(:func:`qdsearch.world.truth.optimal_archive`) is computed for reference.

Methods (see ``experiments/baselines.py``): ``qdsearch`` (MAP-Elites, discounted-UCB
operator selection, engine defaults), ``uniform`` (MAP-Elites, uniform operator
weights), ``evol_instruct`` (archive-free Evol-Instruct pool), ``new_question``
(independent New Question sampling), ``novelty`` (novelty-only search), and optionally
``qdsearch_tuned`` (the same as ``qdsearch`` with ``--tuned-discount`` /
``--tuned-exploration`` instead of the engine defaults). ``--generations 16,64,256`` adds
``generational_16`` ... (issue 18): ``qdsearch`` on the generational schedule
(``runtime.schedule = "generational"``) with that generation size, at the same calls, and a
section comparing each with steady-state ``qdsearch`` paired by world.

    .venv/bin/python experiments/world_curves.py --repeats 10 --budget 1200 --step 50
    .venv/bin/python experiments/world_curves.py --methods qdsearch --generations 16,64,256 --name world-curves-generational

Writes ``<out>/world-curves.csv`` (long format: one row per repeat, method and
checkpoint), ``<out>/world-curves.md`` and ``<out>/world-curves.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines

import qdsearch
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.complexity import blend_complexity
from qdsearch.descriptors.embedding import make_embedder
from qdsearch.seeds import load_seeds
from qdsearch.world import WorldConfig, WorldServer
from qdsearch.world.truth import optimal_archive

ROOT = Path(__file__).resolve().parents[1]
TUNED = "qdsearch_tuned"
METHODS = (*baselines.METHODS, TUNED)
DEFAULT_METHODS = baselines.METHODS
# ``generational_<n>``: qdsearch on the generational schedule with generation size n (and
# the default runtime.children_per_elite); ``generational_<n>_nocap``: the same with
# children_per_elite = 0 (every generation n children); ``generational_<n>_cpe<x>``: with
# children_per_elite = x.
GENERATIONAL = "generational_"
NOCAP = "_nocap"
CPE = "_cpe"


def generation_size(method: str) -> int:
    """The generation size of a ``generational_<n>[_nocap|_cpe<x>]`` method (0 for any other method)."""
    tail = method.removeprefix(GENERATIONAL).removesuffix(NOCAP).split(CPE)[0]
    return int(tail) if method.startswith(GENERATIONAL) and tail.isdigit() and int(tail) > 0 else 0


def children_per_elite(method: str) -> float | None:
    """The ``runtime.children_per_elite`` a generational method sets (None: the default)."""
    if method.endswith(NOCAP):
        return 0.0
    return float(method.split(CPE)[1]) if CPE in method else None


GEOMETRIES = ("world", "real")
DESCRIPTORS = ("old", "new")
# The descriptor setups: "old" is the pinned 5 x 4 x 4 PCA grid with the judged complexity
# alone (what world_ci's verdicts were set on), "new" the engine defaults (16 topic regions
# x 5 bins of the judged complexity blended half and half with the LLM-free one).
DESCRIPTOR_KEYS: dict[str, dict[str, dict[str, Any]]] = {
    "old": {"judge": {"complexity_blend": 0.0},
            "archive": {"kind": "grid", "topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 4}},
    "new": {"judge": {}, "archive": {"kind": "grid"}},
}  # fmt: skip


def embedding_keys(geometry: str, url: str) -> dict[str, Any]:
    """``[embedding]`` for a geometry: ``world`` embeds with the world endpoint (embeddings
    follow the topic words by construction), ``real`` with the local sentence-transformer
    (all-MiniLM-L6-v2, the spread of real text: descriptor collapse shows)."""
    if geometry == "world":
        return {"backend": "endpoint", "base_url": url, "model": "qdsearch-world"}
    if geometry == "real":
        return {"backend": "sentence-transformers"}
    raise ValueError(f"geometry: expected one of {list(GEOMETRIES)}, got {geometry!r}")


def world_config(
    url: str,
    seed: int,
    seeds_path: str,
    in_flight: int,
    operators: dict[str, Any] | None = None,
    geometry: str = "world",
    descriptors: str = "old",
) -> CampaignConfig:
    """The campaign config every method shares: the world for chat, embeddings from ``geometry``
    (:func:`embedding_keys`), the archive and complexity blend of ``descriptors``
    (:data:`DESCRIPTOR_KEYS`; default ``old``, the 5 x 4 x 4 PCA grid)."""
    if descriptors not in DESCRIPTOR_KEYS:
        raise ValueError(f"descriptors: expected one of {list(DESCRIPTORS)}, got {descriptors!r}")
    cfg = from_dict(
        {
            "run": {"name": "world-curves", "seed": seed},
            "endpoint": {"base_url": url, "model": "qdsearch-world", "json_mode": "json_object",
                         "concurrency": in_flight, "timeout_s": 30.0, "backoff_s": 0.05},
            "embedding": embedding_keys(geometry, url),
            "seeds": {"path": seeds_path},
            **DESCRIPTOR_KEYS[descriptors],
            "operators": {"names": baselines.ALL_OPS, "selection": "ucb", **(operators or {})},
            "runtime": {"kind": "inprocess", "in_flight": in_flight, "embed_batch": 8},
        }
    )  # fmt: skip
    cfg.validate()
    return cfg


def with_url(cfg: CampaignConfig, url: str) -> CampaignConfig:
    """``cfg`` pointed at another server (of the same world)."""
    over = {"endpoint.base_url": url, "embedding.base_url": url if cfg.embedding.backend == "endpoint" else None}
    return qdsearch.load_config(cfg, over)


_LOCAL_EMBEDDERS: dict[tuple[str, str], Any] = {}


def _embedder(cfg: CampaignConfig) -> Any:
    """The embedder of ``cfg``; a local model is loaded once per process (world endpoints: one per server)."""
    e = cfg.embedding
    if e.backend == "endpoint":
        return make_embedder(e)
    key = (e.backend, e.model)
    if key not in _LOCAL_EMBEDDERS:
        _LOCAL_EMBEDDERS[key] = make_embedder(e)
    return _LOCAL_EMBEDDERS[key]


def blended(items: list[baselines.Item], space: Any) -> list[baselines.Item]:
    """The archive-free methods' children with the run's frozen complexity blend applied to their
    judged complexity (MAP-Elites children already carry the blended one, with their measures)."""
    w = float(getattr(space, "complexity_blend", 0.0))
    if w <= 0:
        return items
    return [
        dataclasses.replace(it, complexity=blend_complexity(it.complexity, it.sample, w))
        if it.measures is None and it.complexity is not None
        else it
        for it in items
    ]


def _topic_cells(cfg: CampaignConfig, measures: np.ndarray) -> np.ndarray:
    """(n,) topic cell (complexity ignored) of (n, 1 + topic dims) archive measures."""
    a = cfg.archive
    if a.topic_kind == "regions":
        return np.floor(measures[:, 1]).astype(int)
    idx = np.clip(((measures[:, 1:] + a.topic_range) / (2 * a.topic_range) * a.topic_bins).astype(int), 0,
                  a.topic_bins - 1)  # fmt: skip
    return np.ravel_multi_index(tuple(idx.T), (a.topic_bins,) * idx.shape[1]).astype(int)


def truth_of(
    cfg: CampaignConfig,
    frozen: tuple[Any, np.ndarray | None],
    world: Any,
    seeds: list[baselines.Item],
    items: list[baselines.Item],
    budget: int,
) -> dict[str, float]:
    """The world's truth about a method's archive after ``budget`` calls, on a grid that does not
    depend on the geometry or the descriptors: true topic (9) x true complexity in 5 bins (45 cells).

    ``topic_cells``: occupied topic cells of the run's archive (of 16 in both layouts);
    ``true_cells`` / ``true_topics``: distinct true cells / topics among its elites;
    ``true_qd``: the sum over true cells of the best noise-free quality of its elites there;
    ``gen_true_cells``: distinct true cells among every judged sample (seeds included) within
    the budget, archived or not; ``topic_ami``: adjusted mutual information between the run's
    topic cell and the true topic over those samples (1: the cells follow the true topics).
    """
    from sklearn.metrics import adjusted_mutual_info_score

    from qdsearch.archive import add_sample, elites_frame, make_archive
    from qdsearch.world.model import topic_of

    archive = make_archive(cfg.archive, frozen[1])
    judged: list[baselines.Item] = []
    for it in seeds:
        add_sample(archive, it.sample, it.quality, it.measures, it.complexity)  # type: ignore[arg-type]
        judged.append(it)
    spent = 0
    for it in items:
        if spent + it.calls > budget:
            break
        spent += it.calls
        if it.quality is not None and it.complexity is not None and it.measures is not None:
            add_sample(archive, it.sample, it.quality, it.measures, it.complexity)
            judged.append(it)

    def true_cell(instruction: str, inp: str) -> tuple[str, int]:
        latent = world.latent_of(f"{instruction}\n\n{inp}" if inp else instruction)
        return topic_of(latent), int(np.clip((world.true_complexity(latent) - 1.0) / 9.0 * 5, 0, 4))

    el = elites_frame(archive)
    best: dict[tuple[str, int], float] = {}
    for r in el.itertuples():
        c = true_cell(r.instruction, r.input)
        best[c] = max(best.get(c, -np.inf), world.sample_quality(r.instruction, r.input, r.response))
    gen = [true_cell(it.sample.instruction, it.sample.input) for it in judged]
    cells = _topic_cells(cfg, np.stack([np.asarray(it.measures, dtype=float) for it in judged]))
    occupied = _topic_cells(cfg, np.stack([np.asarray(m, dtype=float) for m in el["measures"]])) if len(el) else []
    return {
        "topic_cells": float(len(set(np.asarray(occupied).tolist()))),
        "true_cells": float(len(best)),
        "true_topics": float(len({t for t, _ in best})),
        "true_qd": float(sum(best.values())),
        "gen_true_cells": float(len(set(gen))),
        "topic_ami": float(adjusted_mutual_info_score([t for t, _ in gen], cells)),
    }


async def run_repeat(
    world: WorldConfig,
    methods: Sequence[str],
    budget: int,
    checkpoints: Sequence[int],
    seeds_path: str,
    in_flight: int,
    tuned: dict[str, float] | None = None,
    optimum: bool = True,
    geometry: str = "world",
    descriptors: str = "old",
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Counter[str]]]:
    """One repeat: the shared seed phase, every method's curve, and (with ``optimum``) the optimum.

    With ``in_flight = 1`` a repeat is exactly reproducible (the world's request counters
    do not depend on arrival order). ``geometry`` and ``descriptors``: see :func:`world_config`;
    the optimum needs the world's own geometry (it places word sets by the world's
    embeddings), so ``geometry = "real"`` has none. Each curve row at the last checkpoint
    also gets the world's truth about the method's final archive (:func:`truth_of`).

    Returns:
        (curve rows, {"opt_qd_score", "opt_coverage", "opt_cells", "seeds_judged"},
        method -> operator pulls of its children within the budget).
    """
    srv = WorldServer(world).start()
    try:
        cfg = world_config(srv.base_url, world.seed, seeds_path, in_flight, geometry=geometry, descriptors=descriptors)
        embedder = await asyncio.to_thread(_embedder, cfg)
        optimum = optimum and geometry == "world"
        shared = await baselines.seed_phase(cfg, load_seeds(cfg.seeds.path, cfg.seeds.limit), embedder, cfg.endpoint)
        assert shared.frozen is not None
        opt = await asyncio.to_thread(optimal_archive, srv.world, shared.frozen[0], cfg.archive) if optimum else None
    finally:
        srv.stop()
    seeds = baselines.seed_items(shared)
    info: dict[str, Any] = {"seeds_judged": len(seeds)}
    if opt is not None:
        info |= {"opt_qd_score": opt.qd_score, "opt_coverage": opt.coverage, "opt_cells": opt.cells}
    frames, pulls = [], {}
    for method in methods:
        srv = WorldServer(world).start()  # a fresh server: the same world, no counters from other methods
        try:
            mcfg = with_url(cfg, srv.base_url)
            embedder = await asyncio.to_thread(_embedder, mcfg)
            base = method
            if generation_size(method):
                base = "qdsearch"
                gen: dict[str, Any] = {"schedule": "generational", "generation_size": generation_size(method)}
                if (per := children_per_elite(method)) is not None:
                    gen["children_per_elite"] = per
                mcfg = qdsearch.load_config(mcfg, runtime=gen)
            if method == TUNED:
                base = "qdsearch"
                mcfg = qdsearch.load_config(mcfg, operators=tuned or {})
            rng = np.random.default_rng([world.seed, METHODS.index(base)])
            t = time.monotonic()
            items = await baselines.run_method(base, mcfg, shared, embedder, mcfg.endpoint, budget, rng)
            wall = time.monotonic() - t
            items = blended(items, shared.frozen[0])
            curve = await asyncio.to_thread(baselines.curve, mcfg, shared.frozen, embedder, seeds, items, checkpoints)
        finally:
            srv.stop()
        for k, v in truth_of(mcfg, shared.frozen, srv.world, seeds, items, budget).items():
            curve[k] = np.where(curve["calls"] == curve["calls"].max(), v, np.nan)
        curve.insert(0, "method", method)
        curve["wall_s"] = round(wall, 2)
        frames.append(curve)
        pulls[method] = Counter(it.sample.operator for it in items)
        last = curve.iloc[-1]
        print(f"  world {world.seed} {method}: {len(items)} children, qd={last['qd_score']:.1f} "
              f"cov={last['coverage']:.3f} ({wall:.1f}s)", file=sys.stderr, flush=True)  # fmt: skip
    return pd.concat(frames, ignore_index=True), info, pulls


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the two-sided t-interval); half-width nan for fewer than 2 values."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(np.mean(x)), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return float(np.mean(x)), half


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over repeats of QD-score and coverage, per method and checkpoint."""
    rows = []
    for (method, calls), g in df.groupby(["method", "calls"], sort=False):
        row: dict[str, Any] = {"method": method, "calls": calls, "n": len(g)}
        for key in ("qd_score", "coverage"):
            m, h = t_interval(g[key].to_numpy())
            row[f"{key}_mean"], row[f"{key}_ci"] = m, h
        rows.append(row)
    return pd.DataFrame(rows)


def paired(df: pd.DataFrame, a: str, b: str, calls: int, key: str = "qd_score") -> tuple[float, float, int]:
    """Mean of ``a - b`` over repeats at ``calls`` (paired by repeat), its 95% CI half-width, wins of ``a``."""
    p = df[df["calls"] == calls].pivot_table(index="repeat", columns="method", values=key)
    d = (p[a] - p[b]).to_numpy()
    m, h = t_interval(d)
    return m, h, int((d > 0).sum())


def plot(summary: pd.DataFrame, opt: dict[str, float] | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in ((axes[0], "qd_score", "QD-score"), (axes[1], "coverage", "coverage")):
        for method, g in summary.groupby("method", sort=False):
            x, y, h = g["calls"].to_numpy(), g[f"{key}_mean"].to_numpy(), np.nan_to_num(g[f"{key}_ci"].to_numpy())
            (line,) = ax.plot(x, y, label=str(method), lw=1.8, ls="--" if method == TUNED else "-")
            ax.fill_between(x, y - h, y + h, color=line.get_color(), alpha=0.18, lw=0)
        if opt is not None:
            ax.axhline(opt[key], color="black", ls=":", lw=1.2, label=f"optimum (mean {opt[key]:.3g})")
        ax.set_xlabel("LLM calls (counted)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


TRUTH = ("topic_cells", "true_cells", "true_topics", "true_qd", "gen_true_cells", "topic_ami")


def _fmt(m: float, h: float, digits: int) -> str:
    return f"{m:.{digits}f} ± {h:.{digits}f}"


def markdown(
    args: argparse.Namespace,
    cmd: str,
    df: pd.DataFrame,
    summary: pd.DataFrame,
    infos: list[dict[str, Any]],
    pulls: dict[str, Counter[str]],
    wall: float,
) -> str:
    shown = sorted({args.budget // 4, args.budget // 2, args.budget} & set(summary["calls"]))
    has_opt = "opt_qd_score" in infos[0]
    opt_q = t_interval(np.array([i["opt_qd_score"] for i in infos])) if has_opt else (np.nan, np.nan)
    opt_c = t_interval(np.array([i["opt_coverage"] for i in infos])) if has_opt else (np.nan, np.nan)
    lines = [
        "# QD-score and coverage against LLM calls in the synthetic world",
        "",
        f"- command: `{cmd}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {platform.machine()}, {_cores()} cores, "
        f"Python {platform.python_version()}; total wall time {wall:.0f} s",
        f"- engine: qdsearch {_engine_version()}",
        f"- worlds: `WorldConfig(seed=s{''.join(f', {k}={v!r}' for k, v in world_traps(args).items())})` with "
        f"defaults otherwise (deceptive poetry region on, judge noise sd {WorldConfig().judge_noise}, "
        f"{'the operators listed stall from the first request' if args.stall else 'no payoff switch'}, no "
        f"malformed replies), s = {args.first_seed} .. "
        f"{args.first_seed + args.repeats - 1} ({args.repeats} repeats); the run seed of every method is the world "
        "seed",
        f"- seeds: `{Path(args.seeds).relative_to(ROOT) if Path(args.seeds).is_relative_to(ROOT) else args.seeds}` "
        f"(foreign texts: the world gives each one two words of a non-deceptive topic, from a hash of its first "
        f"line); {infos[0]['seeds_judged']} judged in the shared seed phase (not counted)",
        f"- budget: {args.budget} counted LLM calls per method, checkpoints every {args.step}; MAP-Elites methods "
        "count every call of a child (operator + respond + judge), the archive-free ones their generation calls "
        "(operator + respond; their judging is evaluation)",
        (
            "- grid: complexity 5 bins x 2 topic dims x 4 bins = 80 cells (PCA), judged complexity alone, "
            if args.descriptors == "old"
            else "- grid: complexity 5 bins x 16 topic regions = 80 cells (the defaults), complexity blended 0.5 with the "
            "LLM-free measure (archive-free methods' children blended here too), "
        )
        + f"the shared frozen topic space of each repeat; in flight {args.in_flight}",
        f"- geometry: {args.geometry} ("
        + (
            "the world endpoint's embeddings, which follow the topic words by construction)"
            if args.geometry == "world"
            else "texts embedded with the real sentence-transformer all-MiniLM-L6-v2; no optimum: it needs the world's "
            "own geometry)"
        )
        + "",
        "- intervals: 95% t-intervals over repeats (n = number of repeats)",
    ]
    gens = [m for m in args.methods if generation_size(m)]
    if gens:
        lines.append(f"- `{GENERATIONAL}<n>`: qdsearch on the generational schedule (`runtime.schedule = "
                     f"\"generational\"`, `runtime.generation_size = n`, the default "
                     f"`runtime.children_per_elite = 1.5`), otherwise the same as `qdsearch` (steady state); "
                     f"`{GENERATIONAL}<n>{NOCAP}`: the same with `children_per_elite = 0` (every generation n "
                     f"children), `{GENERATIONAL}<n>{CPE}<x>` with `children_per_elite = x`")  # fmt: skip
    if TUNED in args.methods:
        lines.append(f"- `{TUNED}`: qdsearch with operators.discount = {args.tuned_discount}, operators.exploration "
                     f"= {args.tuned_exploration} (engine defaults: 0.97, 0.3)")  # fmt: skip
    lines += [
        "",
        (
            f"Optimum on the same grids (`truth.optimal_archive`, noise-free): QD-score {_fmt(*opt_q, 1)}, "
            f"coverage {_fmt(*opt_c, 3)}."
            if has_opt
            else "No optimum (real geometry)."
        ),
        "",
        "## Mean ± 95% CI",
        "",
    ]
    head = "| method | " + " | ".join(f"QD @ {c}" for c in shown) + " | " + " | ".join(f"cov @ {c}" for c in shown)
    lines += [head + " |", "|---|" + "---:|" * (2 * len(shown))]
    for method in args.methods:
        s = summary[summary["method"] == method].set_index("calls")
        cells = [_fmt(s.loc[c, "qd_score_mean"], s.loc[c, "qd_score_ci"], 1) for c in shown]
        cells += [_fmt(s.loc[c, "coverage_mean"], s.loc[c, "coverage_ci"], 3) for c in shown]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if has_opt:
        lines.append(f"| optimum | {' | '.join([_fmt(*opt_q, 1)] * len(shown))} | "
                     f"{' | '.join([_fmt(*opt_c, 3)] * len(shown))} |")  # fmt: skip
    truth = [k for k in TRUTH if k in df.columns]
    if truth:
        last = df[df["calls"] == args.budget]
        lines += ["", f"## World truth of the final archives @ {args.budget} (see `truth_of`)", "",
                  "| method | " + " | ".join(truth) + " |", "|---|" + "---:|" * len(truth)]  # fmt: skip
        for method in args.methods:
            g = last[last["method"] == method]
            lines.append(f"| {method} | " + " | ".join(
                _fmt(*t_interval(g[k].to_numpy()), 3 if k == "topic_ami" else 1) for k in truth) + " |")  # fmt: skip
    if "qdsearch" in args.methods:
        lines += ["", "## Paired differences, qdsearch minus each method (QD-score)", "",
                  "| other | " + " | ".join(f"@ {c}" for c in shown) + " |", "|---|" + "---:|" * len(shown)]  # fmt: skip
        for other in [m for m in args.methods if m != "qdsearch"]:
            cells = []
            for c in shown:
                m, h, wins = paired(df, "qdsearch", other, c)
                cells.append(f"{m:+.1f} ± {h:.1f} ({wins}/{args.repeats} wins)")
            lines.append(f"| {other} | " + " | ".join(cells) + " |")
    if gens and "qdsearch" in args.methods:
        lines += generational_section(df, gens, shown, args.repeats)
    ops = sorted({op for c in pulls.values() for op in c})
    me = [m for m in args.methods if m in ("qdsearch", "uniform", TUNED, "evol_instruct") or generation_size(m)]
    lines += ["", "## Operator mix (share of children within the budget, all repeats)", "",
              "| operator | " + " | ".join(me) + " |", "|---|" + "---:|" * len(me)]  # fmt: skip
    for op in ops:
        lines.append(
            f"| {op} | " + " | ".join(f"{pulls[m][op] / max(1, sum(pulls[m].values())):.3f}" for m in me) + " |"
        )
    return "\n".join(lines) + "\n"


def generational_section(df: pd.DataFrame, gens: Sequence[str], shown: Sequence[int], repeats: int) -> list[str]:
    """The generational methods against steady-state ``qdsearch``, paired by world: the QD-score
    ratio (mean over worlds of generational / steady, with its 95% CI), the paired difference, and
    the mean wall time of a method's run."""
    lines = ["", "## Generational schedule vs steady state (qdsearch), paired by world", "",
             "| method | " + " | ".join(f"QD ratio @ {c}" for c in shown) + " | "
             + " | ".join(f"QD diff @ {c}" for c in shown) + " | wall s per run |",
             "|---|" + "---:|" * (2 * len(shown) + 1)]  # fmt: skip
    walls = df.groupby("method")["wall_s"].mean()
    for m in gens:
        ratios, diffs = [], []
        for c in shown:
            p = df[df["calls"] == c].pivot_table(index="repeat", columns="method", values="qd_score")
            r, h = t_interval((p[m] / p["qdsearch"]).to_numpy())
            ratios.append(f"{r:.3f} ± {h:.3f}")
            d, hd, wins = paired(df, m, "qdsearch", c)
            diffs.append(f"{d:+.1f} ± {hd:.1f} ({wins}/{repeats} ahead)")
        lines.append(f"| {m} | " + " | ".join(ratios + diffs) + f" | {walls[m]:.1f} |")
    lines.append(f"| qdsearch (steady) | {' | '.join(['1'] * len(shown))} | {' | '.join(['0'] * len(shown))} | "
                 f"{walls['qdsearch']:.1f} |")  # fmt: skip
    return lines


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _engine_version() -> str:
    """Where the engine came from: this repository's working tree (HEAD, dirty or not), or an export with a
    ``COMMIT`` file beside its package (run with ``PYTHONPATH=<export>`` to pin the engine)."""
    import qdsearch

    src = Path(qdsearch.__file__).resolve().parent
    if src.is_relative_to(ROOT):

        def git(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=False)

        dirty = git("diff", "--quiet", "HEAD", "--", "qdsearch").returncode != 0
        head = git("rev-parse", "--short", "HEAD").stdout.strip()
        return f"working tree at commit {head}" + (" with uncommitted engine changes" if dirty else "")
    stamp = src.parent / "COMMIT"
    commit = stamp.read_text().strip() if stamp.is_file() else "unknown commit"
    return f"a clean export of commit {commit} (`{src}`)"


def world_traps(args: argparse.Namespace) -> dict[str, Any]:
    """WorldConfig fields for ``--stall`` (operators that only rephrase, from the first request)."""
    return {"switch_after": 1, "fade_operators": tuple(args.stall)} if args.stall else {}


async def main_async(args: argparse.Namespace) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Counter[str]]]:
    checkpoints = list(range(0, args.budget + 1, args.step))
    if checkpoints[-1] != args.budget:
        checkpoints.append(args.budget)
    tuned = {"discount": args.tuned_discount, "exploration": args.tuned_exploration}
    frames, infos = [], []
    pulls: dict[str, Counter[str]] = {m: Counter() for m in args.methods}
    for r in range(args.repeats):
        world = WorldConfig(seed=args.first_seed + r, **world_traps(args))
        print(f"repeat {r}: world seed {world.seed}", file=sys.stderr, flush=True)
        df, info, p = await run_repeat(world, args.methods, args.budget, checkpoints, args.seeds, args.in_flight, tuned,
                                       geometry=args.geometry, descriptors=args.descriptors)  # fmt: skip
        df.insert(0, "repeat", r)
        df.insert(1, "world_seed", world.seed)
        for k, v in info.items():
            df[k] = v
        frames.append(df)
        infos.append(info)
        for m, c in p.items():
            pulls[m].update(c)
    return pd.concat(frames, ignore_index=True), infos, pulls


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # measured calls and spend: no reply from the request cache
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10, help="worlds (seeds first_seed, first_seed + 1, ...)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=1200, help="counted LLM calls per method")
    p.add_argument("--step", type=int, default=50, help="calls between checkpoints")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {list(METHODS)}")
    p.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--generations", default="", help="comma list of generation sizes: adds generational_<n> "
                   "(qdsearch on the generational schedule) for each")  # fmt: skip
    p.add_argument("--tuned-discount", type=float, default=0.999)
    p.add_argument("--tuned-exploration", type=float, default=0.1)
    p.add_argument("--stall", default="", help="comma list of operators that stall (only rephrase) from the "
                   "first request (the world's payoff-switch trap at request 1); default: none")  # fmt: skip
    p.add_argument("--geometry", choices=GEOMETRIES, default="world", help="embeddings: the world endpoint's "
                   "(follow the topic words by construction) or the real sentence-transformer's (all-MiniLM-L6-v2, "
                   "the spread of real text; no optimum then)")  # fmt: skip
    p.add_argument("--descriptors", choices=DESCRIPTORS, default="old", help="old: the 5 x 4 x 4 PCA grid, judged "
                   "complexity alone; new: the engine defaults (16 topic regions x 5 bins, complexity blend 0.5)")  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "experiments/results"))
    p.add_argument("--name", default="world-curves", help="stem of the result files")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.stall = [m.strip() for m in args.stall.split(",") if m.strip()]
    args.methods += [f"{GENERATIONAL}{n.strip()}" for n in args.generations.split(",") if n.strip()]
    unknown = sorted(m for m in set(args.methods) - set(METHODS) if not generation_size(m))
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if args.repeats < 1 or args.budget < 1 or args.step < 1:
        p.error("--repeats, --budget and --step must be >= 1")
    args.seeds = str(Path(args.seeds).resolve())
    t0 = time.monotonic()
    df, infos, pulls = asyncio.run(main_async(args))
    wall = time.monotonic() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{args.name}.csv", index=False)
    summary = summarise(df)
    cmd = "python experiments/world_curves.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / f"{args.name}.md").write_text(markdown(args, cmd, df, summary, infos, pulls, wall))
    opt = ({"qd_score": float(np.mean([i["opt_qd_score"] for i in infos])),
            "coverage": float(np.mean([i["opt_coverage"] for i in infos]))}
           if "opt_qd_score" in infos[0] else None)  # fmt: skip
    title = (f"Synthetic world, {args.repeats} worlds (seeds {args.first_seed}..{args.first_seed + args.repeats - 1}),"
             f" mean and 95% CI; 80-cell grid ({args.descriptors} descriptors, {args.geometry} geometry)")  # fmt: skip
    plot(summary, opt, out / f"{args.name}.png", title)
    print(out / f"{args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
