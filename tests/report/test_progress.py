"""The terminal: the progress line fits 80 and 120 columns with the important figures
first, log records land above it (Ray's included, which go to the log file), the
seed phase counts its seeds, and a resumed run starts at its real count with a rate
of this session only."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.cli import main
from qdsearch.cli.progress import (
    Progress,
    ProgressView,
    SeedWatch,
    format_line,
    route_ray_logging,
    setup_logging,
)
from qdsearch.config import from_dict
from qdsearch.events import StepStats
from qdsearch.store import dumps_toml
from tests.helpers import config_dict

FULL = ProgressView(phase="run", done=137, total=200, qd_score=1234.5, coverage=0.4125, best=9.0, mean=6.25,
                    rate=2.13, eta_s=29.6, calls=4120, tokens=1_234_567, cost_usd=0.1234, in_flight=6,
                    rejects={"near_duplicate_elite": 41, "judge_not_json": 3, "parse_failed": 1})  # fmt: skip


class TTY(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _stats(children: int, **kw: Any) -> StepStats:
    base = {"children": children, "accepted": children // 2, "in_flight": 4, "elites": 9, "coverage": 0.3,
            "qd_score": 45.0, "best_quality": 8.0, "mean_quality": 5.0, "calls": 3 * children,
            "tokens": 900 * children, "cost_usd": 0.0, "wall_s": 10.0, "rejects": {"near_duplicate_elite": 2}}  # fmt: skip
    return StepStats(**(base | kw))


def _cfg(tmp_path: Path, **over: Any) -> Any:
    return from_dict(config_dict("http://127.0.0.1:9/v1", tmp_path, **over))


def test_at_80_columns_the_important_figures_come_first() -> None:
    line = format_line(FULL, 80)
    assert len(line) <= 80
    assert line.startswith("run 137/200 ")
    for part in ("QD 1234.5", "cov 0.412", "best 9.0", "2.13/s", "ETA 0:29"):
        assert part in line, line
    # what did not fit is the detail, never the figures before it
    assert "(near_duplicate_elite:41" not in line


def test_at_120_columns_the_bar_is_wide_and_the_details_follow() -> None:
    line = format_line(FULL, 120)
    assert len(line) <= 120
    bar = re.search(r"\|([█░]+)\|", line)
    assert bar is not None and len(bar.group(1)) >= 8, line
    assert line.index("137/200") < bar.start() < line.index("QD 1234.5")
    for part in ("calls 4.1k", "tok 1.2M", "$0.1234"):
        assert part in line, line


def test_a_narrow_terminal_drops_the_bar_before_the_score() -> None:
    line = format_line(FULL, 44)
    assert len(line) <= 44 and "QD 1234.5" in line and "|" not in line


@given(st.integers(min_value=16, max_value=300), st.integers(min_value=0, max_value=10**7),
       st.integers(min_value=1, max_value=10**7), st.floats(0, 1e7), st.integers(0, 10**12),
       st.dictionaries(st.text(min_size=1, max_size=40), st.integers(1, 10**6), max_size=5))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_the_line_never_passes_the_width(width: int, done: int, total: int, qd: float, tokens: int,
                                         rejects: dict[str, int]) -> None:  # fmt: skip
    v = ProgressView(phase="run", done=done, total=total, qd_score=qd, coverage=0.5, best=9.9, rate=1.5,
                     eta_s=1e5, calls=tokens // 3, tokens=tokens, rejects=rejects)  # fmt: skip
    line = format_line(v, width)
    assert len(line) <= width
    assert line.startswith("run ")


def test_the_drawn_line_fits_the_terminal_and_log_records_land_above_it(tmp_path: Path) -> None:
    out = TTY()
    setup_logging(0)
    with Progress(_cfg(tmp_path), stream=out, width=lambda: 80) as p:
        for n in (5, 10, 15):
            p(_stats(n))
            p.draw(force=True)
        logging.getLogger("qdsearch.cli").warning("warning: something to know")
        p(_stats(20))
    text = out.getvalue()
    for piece in re.split(r"[\r\n]", text):
        assert len(piece.replace("\x1b[K", "")) <= 80, piece
    # what a terminal shows: each line's text after its last carriage return (\x1b[K clears the rest)
    shown = [ln.replace("\x1b[K", "").rsplit("\r", 1)[-1] for ln in text.split("\n")]
    # the record is a whole line of its own: the bar was cleared before it and redrawn after
    assert "warning: something to know" in shown, shown
    assert shown[-2].startswith("run 20/40 ") and shown[-1] == ""


def test_a_resumed_run_starts_at_its_count_and_rates_this_session(tmp_path: Path) -> None:
    out = TTY()
    clock = [100.0]
    p = Progress(_cfg(tmp_path, budget={"max_children": 100}), stream=out, width=lambda: 120, start_children=60)
    import qdsearch.cli.progress as progress_module

    real = progress_module.time.monotonic
    progress_module.time.monotonic = lambda: clock[0]  # type: ignore[assignment]
    try:
        p(_stats(60))
        clock[0] += 10.0
        p(_stats(70))  # 10 children in 10 s of this session (60 were done before it)
    finally:
        progress_module.time.monotonic = real  # type: ignore[assignment]
    assert p.view.done == 70 and p.view.rate == pytest.approx(1.0)
    assert p.view.eta_s == pytest.approx(30.0)
    assert "70/100" in p.line(120) and "1.00/s" in p.line(120)


def test_the_seed_phase_counts_its_seeds(tmp_path: Path) -> None:
    from qdsearch.domains.base import SEED_OPERATOR
    from qdsearch.types import Candidate, Judgement, Sample

    class Runtime:
        async def submit(self, job: Any) -> Candidate:
            judged = job.parent.id != "s2"
            return Candidate(job.parent, Judgement(quality=5.0, complexity=2.0) if judged else None,
                             reject="" if judged else "judge_not_json")  # fmt: skip

        async def close(self) -> None:
            pass

    class Job:
        def __init__(self, i: int) -> None:
            self.parent = Sample(id=f"s{i}", instruction="x")
            self.operator = SEED_OPERATOR

    p = Progress(_cfg(tmp_path), stream=TTY(), width=lambda: 80)
    p.seeds(4)
    watch = SeedWatch(Runtime(), p.seed_done)

    async def go() -> None:
        for i in range(3):
            await watch.submit(Job(i))

    asyncio.run(go())
    assert (p.seeds_done, p.seeds_failed) == (3, 1)
    assert p.line().startswith("seeds judged 3/4") and "failed" in p.line()
    assert p.describe() == "seed phase: 3/4 seeds answered and judged"
    asyncio.run(watch.submit(Job(3)))
    assert p.phase == "fitting the topic space"


def test_rays_warnings_go_to_the_log_file_not_the_terminal(tmp_path: Path, capsys: Any) -> None:
    log_file = tmp_path / "qdsearch.log"
    setup_logging(0, log_file)
    route_ray_logging()
    msg = "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
    logging.getLogger("ray._private.authentication.authentication_token_setup").warning(msg)
    logging.getLogger("ray").handlers.clear()  # what ray.init(configure_logging=False) does
    logging.getLogger("ray._private.worker").warning("after ray.init")
    logging.getLogger("qdsearch.cli").info("our own line")
    err = capsys.readouterr().err
    assert "Token authentication" not in err and "after ray.init" not in err and "our own line" in err
    for h in logging.getLogger("qdsearch").handlers:
        h.flush()
    assert msg in log_file.read_text() and "our own line" in log_file.read_text()
    setup_logging(1, tmp_path / "v.log")  # --verbose: Ray's records on the terminal too
    logging.getLogger("ray.anything").warning("ray says hi")
    assert "ray.anything: warning: ray says hi" in capsys.readouterr().err
    setup_logging(-1)  # --quiet: warnings only
    logging.getLogger("qdsearch.cli").info("hidden")
    logging.getLogger("qdsearch.cli").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err and "shown" in err
    setup_logging(0)


def test_a_run_shows_its_seed_phase_and_keeps_a_log_file(fake_openai: Any, tmp_path: Path, capsys: Any) -> None:
    from tests.fakes.world import world

    fake = fake_openai(world)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(dumps_toml(config_dict(fake.base_url, tmp_path, budget={"max_children": 8})))
    assert main(["run", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "seeds judged" in err and "fitting the topic space" in err  # the line, printed plainly off a terminal
    run = tmp_path / "archives" / "t"
    log_text = (run / "qdsearch.log").read_text()
    assert "fitting" not in log_text  # the log holds records, not the progress line
    assert main(["resume", str(run), "--max-children", "12", "-v"]) == 0
    out = capsys.readouterr()
    # a resumed run starts at its real count
    assert "resuming 8/12" in out.err and "run 12/12" in out.err and "children=12" in out.out
    setup_logging(0)
