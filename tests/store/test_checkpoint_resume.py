"""Resume from a checkpoint (issue 22, item 4): the checkpoints the run store writes
during a campaign, continued over the log's tail, give a campaign whose every part
that resume derives from the log (counters and their running state, archive and its
statistics, elites and measures in order, the operator selector's statistics, the
generational schedule's state, the generator) is the one a full replay gives; a
checkpoint that does not fit (unreadable, stale, another selector, an older format,
inside an unfinished generation) is replaced by a streamed full fold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch import checkpoint
from qdsearch.archive import elites_frame
from qdsearch.campaign import Campaign
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from tests.fakes.world import world
from tests.helpers import config_dict, drive

CP = checkpoint.CHECKPOINT


class _Sink:
    def append(self, event: dict[str, Any]) -> None: ...


def _run(cfg: CampaignConfig) -> tuple[Path, list[bytes]]:
    """Runs ``cfg`` to its end; the run folder and the checkpoint after each snapshot."""
    store = RunStore.create(cfg)
    taken: list[bytes] = []
    snapshot = store.snapshot

    def keep(elites: Any, state: dict[str, Any]) -> None:
        snapshot(elites, state)
        if (store.path / CP).is_file():
            taken.append((store.path / CP).read_bytes())

    store.snapshot = keep  # type: ignore[method-assign]
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)
    drive(campaign, runtime)
    store.close()
    return store.path, taken


@pytest.fixture(scope="module")
def fake() -> Any:
    from tests.fakes.openai_server import FakeOpenAI

    f = FakeOpenAI(world).start()
    yield f
    f.stop()


def _cfg(fake: Any, tmp: Path, **runtime: Any) -> CampaignConfig:
    over = {
        "budget": {"max_children": 48},
        "operators": {"selection": "ucb"},
        "runtime": {"snapshot_every": 8, "snapshot_min_s": 0, **runtime},
    }
    return from_dict(config_dict(fake.base_url, tmp, **over))


@pytest.fixture(scope="module")
def steady(fake: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    return _run(_cfg(fake, tmp_path_factory.mktemp("steady")))


@pytest.fixture(scope="module")
def generational(fake: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    cfg = _cfg(fake, tmp_path_factory.mktemp("gen"), schedule="generational", generation_size=8)
    return _run(cfg)


def _copy(run: Path, tmp: Path, name: str = "run") -> Path:
    out = tmp / name
    shutil.copytree(run, out, ignore=shutil.ignore_patterns(".lock", CP))
    return out


def _campaign(run: Path, events: Any) -> Campaign:
    store = RunStore.open(run, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    return Campaign(store.cfg, [], None, None, _Sink(), events=events, frozen=frozen)  # type: ignore[arg-type]


def _full(run: Path) -> Campaign:
    """The campaign a resume that replays the whole log (as before checkpoints) makes."""
    return _campaign(run, list(RunStore.open(run, write=False).events()))


def _resumed(run: Path) -> tuple[Campaign, checkpoint.ResumeLog, checkpoint.LogFold]:
    store = RunStore.open(run, write=False)
    log, fold = checkpoint.load(run, store.cfg, store.load_projection())
    return _campaign(run, log), log, fold


def _parts(c: Campaign) -> dict[str, Any]:
    """Everything a resumed campaign derived from its log."""
    st, counters = c.state, c.counters
    assert st.archive is not None
    stats = st.archive.stats
    sel = st.selector
    return {
        "counters": counters.to_dict(),
        "counters running state": (
            counters._open,
            counters._open_from,
            list(counters.recent),
            list(counters.seed_calls),
        ),
        "archive elites": elites_frame(st.archive).to_dict(orient="list"),
        "archive stats": (
            stats.num_elites,
            *map(float, (stats.coverage, stats.qd_score, stats.obj_max, stats.obj_mean)),
        ),
        "elites in order": list(st.elites.items()),
        "measures in order": [(cell, m.tolist()) for cell, m in st.measures.items()],
        "selector": (type(sel).__name__, *(getattr(sel, k).tolist() for k in ("n", "s", "pending"))),
        "generations": c._generations,
        "generator": c.rng.bit_generator.state,
        "novelty": sorted(st.novelty.vecs),
        "in flight": (dict(st.selection), dict(st.parent_text)),
    }


def _same(a: Campaign, b: Campaign) -> None:
    pa, pb = _parts(a), _parts(b)
    for key in pa:
        assert pa[key] == pb[key], key


def _fold_at_end(run: Path) -> dict[str, Any]:
    """The fold of the whole log, from the start (no checkpoint)."""
    store = RunStore.open(run, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    from qdsearch.archive import archive_for

    fold, mismatches, _ = checkpoint.fold_log(
        run, archive_for(store.cfg, frozen[1]), selector=checkpoint.selector_for(store.cfg), use_checkpoint=False
    )
    assert mismatches == []
    return fold.state()


def test_the_run_store_writes_checkpoints_as_the_campaign_runs(steady: tuple[Path, list[bytes]]) -> None:
    run, taken = steady
    offsets = [json.loads(b)["offset"] for b in taken]
    assert len(taken) >= 4 and offsets == sorted(offsets)
    # the last one, at the closing snapshot, covers the whole log and is its fold
    last = json.loads(taken[-1])
    assert last["offset"] == (run / "events.jsonl").stat().st_size
    assert last["fold"] == json.loads(json.dumps(_fold_at_end(run)))
    assert last["fold"]["selector"]["kind"] == "DiscountedUCB" and sum(last["fold"]["selector"]["n"]) > 0


def test_every_live_checkpoint_resumes_as_a_full_replay(steady: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    run, taken = steady
    full = _full(run)
    lines = (run / "events.jsonl").read_bytes().count(b"\n")
    for data in taken:
        copy = _copy(run, tmp_path)
        (copy / CP).write_bytes(data)
        resumed, log, fold = _resumed(copy)
        assert log.checkpoint is not None and log.checkpoint.offset == json.loads(data)["offset"]
        assert log.count == lines and log.checkpoint.events + len(log.tail) == lines
        _same(resumed, full)
        assert fold.state() == _fold_at_end(copy)  # what the store goes on from
        shutil.rmtree(copy)


def test_a_crashed_log_resumes_from_its_checkpoint_as_a_full_replay(
    steady: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, taken = steady
    data = (run / "events.jsonl").read_bytes()
    offsets = [json.loads(b)["offset"] for b in taken]
    # killed mid-run: a cut between two checkpoints, no session event, a torn last line
    cut = data.index(b"\n", (offsets[1] + offsets[2]) // 2) + 1
    copy = _copy(run, tmp_path)
    torn = data[cut : data.index(b"\n", cut)][:30]
    (copy / "events.jsonl").write_bytes(data[:cut] + torn)
    RunStore.open(copy, write=False).repair()
    assert (copy / "events.jsonl").read_bytes() == data[:cut]
    full = _full(copy)
    assert full.counters.lost >= 0 and full.counters.submitted >= full.counters.children
    for k in (0, 1):
        (copy / CP).write_bytes(taken[k])
        resumed, log, _ = _resumed(copy)
        assert log.checkpoint is not None and log.checkpoint.offset == offsets[k]
        _same(resumed, full)


def test_generational_checkpoints_only_where_a_generation_is_complete(
    generational: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, taken = generational
    assert taken
    for data in taken:
        assert not checkpoint.Checkpoint(0, "", json.loads(data)["fold"], []).generation_open
    # where a snapshot fell inside a generation, one is written where the next begins
    log = (run / "events.jsonl").read_bytes()
    starts = {i + 1 for i in range(len(log)) if log[i : i + 1] == b"\n"}
    begins = {o for o in starts if log[o : o + 22] == b'{"type": "generation",'}
    assert {json.loads(b)["offset"] for b in taken} & begins
    full = _full(run)
    for data in taken:
        copy = _copy(run, tmp_path)
        (copy / CP).write_bytes(data)
        resumed, log, _ = _resumed(copy)
        assert log.checkpoint is not None
        _same(resumed, full)
        shutil.rmtree(copy)


def test_an_unfinished_generation_is_drawn_again_the_same_from_a_checkpoint(
    generational: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, taken = generational
    data = (run / "events.jsonl").read_bytes()
    lines = data.split(b"\n")
    gens = [i for i, line in enumerate(lines) if b'"type": "generation"' in line]
    # a crash three children into the last generation but one
    i = gens[-2]
    children = [j for j in range(i, len(lines)) if b'"type": "child"' in lines[j]]
    cut_line = children[2]
    copy = _copy(run, tmp_path)
    cut = len(b"\n".join(lines[: cut_line + 1])) + 1
    (copy / "events.jsonl").write_bytes(data[:cut])
    full = _full(copy)
    assert full._generations[1] is not None and full._generations[1].jobs  # unfinished: drawn again
    usable = [b for b in taken if json.loads(b)["offset"] <= cut]
    assert usable
    for b in usable:
        (copy / CP).write_bytes(b)
        resumed, log, _ = _resumed(copy)
        assert log.checkpoint is not None and log.checkpoint.offset == json.loads(b)["offset"]
        _same(resumed, full)


def test_a_checkpoint_that_does_not_fit_is_replaced_by_a_full_fold(
    steady: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, taken = steady
    full = _full(run)
    mid = json.loads(taken[len(taken) // 2])
    size = (run / "events.jsonl").stat().st_size

    def check(copy: Path) -> None:
        resumed, log, _ = _resumed(copy)
        _same(resumed, full)
        # a new checkpoint was written at the end of the log, and fits it
        assert log.checkpoint is not None and log.checkpoint.offset == size and log.tail == []
        again = checkpoint.read(copy)
        assert again is not None and again.offset == size

    for name, data in {
        "unreadable": b"{not json",
        "older format": json.dumps({**mid, "format": 1}).encode(),
        "stale hash": json.dumps({**mid, "last_line_sha256": "0" * 64}).encode(),
        "past the log": json.dumps({**mid, "offset": size + 10}).encode(),
        "another selector": json.dumps({**mid, "fold": {**mid["fold"], "selector": {"kind": "FixedWeights"}}}).encode(),
        "missing fields": json.dumps({"format": 2, "offset": mid["offset"]}).encode(),
    }.items():
        copy = _copy(run, tmp_path, name.replace(" ", "_"))
        (copy / CP).write_bytes(data)
        assert checkpoint.read(copy) is None or name == "another selector", name
        check(copy)
    copy = _copy(run, tmp_path, "none")
    check(copy)


def test_a_checkpoint_inside_an_unfinished_generation_is_not_used(
    generational: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    run, _ = generational
    data = (run / "events.jsonl").read_bytes()
    lines = data.split(b"\n")
    gens = [i for i, line in enumerate(lines) if b'"type": "generation"' in line]
    children = [j for j in range(gens[-2], len(lines)) if b'"type": "child"' in lines[j]]
    copy = _copy(run, tmp_path)
    inside = len(b"\n".join(lines[: children[1] + 1])) + 1  # two children into that generation
    (copy / "events.jsonl").write_bytes(data[:inside])
    store = RunStore.open(copy, write=False)
    frozen = store.load_projection()
    assert frozen is not None
    from qdsearch.archive import archive_for

    archive = archive_for(store.cfg, frozen[1])
    fold, _, offset = checkpoint.fold_log(copy, archive, selector=checkpoint.selector_for(store.cfg))
    assert fold.generation_open
    checkpoint.write(copy, fold, archive, offset)
    (copy / "events.jsonl").write_bytes(data)
    full = _full(copy)
    resumed, log, _ = _resumed(copy)
    # not used: the log was folded to its last generation's start instead
    assert log.checkpoint is not None and log.checkpoint.offset != offset
    assert log.tail and log.tail[0]["type"] == "generation"
    _same(resumed, full)


def test_the_store_checkpoints_no_fold_past_a_failed_append(tmp_path: Path) -> None:
    from tests.helpers import store_cfg

    store = RunStore.create(store_cfg(tmp_path))
    store.append({"type": "warning", "reason": "x", "detail": "", "time": 0.0})
    assert store._fold is not None and store._fold.events == 1
    with pytest.raises(ValueError):
        store.append({"type": "warning", "x": float("nan")})
    assert store._fold is None  # no checkpoint is written after it
    store.close()


def test_repair_cuts_only_a_torn_last_record(tmp_path: Path) -> None:
    from tests.helpers import store_cfg

    store = RunStore.create(store_cfg(tmp_path))
    log = store.path / "events.jsonl"
    good = b"".join(json.dumps({"type": "warning", "n": i}).encode() + b"\n" for i in range(3))
    for damaged, expect in [
        (good, good),
        (good + b'{"type": "chi', good),  # a fragment without its newline
        (good + b'{"type": "chi\n', good),  # a last line that does not parse
        (good + b"\n\n", good + b"\n\n"),  # blank lines are no record
        (b'{"type": "x"', b""),
        (b"x" * 70000 + b"\n", b""),  # one long unparsable line
        (good + b"y" * 70000, good),
    ]:
        log.write_bytes(damaged)
        store.repair()
        assert log.read_bytes() == expect, damaged[-30:]
    store.close()


def test_a_log_with_a_checkpoint_is_read_as_the_whole_log(steady: tuple[Path, list[bytes]]) -> None:
    run, _ = steady
    log = checkpoint.ResumeLog.of(list(RunStore.open(run, write=False).events()))
    assert log.checkpoint is None and log.count == len(log.tail)
    seeds, children = log.samples()
    counters = _full(run).counters
    assert (seeds, children) == (counters.seeds, counters.children) and log.any("seed_report")
    assert np.isfinite(children)


def test_a_batcher_resumed_from_a_checkpoint_knows_the_jobs_a_full_log_gives(tmp_path: Path) -> None:
    from qdsearch.llm.batching import Journal
    from tests.helpers import store_cfg

    store = RunStore.create(store_cfg(tmp_path))
    events: list[dict[str, Any]] = [
        {"type": "batch", "id": "b1", "endpoint": "e", "lines": 2, "custom_ids": ["a", "b"], "time": 0.0},
        {"type": "generation", "index": 0, "first_child": 0, "size": 2},
        {"type": "batch", "id": "b2", "endpoint": "e", "lines": 1, "custom_ids": ["c"], "time": 0.0},
        {"type": "batch_done", "id": "b2", "time": 0.0},
        {"type": "batch", "id": "b3", "endpoint": "e", "lines": 1, "custom_ids": ["d"], "time": 0.0},
    ]
    for cut in range(len(events) + 1):
        fold = checkpoint.LogFold(None)
        for ev in events[:cut]:
            fold.update(ev)
        cp = checkpoint.Checkpoint(0, "", json.loads(json.dumps(fold.state())), [])
        log = checkpoint.ResumeLog(cp, events[cut:])
        assert Journal(lambda ev: None, log.journal_events()).known == Journal(lambda ev: None, events).known
    store.close()
