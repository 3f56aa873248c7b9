"""Exports of a hand-built run folder: every format, selections, the card, overwrite safety, no secrets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qdsearch.archive import add_sample, archive_for
from qdsearch.config import ArchiveConfig, CampaignConfig, from_dict
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.events import candidate_event as _event
from qdsearch.export import FORMATS, MANIFEST, ExportError, export_records, export_run, file_name, load_elites
from qdsearch.store import RunStore, StoreError
from qdsearch.types import Candidate, Judgement, Sample
from tests.helpers import HashEmbedder

CANARY_ENV = "QDSEARCH_TEST_CANARY_KEY"
CANARY = "sk-canary-7f3a9c1e5b2d4f60a8e1"


def config(tmp_path: Path, **over: Any) -> CampaignConfig:
    d: dict[str, Any] = {
        "run": {"name": "exp", "out_dir": str(tmp_path / "archives")},
        "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "fake-model", "api_key_env": CANARY_ENV},
        "embedding": {"api_key_env": CANARY_ENV},
        "seeds": {"path": str(tmp_path / "my_seeds.jsonl")},
        "archive": {"kind": "grid", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 6, "topic_range": 2.5},
        "operators": {"names": ["deepen", "in_breadth"]},
        "export": {"license": "cc-by-4.0", "language": ["en"], "tags": ["tides"]},
    }
    if "topic" in {f.name for f in dataclasses.fields(ArchiveConfig)}:
        d["archive"]["topic"] = "pca"  # the fixture's measures are [complexity, topic 1, topic 2]
    for k, v in over.items():
        d[k] = d.get(k, {}) | v
    return from_dict(d)


def call(tag: str, pt: int = 100, ct: int = 50, cost: float = 0.001, outcome: str = "ok") -> dict[str, Any]:
    return {
        "tag": tag,
        "model": "fake-model",
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "latency_s": 0.1,
        "attempts": 1,
        "outcome": outcome,
        "finish_reason": "stop",
        "cost_usd": cost,
    }


# (kind, sample, quality, complexity, measures) for accepted ones; (kind, sample, reject) for rejected ones.
ACCEPTED: list[tuple[str, Sample, float, float, list[float]]] = [
    ("seed", Sample("s00000", "Explain tides.", "for kids", "The moon pulls the sea."), 6.0, 3.0, [3.0, 0.1, 0.1]),
    ("seed", Sample("s00001", "Write a haiku about rain.", "", "Drops on the tin roof."), 4.0, 8.0, [8.0, -1.5, 2.0]),
    (
        "child",
        Sample(
            "c000000",
            "Explain tides and the role of the sun.",
            "for kids",
            "Both pull; the moon more.",
            parent_id="s00000",
            operator="deepen",
            generation=1,
        ),
        8.0,
        3.2,
        [3.2, 0.15, 0.12],
    ),
    (
        "child",
        Sample(
            "c000001",
            "Write a tanka about snow in Kyoto.",
            "",
            "Silent temple roofs.",
            parent_id="s00001",
            operator="in_breadth",
            generation=1,
        ),
        7.0,
        5.0,
        [5.0, 1.0, -1.0],
    ),
    (
        "child",
        Sample(
            "c000003",
            "Write a tanka about snow.",
            "",
            "Snow.",
            parent_id="c000001",
            operator="deepen",
            generation=2,
        ),
        2.0,
        5.1,
        [5.1, 1.05, -1.0],
    ),
]
REJECTED: list[tuple[str, Sample, str]] = [
    ("seed", Sample("s00002", "Say hi.", "", "Hi"), "truncated"),
    ("child", Sample("c000002", "Explain tides.", "for kids", "", "s00000", "deepen", 1), "no_information_gain"),
]
# After replay: c000000 replaced s00000 in its cell, c000003 lost to c000001.
ELITES = {"c000000", "s00001", "c000001"}
# The same cells, as (tone, form) label indices in a categorical domain.
CATEGORICAL = {"s00000": (0, 0), "s00001": (1, 1), "c000000": (0, 0), "c000001": (2, 1), "c000003": (2, 1)}


AXES = {"tone": ["plain", "playful", "formal"], "form": ["prose", "verse"]}


def build_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, projection: bool = True, categorical: bool = False
) -> Path:
    """The run folder of ACCEPTED/REJECTED; ``categorical``: a custom domain whose
    measures are label indices (the last two measures, + 0.5)."""
    monkeypatch.setenv(CANARY_ENV, CANARY)
    over = {"domain": {"kind": "custom", "descriptors": "categorical", "axes": AXES}} if categorical else {}
    cfg = config(tmp_path, **over)
    scratch = archive_for(cfg)
    with RunStore.create(cfg) as store:
        if projection:
            emb = np.random.default_rng(0).normal(size=(6, 8))
            store.save_projection(TopicProjection.fit(emb, 2, cfg.archive.topic_range))
        accepted = iter(ACCEPTED)
        rejected = iter(REJECTED)
        for which in "AARAARA":  # the log's order: accepted and rejected, seeds then children
            if which == "A":
                kind, s, q, cx, m = next(accepted)
                if categorical:
                    m = [CATEGORICAL[s.id][0] + 0.5, CATEGORICAL[s.id][1] + 0.5]
                cand = Candidate(s, Judgement(q, cx, "fine"), calls=(call("respond"), call("judge")))
                status, cell, gain = add_sample(scratch, s, q, np.array(m), cx)
                store.append(_event(kind, cand, m, status, cell, gain, "ucb"))
            else:
                kind, s, reason = next(rejected)
                cand = Candidate(s, reject=reason, detail="d", calls=(call("judge", outcome="timeout"),))
                store.append(_event(kind, cand, None, "", -1))
        store.append({"type": "session", "wall_s": 2.5})
        return store.path


def load(path: Path, fmt: str) -> list[dict[str, Any]]:
    """An export read back without ``datasets`` (test_export_hf reads them with it)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    if fmt == "arrow":
        import pyarrow as pa

        tables = [pa.ipc.open_stream(f.read_bytes()).read_all() for f in sorted(path.glob("*.arrow"))]
        return [r for t in tables for r in t.to_pylist()]
    if fmt == "alpaca":
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, list)
        return data
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


BY_ID = {s.id: (s, q, cx, m) for _, s, q, cx, m in ACCEPTED}
META = ["id", "quality", "complexity", "measures", "cell", "operator", "parent_id", "generation"]
TEXT = {
    "sharegpt": ["conversations"],
    "messages": ["messages"],
    **{f: ["instruction", "input", "output"] for f in ("jsonl", "alpaca", "parquet", "arrow")},
}
NAMES = {
    "jsonl": "elites.jsonl",
    "sharegpt": "elites.sharegpt.jsonl",
    "messages": "elites.messages.jsonl",
    "alpaca": "elites.alpaca.json",
    "parquet": "elites.parquet",
    "arrow": "elites.arrow",
}


def columns(fmt: str, labels: bool = False) -> list[str]:
    text = TEXT[fmt]
    body = ["id", *text, *META[1:]] if text[0] == "instruction" else [*text, *META]
    return [*body, *(["labels"] if labels else []), "elite"]


def check_record(r: dict[str, Any], fmt: str) -> None:
    s, q, cx, _ = BY_ID[r["id"]]
    assert r["quality"] == q and r["complexity"] == cx
    assert (r["operator"], r["parent_id"], int(r["generation"])) == (s.operator, s.parent_id, s.generation)
    assert isinstance(r["cell"], int) and r["cell"] >= 0 and isinstance(r["elite"], bool)
    if fmt == "sharegpt":
        assert r["conversations"] == [{"from": "human", "value": s.prompt_text()}, {"from": "gpt", "value": s.response}]
    elif fmt == "messages":
        assert r["messages"] == [
            {"role": "user", "content": s.prompt_text()},
            {"role": "assistant", "content": s.response},
        ]
    else:
        assert (r["instruction"], r["input"], r["output"]) == (s.instruction, s.input, s.response)


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert isinstance(meta, dict)
    return meta


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_every_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt)
    assert path == run / "export" / NAMES[fmt] == run / "export" / file_name(fmt)
    recs = load(path, fmt)
    assert len(recs) == len(ELITES) and {r["id"] for r in recs} == ELITES
    assert all(list(r) == columns(fmt) for r in recs), list(recs[0])
    for r in recs:
        check_record(r, fmt)
        assert r["elite"] is True
        assert [float(x) for x in r["measures"]] == BY_ID[r["id"]][3]
    assert [r["cell"] for r in recs] == sorted(r["cell"] for r in recs)
    assert len({r["cell"] for r in recs}) == len(recs)
    card = (run / "export" / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["en"]
    assert meta["size_categories"] == ["n<1K"] and "text-generation" in meta["task_categories"]
    assert {"synthetic", "qdsearch", "map-elites", "tides"} <= set(meta["tags"])
    if fmt == "parquet":
        assert meta["configs"] == [
            {"config_name": "elites-parquet", "data_files": [{"split": "train", "path": NAMES[fmt]}], "default": True}
        ]
    elif fmt == "arrow":
        assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "elites.arrow/*.arrow"}]
    else:
        assert meta["configs"][0]["data_files"] == [{"split": "train", "path": NAMES[fmt]}]
    assert f"| `{NAMES[fmt]}` | {fmt} | 3 | elites |  |" in card
    assert "seed set: `my_seeds.jsonl`, 3 seeds (2 judged)" in card
    assert "children evaluated: 4, judged: 3" in card
    assert "operators: deepen, in_breadth (selection: fixed)" in card
    assert "- judge: `fake-model` (7 calls)" in card and "- response: `fake-model` (5 calls)" in card
    assert "12 LLM calls, 1800 tokens" in card and "`cc-by-4.0`" in card
    assert "for each archive cell, the accepted sample of highest quality" in card
    assert "![archive heatmap: best quality per cell](archive_heatmap_c_t1.png)" in card
    assert (run / "export" / "archive_heatmap_c_t1.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in path.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_every_format_in_one_folder_has_the_same_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch, categorical=True)
    meta_of: dict[str, list[dict[str, Any]]] = {}
    for fmt in FORMATS:
        recs = load(export_run(run, fmt), fmt)
        assert all(list(r) == columns(fmt, labels=True) for r in recs), (fmt, list(recs[0]))
        meta_of[fmt] = sorted(({k: v for k, v in r.items() if k not in TEXT[fmt]} for r in recs), key=lambda r: r["id"])
    first = meta_of["jsonl"]
    for fmt, metas in meta_of.items():
        assert metas == first, fmt
    labels = {r["id"]: r["labels"] for r in first}
    assert labels == {
        "c000000": {"tone": "plain", "form": "prose"},
        "s00001": {"tone": "playful", "form": "verse"},
        "c000001": {"tone": "formal", "form": "verse"},
    }
    card = (run / "export" / "README.md").read_text()
    configs = front_matter(card)["configs"]
    # one config per JSON-family file (datasets reads a repo's configs with one builder), jsonl first
    assert [c["config_name"] for c in configs] == ["elites", "elites-sharegpt", "elites-messages", "elites-alpaca"]
    assert configs[0]["default"] is True and all("default" not in c for c in configs[1:])
    assert 'load_dataset("parquet", data_files="elites.parquet"' in card and 'load_from_disk("elites.arrow")' in card
    assert "labels (axis -> label)" in card
    assert json.loads((run / "export" / MANIFEST).read_text())["files"].keys() == set(NAMES.values())


def test_lineage_resolves_every_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    for fmt in FORMATS:
        path = export_run(run, fmt, selection="lineage")
        assert path.name == file_name(fmt, "lineage") and path.name.startswith("elites-lineage.")
        recs = load(path, fmt)
        ids = [r["id"] for r in recs]
        assert ids[:3] == [r["id"] for r in load(export_run(run, fmt), fmt)]  # the elites first, by cell
        assert ids[3:] == ["s00000"]  # then the ancestors, in log order
        assert {r["id"]: r["elite"] for r in recs} == {
            "c000000": True,
            "s00001": True,
            "c000001": True,
            "s00000": False,
        }
        assert all(r["parent_id"] in set(ids) for r in recs if r["parent_id"])
        for r in recs:
            check_record(r, fmt)
    card = (run / "export" / "README.md").read_text()
    assert "so every parent_id names a record of the file" in card


def test_lineage_keeps_ancestors_below_the_quality_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    recs, _, _ = export_records(RunStore.open(run, write=False), "lineage", min_quality=7.0)
    assert [(r["id"], r["elite"]) for r in recs] == [
        ("c000000", True),
        ("c000001", True),
        ("s00000", False),
        ("s00001", True),  # an elite below the floor, here as an ancestor
    ]


def test_all_exports_every_accepted_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, "jsonl", selection="all")
    assert path.name == "accepted.jsonl"
    recs = load(path, "jsonl")
    assert [r["id"] for r in recs] == ["s00000", "s00001", "c000000", "c000001", "c000003"]  # rejected ones are not
    assert {r["id"] for r in recs if r["elite"]} == ELITES
    for r in recs:
        check_record(r, "jsonl")
    recs = load(export_run(run, "parquet", selection="all", min_quality=5.0), "parquet")
    assert [r["id"] for r in recs] == ["s00000", "c000000", "c000001"]


def test_another_formats_file_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    jsonl = export_run(run, "jsonl")
    before = jsonl.read_bytes()
    with pytest.raises(ExportError, match=r"elites\.jsonl: holds the jsonl export; a sharegpt export would replace it"):
        export_run(run, "sharegpt", out=jsonl)
    assert jsonl.read_bytes() == before
    assert export_run(run, "sharegpt") == run / "export" / "elites.sharegpt.jsonl"  # its own name
    assert jsonl.read_bytes() == before
    assert export_run(run, "jsonl", min_quality=7.0) == jsonl  # the same format replaces its own file
    assert len(load(jsonl, "jsonl")) == 2
    # a file that no export wrote
    mine = tmp_path / "mine" / "data.jsonl"
    mine.parent.mkdir()
    mine.write_text("precious\n")
    with pytest.raises(ExportError, match=r"data\.jsonl: exists and was not written by qdsearch export"):
        export_run(run, "jsonl", out=mine)
    assert mine.read_text() == "precious\n" and not (mine.parent / "README.md").exists()
    assert export_run(run, "jsonl", out=mine, overwrite=True) == mine
    assert len(load(mine, "jsonl")) == 3
    # a README.md that no export wrote
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("my notes\n")
    with pytest.raises(ExportError, match=r"README\.md: exists and was not written by qdsearch export"):
        export_run(run, "parquet", out=other / "e.parquet")
    assert (other / "README.md").read_text() == "my notes\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_min_quality_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt, out=tmp_path / "out" / f"hq.{fmt}", min_quality=7.0)
    assert path == tmp_path / "out" / f"hq.{fmt}"
    recs = load(path, fmt)
    assert {r["id"] for r in recs} == {"c000000", "c000001"}  # 8.0 and exactly 7.0 stay, 4.0 goes
    for r in recs:
        check_record(r, fmt)
    card = (path.parent / "README.md").read_text()
    assert f"| `hq.{fmt}` | {fmt} | 2 | elites | >= 7.0 |" in card


@pytest.mark.parametrize("fmt", FORMATS)
def test_min_quality_above_everything_gives_an_empty_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Any
) -> None:
    run = build_run(tmp_path, monkeypatch)
    path = export_run(run, fmt, min_quality=9.5)
    assert load(path, fmt) == []
    if fmt in ("parquet", "arrow"):  # the columns are still there
        import pyarrow.parquet as pq

        if fmt == "parquet":
            assert pq.read_schema(path).names == columns(fmt)
    assert f"| `{NAMES[fmt]}` | {fmt} | 0 | elites |" in (run / "export" / "README.md").read_text()


def test_card_qdc_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    export_run(run, "messages", embedder=HashEmbedder())
    card = (run / "export" / "README.md").read_text()
    assert "Measured on `elites.messages.jsonl` and the judged seeds" in card
    assert "| metric | export | seeds |" in card
    assert "| records | 3 | 2 |" in card
    assert "| quality: mean | 6.333 | 5.000 |" in card  # (8 + 4 + 7) / 3; seeds (6 + 4) / 2
    assert "| diversity: Vendi score |" in card
    export_run(run, "jsonl")  # a later export without an embedder keeps the table
    assert "| records | 3 | 2 |" in (run / "export" / "README.md").read_text()


def test_export_license_is_validated() -> None:
    from qdsearch.config import ConfigError

    with pytest.raises(ConfigError, match=r"^export\.license: expected a Hugging Face license id .* got 'MIT License'"):
        from_dict({"export": {"license": "MIT License"}})
    with pytest.raises(ConfigError, match=r"^export\.language\[0\]: expected an ISO 639 code"):
        from_dict({"export": {"language": ["English"]}})
    with pytest.raises(ConfigError, match=r"^export\.nope: unknown key"):
        from_dict({"export": {"nope": 1}})
    assert from_dict({}).export.license == "unknown"


def test_load_elites_replays_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    df, info = load_elites(RunStore.open(run, write=False))
    assert set(df["id"]) == ELITES
    assert info["elites"] == 3 and info["cells"] == 5 * 6 * 6
    assert info["qd_score"] == pytest.approx(8.0 + 4.0 + 7.0)
    assert (info["seeds"], info["seeds_accepted"], info["children"], info["accepted"]) == (3, 2, 4, 3)
    assert info["rejects"] == {"no_information_gain": 1} and info["seed_rejects"] == {"truncated": 1}
    assert info["wall_s"] == 2.5 and info["failed_calls"] == 2


def test_export_while_the_campaign_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with RunStore.open(run):  # a running campaign does not block an export
        assert len(load(export_run(run, "jsonl"), "jsonl")) == 3


def test_unknown_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match=r"--format must be one of .*'csv'"):
        export_run(run, "csv")  # type: ignore[arg-type]
    assert not (run / "export").exists()


def test_export_without_projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch, projection=False)
    with pytest.raises(StoreError, match="has no archive yet") as ei:
        export_run(run, "jsonl")
    assert str(run) in str(ei.value)


def test_export_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a qdsearch run folder"):
        export_run(tmp_path, "jsonl")


def test_no_secret_in_any_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = build_run(tmp_path, monkeypatch)
    with RunStore.open(run) as store:
        store.snapshot(load_elites(store)[0], {"children": 4})
        store.append_stats({"children": 4, "qd_score": 19.0})
    for fmt in FORMATS:
        export_run(run, fmt)
        export_run(run, fmt, out=tmp_path / "elsewhere" / f"e.{fmt}", min_quality=5.0, selection="lineage")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 2 * (len(FORMATS) + 3) + 5
    assert CANARY_ENV in (run / "config.toml").read_text()  # the variable's name is fine
    for p in files:
        assert CANARY.encode() not in p.read_bytes(), p
