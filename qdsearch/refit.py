"""A new run folder whose descriptor space is fitted to what a run found (the work of
``qdsearch refit RUN``, whose command is :mod:`qdsearch.cli.refit`).

A run's descriptor space is frozen (resume, export and reports depend on it), so
re-fitting is an explicit step that makes a *new* run: its topic space is fitted
on every accepted sample of the old run (plus the reference texts its config
asks for), and those samples become the new run's seeds, placed in the new space
with their old verdicts, without any model call. Ids are given anew (``s00000``,
...; lineage is kept through the new ids, and ``origin`` names the old run and
id). ``qdsearch resume NEW`` then goes on searching in the new space.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RefitError", "refit_run"]


class RefitError(ValueError):
    """The run cannot be refitted (a message naming what and where)."""


def refit_run(run_dir: str | Path, name: str, embedder: Any = None) -> Path:
    """Makes the refitted run folder; returns its path.

    Args:
        run_dir: the old run folder (read only).
        name: the new run's name (a folder beside the old one).
        embedder: replaces the config's embedder (tests).

    Raises:
        RefitError: the old run has no accepted samples, uses categorical cells, or
            the new folder exists.
    """
    from qdsearch.archive import add_sample, archive_for, elites_frame
    from qdsearch.describe import fit_space
    from qdsearch.descriptors.complexity import blend_complexity
    from qdsearch.descriptors.embedding import make_embedder
    from qdsearch.events import Counters, sample_of
    from qdsearch.store import RunStore, StoreError

    try:
        old = RunStore.open(run_dir, write=False)
        frozen = old.load_projection()
    except StoreError as e:
        raise RefitError(str(e)) from None
    cfg = old.cfg
    if cfg.domain.categorical:
        raise RefitError(f"{old.path}: domain.kind = {cfg.domain.kind!r} has categorical cells: nothing to refit")
    samples = [ev for ev in old.events() if ev.get("type") in ("seed", "child") and ev.get("status") == "accepted"]
    if not samples:
        raise RefitError(f"{old.path}: no accepted sample to fit a new descriptor space on")
    blend = float(getattr(frozen[0], "complexity_blend", -1.0)) if frozen else -1.0
    blend = blend if blend >= 0 else cfg.judge.complexity_blend
    new_cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=name, out_dir=str(old.path.parent)))
    if (old.path.parent / name).exists():
        raise RefitError(f"{old.path.parent / name}: exists already; choose another --name")
    embedder = embedder or make_embedder(cfg.embedding)
    reference: list[str] = []
    if cfg.archive.reference_path:
        from qdsearch.seeds import load_seeds

        reference = [s.prompt_text() for s in load_seeds(cfg.archive.reference_path)]
    texts = [sample_of(ev).prompt_text() for ev in samples]
    space = fit_space(new_cfg, texts, reference, embedder)
    space = dataclasses.replace(space, complexity_blend=blend)
    vecs = embedder.embed(texts)
    coords = space.transform(vecs)
    ids = {ev["id"]: f"s{i:05d}" for i, ev in enumerate(samples)}
    store = RunStore.create(new_cfg)
    try:
        centroids = None
        if new_cfg.archive.kind == "cvt":
            from qdsearch.archive import make_centroids

            centroids = make_centroids(new_cfg.archive, new_cfg.run.seed)
        store.save_projection(space, centroids)
        archive = archive_for(new_cfg, centroids)
        counters = Counters()
        for ev, c in zip(samples, coords, strict=True):
            s = dataclasses.replace(sample_of(ev), id=ids[ev["id"]], parent_id=ids.get(ev.get("parent_id") or "", ""))
            judged = ev.get("judged_complexity")
            judged = float(judged if judged is not None else ev["complexity"])
            cx = blend_complexity(judged, s, blend)
            measures = np.concatenate([[cx], c])
            status, cell, gain = add_sample(archive, s, float(ev["quality"]), measures, cx)
            new = dict(ev) | {
                "type": "seed",
                "id": s.id,
                "parent_id": s.parent_id,
                "complexity": cx,
                "judged_complexity": judged,
                "measures": [float(x) for x in measures],
                "add_status": status,
                "cell": cell,
                "gain": gain,
                "selection": "",
                "tokens": 0,
                "cost_usd": 0.0,
                "calls": [],
                "origin": f"{old.path.name}/{ev['id']}",
                "time": time.time(),
            }
            store.append(new)
            counters.update(new)
        counters.close_session()
        state = counters.to_dict() | {"stop_reason": "refit", "refit_from": str(old.path)}
        store.snapshot(elites_frame(archive), state)
    finally:
        store.close()
    return store.path
