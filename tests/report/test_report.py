"""The campaign report built from a real (fake-endpoint) run: its files, its data
(elites, lineage, landings, regions, operators over time, cost), the command line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.cli import main
from qdsearch.report import best_per_band, build_report, embedded_data, report_data, trace_run
from qdsearch.store import RunStore
from tests.helpers import HashEmbedder
from tests.report.conftest import HOSTILE_INSTRUCTION, HOSTILE_REASON, HOSTILE_RESPONSE, categorical_data, hostile_id


def _built(run_dir: Path, tmp_path: Path, **kw: Any) -> tuple[Path, str, dict[str, Any]]:
    page = build_report(run_dir, tmp_path / "rep", **kw)
    text = page.read_text()
    return page, text, embedded_data(text)


def test_report_files_and_content(run_dir: Path, tmp_path: Path) -> None:
    page, text, data = _built(run_dir, tmp_path, embedder_factory=HashEmbedder)
    names = sorted(p.name for p in page.parent.iterdir())
    assert names == ["curves.svg", "heatmap_c_regions.png", "heatmap_c_regions.svg", "index.html", "operators.svg"]
    assert (page.parent / "heatmap_c_regions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for n in ("curves.svg", "heatmap_c_regions.svg", "operators.svg"):
        assert (page.parent / n).read_bytes().lstrip().startswith(b"<?xml")
    # self-contained: no external resources of any kind, the script and style inlined
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert text.count("data:image/svg+xml;base64,") == 3 and "<script src" not in text
    assert "Content-Security-Policy" in text and "script-src 'sha256-" in text
    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    last = tr.rows[-1]
    assert data["summary"]["qd_score"] == pytest.approx(last["qd_score"])
    assert data["summary"]["coverage"] == pytest.approx(last["coverage"])
    assert {e["id"] for e in data["elites"]} == set(tr.elites["id"])
    assert {r["operator"] for r in data["operators"]} == set(tr.counters.ops)
    # the QDC table of the export vs the seeds (server-rendered, escaped)
    assert "export (elites)" in text and "vendi" in text.lower()
    assert "near_duplicate_elite" in data["rejects"]


def test_topic_regions_are_named_on_the_axes(run_dir: Path, tmp_path: Path) -> None:
    _, text, data = _built(run_dir, tmp_path)
    frozen = RunStore.open(run_dir, write=False).load_projection()
    assert frozen is not None
    labels = list(frozen[0].labels)
    assert [a["name"] for a in data["axes"]] == ["complexity", "topic_region"]
    assert data["axes"][1]["ticks"] == labels and data["axes"][1]["nominal"]
    assert data["views"] == [{"x": 0, "y": 1, "title": "complexity × topic region"}]
    assert "6 named topic regions" in text
    assert [r["name"] for r in data["regions"]] == labels
    for e in data["elites"]:
        assert e["labels"][1] == labels[e["bins"][1]]
    filled = sum(r["filled"] for r in data["regions"])
    assert filled == len(data["elites"])


def test_every_elite_has_its_full_sample_and_a_lineage_to_a_seed(run_dir: Path, tmp_path: Path) -> None:
    _, _, data = _built(run_dir, tmp_path)
    store = RunStore.open(run_dir, write=False)
    events = {e["id"]: e for e in store.events() if e.get("type") in ("seed", "child")}
    for e in data["elites"]:
        ev = events[e["id"]]
        assert (e["instruction"], e["input"], e["response"]) == (ev["instruction"], ev["input"], ev["response"])
        assert e["judge_reason"] == ev["judge_reason"] and e["operator"] == ev["operator"]
        chain, cur = [], e["id"]
        while cur:
            node = data["lineage"][cur]
            assert node["operator"] == events[cur]["operator"]
            chain.append(node)
            cur = node["parent_id"]
        assert chain[-1]["operator"] == "seed" and chain[-1]["id"].startswith("s")
        assert len(chain) == e["generation"] + 1  # one step per generation, back to the seed


def test_empty_cells_say_what_landed_there(run_dir: Path, tmp_path: Path) -> None:
    _, _, data = _built(run_dir, tmp_path)
    filled = {f"{e['bins'][0]},{e['bins'][1]}" for e in data["elites"]}
    lands = data["landings"][0]
    for key, land in lands.items():
        if key not in filled:
            assert land["accepted"] == 0 and land["rejected"] == sum(land["rejects"].values()) > 0
        else:
            assert land["accepted"] >= 1
    assert filled <= set(lands)  # every filled cell had at least its elite land there


def test_operators_over_time_add_up(run_dir: Path, tmp_path: Path) -> None:
    _, _, data = _built(run_dir, tmp_path)
    ot = data["operators_over_time"]
    total = {r["operator"]: r for r in data["operators"]}
    assert ot["edges"][0] == 0 and ot["edges"][-1] == sum(r["children"] for r in total.values())
    for name, row in ot["ops"].items():
        assert sum(row["children"]) == total[name]["children"]
        assert sum(row["qd_gain"]) == pytest.approx(total[name]["qd_gain"], abs=1e-3)


def test_cost_panel_says_no_prices_instead_of_zero(run_dir: Path) -> None:
    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    data = report_data(store.cfg, None, tr, {})
    cost = data["cost"]
    assert cost["prices_set"] is False and cost["prices"] == []
    assert set(cost["by_tag"]) >= {"judge", "respond"}
    assert sum(r["calls"] for r in cost["by_tag"].values()) == tr.counters.calls
    caps = {c["key"]: c for c in cost["caps"]}
    assert caps["budget.max_children"]["cap"] == 30 and caps["budget.max_children"]["used"] == tr.counters.children
    priced = dataclasses.replace(store.cfg, endpoint=dataclasses.replace(store.cfg.endpoint, price_in_per_mtok=0.15,
                                                                          price_out_per_mtok=0.6))  # fmt: skip
    cost = report_data(priced, None, tr, {})["cost"]
    assert cost["prices_set"] and cost["prices"][0] == {"role": "endpoint", "model": "fake-model", "in": 0.15,
                                                        "out": 0.6}  # fmt: skip


def test_cost_panel_counts_the_request_cache(run_dir: Path) -> None:
    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    none = report_data(store.cfg, None, tr, {})["cost"]["cache"]  # a run before the cache: zeros
    assert none == {"hits": 0, "misses": 0, "hit_rate": 0.0, "saved_tokens": 0, "saved_cost_usd": 0.0}
    state = {"cache_hits": 30, "cache_misses": 10, "cache_saved_tokens": 5000, "cache_saved_cost_usd": 0.25}
    got = report_data(store.cfg, None, tr, state)["cost"]["cache"]
    assert got == {"hits": 30, "misses": 10, "hit_rate": 0.75, "saved_tokens": 5000, "saved_cost_usd": 0.25}


def test_sample_text_stays_text_in_the_page(run_dir: Path, tmp_path: Path) -> None:
    _, text, data = _built(run_dir, tmp_path)
    # the page's markup holds exactly its own two scripts: the data and the code
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<!--" not in text and "alert(1)" not in text.split('id="qd-data">')[0]
    elite = next(e for e in data["elites"] if e["id"] == hostile_id(run_dir))
    assert (elite["instruction"], elite["response"], elite["judge_reason"]) == (
        HOSTILE_INSTRUCTION, HOSTILE_RESPONSE, HOSTILE_REASON)  # fmt: skip


def test_trace_matches_final_archive(run_dir: Path) -> None:
    from qdsearch.export import load_elites

    store = RunStore.open(run_dir, write=False)
    tr = trace_run(store.cfg, None, store.events())
    elites, info = load_elites(store)
    assert tr.rows[-1]["qd_score"] == pytest.approx(info["qd_score"])
    assert len(tr.elites) == len(elites) == tr.rows[-1]["elites"]
    calls = [r["calls"] for r in tr.rows]
    assert calls == sorted(calls) and calls[-1] == tr.counters.calls
    qd = [r["qd_score"] for r in tr.rows]
    assert qd == sorted(qd)  # MAP-Elites never loses QD-score
    assert np.isfinite(qd).all()


def test_best_per_band_orders_by_quality() -> None:
    import pandas as pd

    df = pd.DataFrame(
        {"complexity": [1.0, 1.5, 9.9, 9.0, 5.0], "quality": [3.0, 8.0, 2.0, 9.0, 5.0],
         "operator": ["a"] * 5, "instruction": list("vwxyz"), "input": [""] * 5, "response": ["r"] * 5}
    )  # fmt: skip
    out = best_per_band(df, bands=3, top=1)
    assert list(out["instruction"]) == ["y", "z", "w"]  # hardest band first, best of each


def test_report_cli_and_errors(run_dir: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r2"), "--no-qdc", "--quiet"]) == 0
    assert (tmp_path / "r2" / "index.html").is_file()
    assert "skipped" in (tmp_path / "r2" / "index.html").read_text()
    assert capsys.readouterr().out.strip() == str(tmp_path / "r2" / "index.html")
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a qdsearch run folder" in capsys.readouterr().err


def test_a_categorical_archive_is_one_labelled_grid(tmp_path: Path) -> None:
    from qdsearch.report import render_page

    data = categorical_data(tmp_path)
    assert data["views"] == [{"x": 0, "y": 1, "title": "subject × age"}]
    assert [a["ticks"] for a in data["axes"]] == [["science", "nature", "space"], ["age_4_6", "age_7_9"]]
    assert [e["labels"] for e in data["elites"]] == [["space", "age_4_6"], ["science", "age_7_9"]]
    assert data["regions"] == [] and data["meta"]["space"] == "subject × age"
    assert "Each cell is one combination of labels" in render_page(data)
