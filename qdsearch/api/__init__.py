"""The Python API: load a config, run a campaign, read a run.

    import qdsearch

    cfg = qdsearch.load_config("experiments/quickstart.toml", {"budget.max_children": 8})
    run = qdsearch.run(cfg)                       # or: await qdsearch.arun(cfg)
    run.elites                                    # a DataFrame, the export's field names
    run.export("jsonl")                           # RUN/export/elites.jsonl

The command line (:mod:`qdsearch.cli`) builds its campaigns with the same pieces:
:func:`prepare` resolves what a config names once per process (the domain, the
operators, the seeds), and :class:`Session` opens the endpoint and the embedder
and makes the runtime and the :class:`~qdsearch.campaign.Campaign` from them.

Modules: :mod:`~qdsearch.api.overrides` (configs), :mod:`~qdsearch.api.session`
(built once, one session path), :mod:`~qdsearch.api.results` (:class:`Run`,
:class:`MemorySink`), :mod:`~qdsearch.api.running` (:func:`run`, :func:`arun`). They
import only the config at load time; the rest is imported when used.
"""

from qdsearch.api.overrides import apply_overrides, load_config, resolve_paths
from qdsearch.api.results import MemorySink, Run, open_run
from qdsearch.api.running import _discard, _drop_unwritten, _has_accepted, arun, run
from qdsearch.api.session import Plan, Session, UserError, check_ray_address, prepare

__all__ = [
    "MemorySink",
    "Plan",
    "Run",
    "Session",
    "UserError",
    "_discard",
    "_drop_unwritten",
    "_has_accepted",
    "apply_overrides",
    "arun",
    "check_ray_address",
    "load_config",
    "open_run",
    "prepare",
    "resolve_paths",
    "run",
]
