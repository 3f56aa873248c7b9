"""The terminal side of a campaign: a progress line that fits the terminal, the phase
it is in, and the ``logging`` set-up of every command.

The progress line is one line, formatted for the terminal's width at each redraw
(:func:`format_line`, a pure function): the important figures first (phase,
children done of the budget, QD-score, coverage, best quality, rate and ETA), then
a bar that takes what room is left (it shrinks, then drops), then the details
(calls, tokens, cost, in flight, rejects) as far as they fit. Other modules add
figures of their own with :meth:`Progress.add_segment` (a priority and a function
of the step statistics), without editing this one.

The seed phase shows its own count (seeds judged of all seeds), a resumed run
starts at its real count, and the rate counts only this session's children.

Logging: diagnostics go through :mod:`logging` (``qdsearch.*`` loggers). The
console handler writes above the progress line (never into it); ``--quiet`` shows
warnings and errors only, ``--verbose`` adds debug messages and Ray's own log.
Ray's log records (its "Token authentication is enabled" warning, for one) go to
the run folder's ``qdsearch.log``, not to the terminal.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "LOG_FILE",
    "Progress",
    "ProgressView",
    "SeedWatch",
    "add_verbosity_options",
    "format_line",
    "route_ray_logging",
    "setup_logging",
    "verbosity",
]

LOG_FILE = "qdsearch.log"

log = logging.getLogger("qdsearch.cli")


# --------------------------------------------------------------------------- the line
@dataclass
class ProgressView:
    """What one progress line shows (every field optional but the phase)."""

    phase: str
    done: int = 0
    total: int | None = None
    unit: str = "children"
    qd_score: float | None = None
    coverage: float | None = None
    best: float | None = None
    mean: float | None = None
    rate: float | None = None  # per second, this session only
    eta_s: float | None = None
    calls: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None  # None: no prices set
    in_flight: int | None = None
    rejects: dict[str, int] = field(default_factory=dict)
    extra: list[tuple[float, str]] = field(default_factory=list)  # (priority, text)


def _si(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def _clock(s: float) -> str:
    s = max(0, int(s))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


_BAR_MIN, _BAR_MAX = 10, 30


def _bar(done: int, total: int, width: int, ascii_only: bool) -> str:
    inner = width - 2
    full = min(inner, int(inner * done / total)) if total else 0
    fill, empty = ("#", "-") if ascii_only else ("█", "░")
    return "|" + fill * full + empty * (inner - full) + "|"


def format_line(v: ProgressView, width: int, *, ascii_only: bool = False) -> str:
    """The progress line for ``v`` in at most ``width`` columns.

    Segments are taken in priority order while they fit (the phase and the count
    always); the bar, when the total is known, gets at least 10 columns or is left
    out, and then grows into what room is left (up to 30).
    """
    count = f"{v.done}/{v.total}" if v.total else str(v.done)
    segs: list[tuple[float, int, str]] = []  # (priority, position on the line, text)

    def seg(priority: float, text: str | None) -> None:
        if text:
            segs.append((priority, len(segs), text))

    seg(0, v.phase)
    seg(0, count + (f" {v.unit}" if width >= 100 else ""))
    bar_pos = len(segs)
    segs.append((3.5, bar_pos, "\0bar"))  # placeholder; its width is decided below
    seg(1, f"QD {v.qd_score:.1f}" if v.qd_score is not None else None)
    seg(1, f"cov {v.coverage:.3f}" if v.coverage is not None else None)
    seg(2, f"best {v.best:.1f}" if v.best is not None else None)
    seg(3, f"{v.rate:.2f}/s" if v.rate else None)
    seg(3, f"ETA {_clock(v.eta_s)}" if v.eta_s is not None else None)
    seg(4, f"calls {_si(v.calls)}" if v.calls is not None else None)
    seg(4, f"tok {_si(v.tokens)}" if v.tokens is not None else None)
    seg(4, f"${v.cost_usd:.4f}" if v.cost_usd is not None else None)
    seg(5, f"mean {v.mean:.2f}" if v.mean is not None else None)
    seg(5, f"in flight {v.in_flight}" if v.in_flight is not None else None)
    for prio, text in v.extra:
        seg(prio, text)
    if v.rejects:
        top = sorted(v.rejects.items(), key=lambda kv: (-kv[1], kv[0]))
        seg(6, f"rej {sum(v.rejects.values())}")
        seg(7, "(" + " ".join(f"{k}:{n}" for k, n in top[:2]) + ")")
    if not v.total:
        segs = [s for s in segs if s[2] != "\0bar"]

    chosen: list[tuple[float, int, str]] = []
    used = -1  # no separator before the first segment
    for s in sorted(segs, key=lambda s: (s[0], s[1])):
        need = (_BAR_MIN if s[2] == "\0bar" else len(s[2])) + 1
        if used + need <= width or s[0] == 0:
            chosen.append(s)
            used += need
    chosen.sort(key=lambda s: s[1])
    parts = []
    for _, _, text in chosen:
        if text == "\0bar":
            grow = min(_BAR_MAX, _BAR_MIN + max(0, width - used))
            assert v.total
            text = _bar(v.done, v.total, grow, ascii_only)
        parts.append(text)
    return " ".join(parts)[:width]


# --------------------------------------------------------------------------- the display
class Progress:
    """The progress display of one campaign session, on ``stream`` (stderr).

    Args:
        cfg: the campaign config (the budget gives the total; prices say whether
            cost is shown).
        enabled: draw at all (False for ``--quiet``).
        stream: where to draw (default: ``sys.stderr`` at each write).
        start_children: children the run had logged before this session (resume).
        width: the terminal width (default ``shutil.get_terminal_size``).
    """

    def __init__(self, cfg: Any, *, enabled: bool = True, stream: TextIO | None = None, start_children: int = 0,
                 width: Callable[[], int] | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.enabled = enabled
        self._stream = stream
        self._width = width or (lambda: shutil.get_terminal_size((100, 24)).columns)
        b = cfg.budget
        self.total: int | None = b.max_children or None
        from qdsearch.report.data import prices_set

        self.prices = prices_set(cfg)
        self.start_children = start_children
        self.view = ProgressView(phase="starting", done=start_children, total=self.total)
        self.phase = "starting"
        self.seeds_total = 0
        self.seeds_done = 0
        self.seeds_failed = 0
        self._t0 = time.monotonic()
        self._t_run: float | None = None
        self._drawn = False
        self._last_draw = 0.0
        self._last_plain = 0.0
        self._segments: list[tuple[float, Callable[[Any], str | None]]] = []
        self.last_stats: Any = None

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @property
    def tty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):
            return False

    def add_segment(self, priority: float, fn: Callable[[Any], str | None]) -> None:
        """Adds a figure of another module: ``fn(step_stats)`` gives its text (None:
        nothing to show); lower ``priority`` is kept first when the line is short
        (the core figures are 0-7)."""
        self._segments.append((priority, fn))

    # ------------------------------------------------------------------ what happens
    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.view.phase = phase
        self.draw(force=True)

    def seeds(self, total: int) -> None:
        """The seed phase begins: ``total`` seeds to answer and judge."""
        self.seeds_total = total
        self._seed_view(force=True)

    def seed_done(self, judged: bool) -> None:
        """One seed came back (judged, or rejected on the way)."""
        self.seeds_done += 1
        self.seeds_failed += not judged
        self._seed_view()
        if self.seeds_done >= self.seeds_total:
            self.set_phase("fitting the topic space")

    def _seed_view(self, force: bool = False) -> None:
        t = time.monotonic() - self._t0
        rate = self.seeds_done / t if t > 0 and self.seeds_done else None
        left = self.seeds_total - self.seeds_done
        self.phase = "seed phase"
        self.view = ProgressView(
            phase="seeds judged" if self._width() >= 60 else "seeds",
            done=self.seeds_done,
            total=self.seeds_total or None,
            unit="seeds",
            rate=rate,
            eta_s=left / rate if rate else None,
            rejects={"failed": self.seeds_failed} if self.seeds_failed else {},
        )
        self.draw(force=force)

    def describe(self) -> str:
        """The phase in words (the live view shows it)."""
        if self.phase == "seed phase":
            return f"seed phase: {self.seeds_done}/{self.seeds_total} seeds answered and judged"
        return self.phase

    def __call__(self, st: Any, counters: Any = None) -> None:
        """The campaign's step callback (:class:`qdsearch.events.StepStats`);
        ``counters``, the campaign's totals, is accepted for callers that pass it."""
        now = time.monotonic()
        if self._t_run is None:
            self._t_run = now
            self.start_children = min(self.start_children, st.children)
        self.last_stats = st
        self.phase = "running"
        new = st.children - self.start_children
        elapsed = now - self._t_run
        rate = new / elapsed if new > 0 and elapsed > 0.5 else None
        eta = (self.total - st.children) / rate if rate and self.total and st.children < self.total else None
        extra = []
        for prio, fn in self._segments:
            try:
                text = fn(st)
            except Exception:  # a figure of another module never breaks the line
                text = None
            if text:
                extra.append((prio, text))
        self.view = ProgressView(
            phase="run",
            done=st.children,
            total=self.total,
            qd_score=st.qd_score,
            coverage=st.coverage,
            best=st.best_quality,
            mean=st.mean_quality,
            rate=rate,
            eta_s=eta,
            calls=st.calls,
            tokens=st.tokens,
            cost_usd=st.cost_usd if self.prices else None,
            in_flight=st.in_flight,
            rejects=dict(st.rejects),
            extra=extra,
        )
        self.draw()

    # ------------------------------------------------------------------ drawing
    def line(self, width: int | None = None) -> str:
        enc = (getattr(self.stream, "encoding", "") or "").lower()
        return format_line(self.view, width or self._width(), ascii_only="utf" not in enc)

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if not force and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            # one column short: a line that fills the last column wraps on some terminals
            self.stream.write("\r" + self.line(self._width() - 1) + "\x1b[K")
            self.stream.flush()
            self._drawn = True
        elif force or now - self._last_plain >= 30.0:
            self._last_plain = now
            self.stream.write(self.line(120) + "\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Writes a line above the progress line (the logging handler's way out)."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()
        if self.tty and self._drawn and self.enabled:
            self.stream.write("\r" + self.line(self._width() - 1) + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\r" + self.line(self._width() - 1) + "\x1b[K\n")
            self.stream.flush()
        elif self.enabled and not self.tty and self.last_stats is not None and _ACTIVE.count(self):
            self.stream.write(self.line(120) + "\n")  # the last figures, once, off a terminal
            self.stream.flush()
        self._drawn = False
        _ACTIVE[:] = [p for p in _ACTIVE if p is not self]

    def __enter__(self) -> Progress:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The progress display being drawn (the console handler writes above it).
_ACTIVE: list[Progress] = []


class SeedWatch:
    """Wraps a runtime to count the seed jobs as they come back (the seed phase's own
    progress); everything else passes through unchanged."""

    def __init__(self, runtime: Any, on_seed: Callable[[bool], None]) -> None:
        from qdsearch.domains.base import SEED_OPERATOR

        self._inner = runtime
        self._on_seed = on_seed
        self._seed = SEED_OPERATOR

    async def submit(self, job: Any) -> Any:
        cand = None
        try:
            cand = await self._inner.submit(job)
            return cand
        finally:
            if getattr(job, "operator", None) == self._seed:
                judged = cand is not None and getattr(cand, "judgement", None) is not None
                self._on_seed(judged and not getattr(cand, "reject", ""))

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# --------------------------------------------------------------------------- logging
def add_verbosity_options(parser: Any) -> None:
    """``-v/--verbose`` and ``-q/--quiet`` on a command (see :func:`setup_logging`)."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug messages too")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")


def verbosity(args: Any) -> int:
    """``--verbose`` count minus ``--quiet`` count of parsed arguments (0 without them)."""
    return int(getattr(args, "verbose", 0) or 0) - int(getattr(args, "quiet", 0) or 0)


class _Console(logging.Handler):
    """Writes records to the terminal: above the progress line when one is drawn,
    else to ``sys.stderr`` as it is at the time (so test capture sees it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if _ACTIVE:
                _ACTIVE[-1].write(text)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _Plain(logging.Formatter):
    """Our own messages as they are; other libraries' with their name and level."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            msg += "\n" + self.formatException(record.exc_info)
        if record.name == "qdsearch" or record.name.startswith("qdsearch."):
            return msg
        return f"{record.name}: {record.levelname.lower()}: {msg}"


_OURS = "_qdsearch_handler"


def _drop_ours(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        if getattr(h, _OURS, False):
            logger.removeHandler(h)
            h.close()


def _handler(h: logging.Handler, level: int) -> logging.Handler:
    h.setLevel(level)
    h.setFormatter(_Plain())
    setattr(h, _OURS, True)
    return h


def setup_logging(verbosity: int = 0, log_file: str | Path | None = None) -> None:
    """Sets up the command's logging (again, if called again: handlers are replaced).

    Args:
        verbosity: ``--verbose`` count minus ``--quiet`` count: below 0 warnings
            and errors only, 0 information, above 0 debug messages and other
            libraries' information (Ray's included) on the terminal too.
        log_file: a file that gets every record at debug level with timestamps
            (the run folder's ``qdsearch.log``); None for none.
    """
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    ours, root, ray_logger = logging.getLogger("qdsearch"), logging.getLogger(), logging.getLogger("ray")
    for lg in (ours, root, ray_logger):
        _drop_ours(lg)
    ours.addHandler(_handler(_Console(), level))
    ours.setLevel(logging.DEBUG)
    ours.propagate = False
    # other libraries: their warnings above the progress line (errors only with --quiet);
    # Ray's records reach the terminal only with --verbose (the log file always)
    other = logging.ERROR if verbosity < 0 else logging.WARNING if verbosity == 0 else logging.INFO
    console = _handler(_Console(), other)
    if verbosity <= 0:
        console.addFilter(_not_ray)
    root.addHandler(console)
    fh: logging.Handler | None = None
    if log_file is not None:
        try:
            fh = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as e:
            log.warning(f"warning: cannot write the log file {log_file} ({e.strerror or e})")
        else:
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            setattr(fh, _OURS, True)
            ours.addHandler(fh)
            root.addHandler(fh)
    if "ray" in sys.modules:
        route_ray_logging()
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
    line: str | None = None,
) -> None:  # fmt: skip
    """Python warnings of a command (the request cache turning itself off, a library's
    deprecation) as one logged line, so they land above the progress line and in the
    log file instead of inside the line with their source file and line number."""
    where = "" if category.__module__.startswith("qdsearch") else f" ({filename}:{lineno})"
    logging.getLogger("qdsearch.warnings").warning(f"warning: {category.__name__}: {message}{where}")


def _not_ray(record: logging.LogRecord) -> bool:
    return not (record.name == "ray" or record.name.startswith("ray."))


def route_ray_logging() -> None:
    """Sends Ray's log records where :func:`setup_logging` says (the log file; the
    terminal with ``--verbose``) instead of Ray's own terminal handler, whose records
    ("Token authentication is enabled ...") would land inside the progress line.

    Ray installs that handler when it is imported, and ``ray.init`` clears the ray
    logger's handlers, after which Python's last-resort handler would print to
    stderr; so the ray logger keeps no handler and propagates to the root logger's.
    Imports Ray (the campaign is about to)."""
    import ray  # noqa: F401  (its import installs the handler removed here)

    ray_logger = logging.getLogger("ray")
    for h in list(ray_logger.handlers):
        ray_logger.removeHandler(h)
    ray_logger.propagate = True
    ray_logger.setLevel(logging.INFO)
