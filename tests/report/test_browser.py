"""The report page in a real headless Chromium, driven over the DevTools protocol:
hover and click heatmap cells, read the sample and its lineage, filter and sort the
elites table, check that hostile sample text stays text, and look at both widths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qdsearch.report import build_report, embedded_data
from tests.report.cdp import CHROMIUM, Browser, Page
from tests.report.conftest import HOSTILE_INSTRUCTION, HOSTILE_REASON, HOSTILE_RESPONSE, categorical_data, hostile_id

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def browser(loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = loop.run_until_complete(Browser().start(tmp_path_factory.mktemp("chromium")))
    yield b
    loop.run_until_complete(b.close())


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    page = build_report(run_dir, tmp_path_factory.mktemp("rep"))
    return page, embedded_data(page.read_text())


def _open(loop: asyncio.AbstractEventLoop, browser: Browser, url: str, width: int = 1400) -> Page:
    async def go() -> Page:
        page = await browser.page(width, 900)
        await page.goto(url)
        await page.wait_for("document.body.getAttribute('data-rendered')")
        return page

    return loop.run_until_complete(go())


def _exceptions(browser: Browser, page: Page) -> list[dict[str, Any]]:
    return [p for sid, name, p in browser._events if sid == page.session and name == "Runtime.exceptionThrown"]


def _best_per_cell(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for e in data["elites"]:
        key = f"{e['bins'][0]},{e['bins'][1]}"
        if key not in best or e["quality"] > best[key]["quality"]:
            best[key] = e
    return best


def test_hover_and_click_a_cell_shows_its_sample_and_lineage(
    loop: asyncio.AbstractEventLoop, browser: Browser, report: tuple[Path, dict[str, Any]]
) -> None:
    path, data = report
    page = _open(loop, browser, path.as_uri())
    best = _best_per_cell(data)
    key, elite = max(best.items(), key=lambda kv: kv[1]["generation"])  # the one with the longest lineage

    async def go() -> None:
        assert await page.eval("document.body.getAttribute('data-rendered')") == "ok"
        n_cells = await page.eval("document.querySelectorAll('.heat .cell').length")
        assert n_cells == data["axes"][0]["bins"] * data["axes"][1]["bins"]
        assert await page.eval("document.querySelectorAll('.heat .cell[data-id]').length") == len(best)
        # the rows are named by the topic regions
        rows = await page.eval("[].map.call(document.querySelectorAll('.heat .rlab'), e => e.textContent)")
        assert rows == data["axes"][1]["ticks"]
        sel = f'.heat .cell[data-cell="{key}"]'
        await page.hover(sel)
        tip = await page.wait_for("!document.getElementById('tip').hidden && document.getElementById('tip').innerText")
        assert f"quality {elite['quality']:.1f}" in tip and f"operator {elite['operator']}" in tip
        await page.click(sel)
        await page.wait_for(f"document.getElementById('detail').getAttribute('data-id') === {json.dumps(elite['id'])}")
        detail = await page.eval("document.getElementById('detail').innerText")
        assert elite["instruction"].split("\n")[0][:60] in detail
        assert elite["response"].split("\n")[0][:60] in detail and "Judge reason" in detail
        steps = await page.eval(
            "[].map.call(document.querySelectorAll('#detail .lineage > li .op'), e => e.textContent)"
        )
        assert len(steps) == elite["generation"] + 1 and steps[0] == "seed" and steps[-1] == elite["operator"]
        assert await page.eval(f"document.querySelector('{sel}').classList.contains('sel')")

    loop.run_until_complete(go())
    assert not _exceptions(browser, page)


def test_an_empty_cell_says_why(loop: asyncio.AbstractEventLoop, browser: Browser,
                                report: tuple[Path, dict[str, Any]]) -> None:  # fmt: skip
    path, data = report
    page = _open(loop, browser, path.as_uri())
    filled = set(_best_per_cell(data))
    empty = next(f"{x},{y}" for y in range(data["axes"][1]["bins"]) for x in range(data["axes"][0]["bins"])
                 if f"{x},{y}" not in filled)  # fmt: skip

    async def go() -> None:
        await page.click(f'.heat .cell[data-cell="{empty}"]')
        text = await page.wait_for("document.getElementById('detail').innerText.indexOf('Empty cell') >= 0 && "
                                   "document.getElementById('detail').innerText")  # fmt: skip
        land = data["landings"][0].get(empty)
        if land is None:
            assert "no candidate was ever measured into this cell" in text
        else:
            assert f"{land['rejected']} rejected" in text

    loop.run_until_complete(go())


def test_hostile_sample_text_stays_text(loop: asyncio.AbstractEventLoop, browser: Browser, run_dir: Path,
                                        report: tuple[Path, dict[str, Any]]) -> None:  # fmt: skip
    path, _ = report
    page = _open(loop, browser, path.as_uri())
    target = hostile_id(run_dir)

    async def go() -> None:
        await page.click(f'#elites tr[data-id="{target}"]')
        await page.wait_for(f"document.getElementById('detail').getAttribute('data-id') === {json.dumps(target)}")
        text = await page.eval("document.getElementById('detail').textContent")
        assert HOSTILE_INSTRUCTION in text and HOSTILE_RESPONSE in text and HOSTILE_REASON in text
        assert await page.eval("window.pwned === undefined")  # no injected script or handler ran
        assert await page.eval("document.querySelectorAll('script').length") == 2
        assert await page.eval("document.querySelectorAll('#detail img, #elites img, [onerror]').length") == 0
        assert await page.eval("document.title") == "qdsearch report: t"

    loop.run_until_complete(go())
    assert not _exceptions(browser, page)


def test_filter_search_and_sort_the_elites_table(loop: asyncio.AbstractEventLoop, browser: Browser,
                                                 report: tuple[Path, dict[str, Any]]) -> None:  # fmt: skip
    path, data = report
    page = _open(loop, browser, path.as_uri())
    rows_js = "[].map.call(document.querySelectorAll('#elites tbody tr'), r => r.getAttribute('data-id'))"

    def hay(e: dict[str, Any]) -> str:  # what the search box reads, as the page does
        return "\n".join([e["id"], e["instruction"], e["input"], e["response"], e["judge_reason"], e["operator"],
                          *e["labels"]]).lower()  # fmt: skip

    words = sorted({w for e in data["elites"] for w in e["instruction"].lower().split() if w.isalpha()})
    word, hits = next((w, h) for w in words if 0 < len(h := {e["id"] for e in data["elites"] if w in hay(e)})
                      < len(data["elites"]) - 1)  # fmt: skip

    async def go() -> None:
        assert set(await page.eval(rows_js)) == {e["id"] for e in data["elites"]}
        await page.type("#elite-search", word)
        await page.wait_for(f"{rows_js}.length === {len(hits)}")
        assert set(await page.eval(rows_js)) == hits
        count = await page.eval("document.getElementById('elite-count').textContent")
        assert count == f"{len(hits)} of {len(data['elites'])} elites"
        # clear the search, filter by operator
        await page.eval("var q=document.getElementById('elite-search'); q.value=''; "
                        "q.dispatchEvent(new Event('input'))")  # fmt: skip
        op = max({e["operator"] for e in data["elites"]}, key=lambda o: sum(e["operator"] == o for e in data["elites"]))
        await page.eval(f"var s=document.getElementById('elite-operator'); s.value={json.dumps(op)}; "
                        "s.dispatchEvent(new Event('change'))")  # fmt: skip
        assert set(await page.eval(rows_js)) == {e["id"] for e in data["elites"] if e["operator"] == op}
        await page.eval("var s=document.getElementById('elite-operator'); s.value=''; "
                        "s.dispatchEvent(new Event('change'))")  # fmt: skip
        # sort: quality descending by default; a click on "complexity" sorts by it
        q = await page.eval("[].map.call(document.querySelectorAll('#elites tbody tr td:nth-child(2)'), "
                            "t => Number(t.textContent))")  # fmt: skip
        assert q == sorted(q, reverse=True)
        await page.click('#elites th[data-key="complexity"]')
        c = await page.eval("[].map.call(document.querySelectorAll('#elites tbody tr td:nth-child(3)'), "
                            "t => Number(t.textContent))")  # fmt: skip
        assert c == sorted(c, reverse=True) and len(c) == len(data["elites"])
        await page.click('#elites th[data-key="complexity"]')
        c = await page.eval("[].map.call(document.querySelectorAll('#elites tbody tr td:nth-child(3)'), "
                            "t => Number(t.textContent))")  # fmt: skip
        assert c == sorted(c)

    loop.run_until_complete(go())


@pytest.mark.parametrize("width", [1400, 420])
def test_the_page_fits_its_width(loop: asyncio.AbstractEventLoop, browser: Browser,
                                 report: tuple[Path, dict[str, Any]], tmp_path: Path, width: int) -> None:  # fmt: skip
    path, _ = report
    page = _open(loop, browser, path.as_uri(), width)

    async def go() -> None:
        assert await page.eval("document.documentElement.scrollWidth") <= width  # no sideways scrolling
        # the archive and the sample sit side by side when wide, stacked when narrow
        top = await page.eval("[document.getElementById('archive-sec').getBoundingClientRect().top, "
                              "document.getElementById('detail').getBoundingClientRect().top]")  # fmt: skip
        assert (abs(top[0] - top[1]) < 5) == (width >= 1000)
        await page.click(".heat .cell[data-id]")
        shot = await page.screenshot(tmp_path / f"report-{width}.png", width)
        import matplotlib.image as mpimg

        img = mpimg.imread(shot)
        assert img.shape[1] == width and img.shape[0] > 1500
        assert float(img[..., :3].std()) > 0.05  # not a blank page

    loop.run_until_complete(go())


def test_a_categorical_archive_shows_its_label_grid(loop: asyncio.AbstractEventLoop, browser: Browser,
                                                    tmp_path: Path) -> None:  # fmt: skip
    from qdsearch.report import render_page

    data = categorical_data(tmp_path)
    data["version"] = "x"
    path = tmp_path / "cat.html"
    path.write_text(render_page(data))
    page = _open(loop, browser, path.as_uri())

    async def go() -> None:
        assert await page.eval("[].map.call(document.querySelectorAll('.heat .rlab'), e => e.textContent)") == [
            "age_4_6", "age_7_9"]  # fmt: skip
        assert await page.eval("[].map.call(document.querySelectorAll('.heat .clab'), e => e.textContent)") == [
            "science", "nature", "space"]  # fmt: skip
        assert await page.eval("document.querySelectorAll('.heat .cell').length") == 6
        await page.click('.heat .cell[data-cell="2,0"]')
        await page.wait_for("document.getElementById('detail').getAttribute('data-id') === 's00000'")
        assert "why <b>" in await page.eval("document.getElementById('detail').textContent")
        assert await page.eval("document.getElementById('regions-sec').hidden")

    loop.run_until_complete(go())
    assert not _exceptions(browser, page)
