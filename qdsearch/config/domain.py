"""The ``[domain]`` section: what a campaign searches over."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from qdsearch.config.checks import ConfigError, _check, _show


@dataclass(frozen=True)
class DomainConfig:
    """What a campaign searches over: solutions, seeding, operators, fitness, descriptors.

    ``kind``:

    - ``instruct``: instruction-response training data (the default), judged quality,
      complexity x topic descriptors.
    - ``task_prompt``: task prompts scored by a ``[target]`` endpoint on labelled
      splits: ``train_path`` (minibatches, the reflective operator's examples),
      ``val_path`` (fitness; ``dev_path`` is its old name) and ``test_path``
      (held out: scored once per session for the elites, never seen by the search);
      complexity x style/topic descriptors.
    - ``probe``: red-teaming probe prompts against a ``[target]``, graded by a
      ``[grader]`` against ``quality_rubric``; categorical descriptors from ``axes``.
    - ``custom``: instruction-response data with user-written rubrics and labels,
      descriptors ``complexity_topic`` or ``categorical`` (judge-assigned ``axes``).
    """

    # a registered domain (qdsearch.domains.DOMAINS; checked when the domain is built,
    # since the domains import the config): instruct, task_prompt, probe, custom, ...
    kind: str = "instruct"
    # task_prompt: JSONL of {"input", "output"} (or "expected"/"answer"/"label") per split.
    # val: the fitness split (the score that decides elites); dev_path is its old name.
    dev_path: str = ""
    val_path: str = ""
    train_path: str = ""  # minibatches, the gate and the reflective operator's examples
    test_path: str = ""  # held out: scored at the end of each session, never shown to the search
    minibatch: int = 3  # training examples per minibatch (traces for reflect, the gate); 0: none
    # score a child on its parent's training minibatch first; a full val pass only when it
    # is not worse there than its parent (else rejected as minibatch_gate)
    minibatch_gate: bool = False
    parent_selection: Literal["uniform", "pareto"] = "uniform"  # pareto: per-val-example front
    test_elites: Literal["all", "best"] = "all"  # which elites the test split scores
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
        _check(
            re.fullmatch(r"[a-z][a-z0-9_]*", self.kind) is not None,
            f"{key}.kind",
            f"expected a domain name such as 'instruct', 'task_prompt', 'probe' or 'custom', got {_show(self.kind)}",
        )
        if self.kind == "task_prompt":
            _check(
                bool(self.dev_path or self.val_path),
                f"{key}.val_path",
                f"is required when kind = 'task_prompt' (or {key}.dev_path, its old name)",
            )
        _check(
            not (self.dev_path and self.val_path),
            f"{key}.dev_path",
            f"is the old name of {key}.val_path: set one of them, not both",
        )
        _check(self.minibatch >= 0, f"{key}.minibatch", f"must be >= 0, got {self.minibatch}")
        if self.minibatch_gate:
            _check(
                bool(self.train_path) and self.minibatch > 0,
                f"{key}.minibatch_gate",
                "needs domain.train_path and domain.minibatch > 0 (the gate scores a child on training examples)",
            )
        if self.parent_selection == "pareto":
            _check(self.kind == "task_prompt", f"{key}.parent_selection", "'pareto' needs kind = 'task_prompt'")
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
            axes = self.axes
            # a domain may bring default axes (the probe's, qdsearch.domains.probe); set ones are checked here
            _check(
                len(axes) == 2 or (not axes and self.kind == "probe"),
                f"{key}.axes",
                f"categorical descriptors need exactly 2 axes, got {len(axes)}",
            )
            for name, labels in axes.items():
                _check(bool(re.fullmatch(r"[a-z][a-z0-9_]*", name)), f"{key}.axes.{name}", "must be snake_case")
                _check(len(labels) >= 2, f"{key}.axes.{name}", f"needs at least 2 labels, got {len(labels)}")
                _check(len(set(labels)) == len(labels), f"{key}.axes.{name}", "has duplicate labels")
        elif self.axes:
            raise ConfigError(f"{key}.axes: only used with descriptors = 'categorical' (or kind = 'probe')")

    @property
    def fitness_path(self) -> str:
        """The fitness split's file: ``val_path``, else the old ``dev_path``."""
        return self.val_path or self.dev_path

    @property
    def categorical(self) -> bool:
        return self.kind == "probe" or self.descriptors == "categorical"

    def axis_labels(self) -> dict[str, tuple[str, ...]]:
        """The configured categorical axes; a domain's default ones (the probe's) come
        from :func:`qdsearch.domains.domain_axes`."""
        return dict(self.axes)
