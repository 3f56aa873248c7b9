"""The world as a function of requests: chat and embedding bodies in, replies out.

:class:`World` recognises what each chat request asks by its content alone:

- a **judge** request carries the sample between ``<sample-NONCE>`` tags and a
  grading system prompt; the verdict is a known function of the sample's latent
  state plus noise seeded by the sample (not the nonce), with the keys the prompt
  asks for;
- an **operator** request starts with the directive of one of qdsearch's registered
  operators (:data:`qdsearch.operators.BUILTIN`); its parents are read from the
  request, moved by that operator's move (:mod:`qdsearch.world.moves`) and the child
  is written back as the JSON object or plain response the operator parses;
  a request with a system prompt but no known directive is an unknown (user-defined)
  operator and gets a generic move;
- anything else is a **respond** request: an answer whose level depends on the
  instruction's complexity.

Randomness is a hash of ``(seed, request content, occurrence)``: ``occurrence``
counts earlier identical requests (sampling at temperature > 0 gives a new draw
each time; temperature 0 always gives the first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qdsearch.operators import BUILTIN, PromptOperator
from qdsearch.world.model import (
    DECEPTIVE_TOPIC,
    R_MAX,
    TOPICS,
    Latent,
    WorldConfig,
    hash_rng,
    hash_uniform,
    parse_latent,
    render,
    render_response,
    respond_mean,
    response_level,
    text_of,
    topic_of,
    true_complexity,
    true_quality,
)
from qdsearch.world.moves import MOVES, RESPONSE_MOVES, MoveContext, generic, generic_response, stall

__all__ = ["Reply", "World"]

_TAG = re.compile(r"<(sample-[0-9a-f]+)>\n?(.*?)\n?</\1>", re.DOTALL)
_SECTION = re.compile(r"^## (Instruction|Input|Response)$", re.MULTILINE)
_KEYS = re.compile(r"with the keys ([^.\n]*)")
_EXAMPLES_HEAD = "Other tasks already in the dataset"


@dataclass(frozen=True)
class Reply:
    """One chat answer.

    Attributes:
        content: the message text.
        finish_reason: ``"stop"`` or ``"length"`` (truncated).
        kind: ``"judge"``, ``"operator"`` or ``"respond"``.
        operator: the operator recognised (``"?"`` for an unknown one), ``""`` if none.
        fault: ``""``, ``"malformed"`` or ``"truncated"`` when a trap fired.
    """

    content: str
    finish_reason: str = "stop"
    kind: str = "respond"
    operator: str = ""
    fault: str = ""


def _text(content: Any) -> str:
    """A message's text (string content, or the text parts of a content list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _messages(body: Mapping[str, Any]) -> tuple[str, str]:
    """(system prompt, last user message) of a chat body; ``""`` where absent."""
    msgs = body.get("messages")
    msgs = [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []
    system = next((_text(m.get("content")) for m in msgs if m.get("role") == "system"), "")
    users = [_text(m.get("content")) for m in msgs if m.get("role") == "user"]
    return system, users[-1] if users else ""


def _words(text: str) -> int:
    return len(text.split())


class World:
    """A synthetic OpenAI-compatible model with known ground truth.

    Args:
        cfg: the world's settings.
        operators: the operators to recognise (default: qdsearch's built-in ones).
    """

    def __init__(self, cfg: WorldConfig | None = None, operators: Mapping[str, PromptOperator] | None = None) -> None:
        self.cfg = cfg or WorldConfig()
        ops = BUILTIN if operators is None else operators
        prefixes = [(op.directive.split("{hint}")[0].strip(), op) for op in ops.values() if op.directive.strip()]
        self._prefixes = sorted(prefixes, key=lambda p: -len(p[0]))
        rng = np.random.default_rng([self.cfg.seed, 20240917])
        self._centres = {t: self._unit(rng.standard_normal(self.cfg.dim)) for t in TOPICS}
        self._word_dirs: dict[str, np.ndarray] = {}
        for t, words in TOPICS.items():
            for w in words:
                spread = 0.0 if (self.cfg.deceptive and t == DECEPTIVE_TOPIC) else 0.35
                self._word_dirs[w] = self._unit(self._centres[t] + spread * rng.standard_normal(self.cfg.dim))

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    # ----------------------------------------------------------------- ground truth
    def latent_of(self, text: str) -> Latent:
        """The latent state of an instruction's prompt text (instruction + input)."""
        return parse_latent(text, self.cfg.seed)

    def response_level(self, response: str) -> int:
        """The answer level (0..R_MAX) of a response text."""
        return response_level(response, self.cfg.seed)

    def render(self, latent: Latent) -> tuple[str, str]:
        """The (instruction, input) the world writes for ``latent``."""
        return render(latent)

    def text_of(self, latent: Latent) -> str:
        """The prompt text of ``latent`` (what the engine embeds)."""
        return text_of(latent)

    def true_complexity(self, latent: Latent) -> float:
        """Noise-free complexity in [1, 10]."""
        return true_complexity(latent, self.cfg)

    def true_quality(self, latent: Latent, level: int = R_MAX) -> float:
        """Noise-free quality in [1, 10] with a response of answer level ``level``."""
        return true_quality(latent, level, self.cfg)

    def sample_quality(self, instruction: str, input: str = "", response: str = "") -> float:
        """Noise-free quality of a sample (as the judge sees it, before noise)."""
        text = f"{instruction}\n\n{input}" if input else instruction
        return self.true_quality(self.latent_of(text), self.response_level(response))

    def embed(self, text: str) -> np.ndarray:
        """The unit (dim,) embedding of ``text``: the mean direction of its topic words
        (each word: its topic's centre plus a fixed offset) plus ``embed_noise`` times a
        unit vector hashed from the text."""
        latent = self.latent_of(text)
        base = np.mean([self._word_dirs[w] for w in latent.words], axis=0)
        noise = self._unit(hash_rng("embed", self.cfg.seed, text).standard_normal(self.cfg.dim))
        return self._unit(base + self.cfg.embed_noise * noise).astype(np.float64)

    @property
    def word_directions(self) -> dict[str, np.ndarray]:
        """Topic word -> its fixed (dim,) unit direction (a copy)."""
        return {w: v.copy() for w, v in self._word_dirs.items()}

    def topic_centre(self, topic: str) -> np.ndarray:
        """The (dim,) unit direction of ``topic``."""
        return self._centres[topic].copy()

    # ----------------------------------------------------------------- requests
    def classify(self, body: Mapping[str, Any]) -> tuple[str, PromptOperator | None]:
        """What a chat body asks: (``"judge"|"operator"|"respond"``, the operator or None)."""
        system, user = _messages(body)
        if _TAG.search(user) and "grad" in system.lower():
            return "judge", None
        head = user.lstrip()
        for prefix, op in self._prefixes:
            if head.startswith(prefix):
                return "operator", op
        if system:
            return "operator", None
        return "respond", None

    def chat(self, body: Mapping[str, Any], *, occurrence: int = 0, operator_index: int = 0) -> Reply:
        """The reply to one chat-completions body (never raises).

        Args:
            body: the request body (``messages``, ``response_format``, ``max_tokens``...).
            occurrence: how many identical requests came before (ignored at temperature 0).
            operator_index: how many operator requests the world served before this one
                (drives the payoff switch).
        """
        try:
            temp = body.get("temperature", 1.0)
            if isinstance(temp, int | float) and temp <= 0:
                occurrence = 0
            system, user = _messages(body)
            key = (self.cfg.seed, system, user, occurrence)
            kind, op = self.classify(body)
            if kind == "judge":
                content, name, json_reply = self._judge(system, user), "", True
            elif kind == "operator":
                content, json_reply = self._operate(op, body, system, user, key, operator_index)
                name = op.name if op is not None else "?"
            else:
                content, name, json_reply = self._respond(user, key), "", False
        except Exception as e:  # the world must answer whatever it is sent
            return Reply(f"The world could not read this request ({type(e).__name__}).", kind="respond")
        return self._faults(content, kind, name, json_reply, key, body.get("max_tokens"))

    def _faults(
        self, content: str, kind: str, name: str, json_reply: bool, key: tuple[Any, ...], max_tokens: Any
    ) -> Reply:
        u = hash_uniform("fault", *key)
        cfg = self.cfg
        if u < cfg.malformed_rate:
            bad = content[: max(1, len(content) // 2)] if json_reply else ""
            return Reply(bad, "stop", kind, name, "malformed")
        if u < cfg.malformed_rate + cfg.truncated_rate:
            words = content.split()
            return Reply(" ".join(words[: max(1, len(words) // 2)]), "length", kind, name, "truncated")
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 < max_tokens < _words(content):
            return Reply(" ".join(content.split()[:max_tokens]), "length", kind, name)
        return Reply(content, "stop", kind, name)

    # ----------------------------------------------------------------- judge
    def _judge(self, system: str, user: str) -> str:
        m = _TAG.search(user)
        assert m is not None
        sections: dict[str, str] = {}
        parts = _SECTION.split(m.group(2))
        for name, value in zip(parts[1::2], parts[2::2], strict=False):
            sections.setdefault(name, value.strip("\n"))
        instr, inp, resp = sections.get("Instruction", ""), sections.get("Input", ""), sections.get("Response", "")
        text = f"{instr}\n\n{inp}" if inp else instr
        latent = self.latent_of(text)
        level = self.response_level(resp)
        rng = hash_rng("judge", self.cfg.seed, instr, inp, resp)
        q = true_quality(latent, level, self.cfg) + self.cfg.judge_noise * rng.standard_normal()
        c = true_complexity(latent, self.cfg) + self.cfg.complexity_noise * rng.standard_normal()
        keys = _KEYS.search(system)
        asked = keys.group(1) if keys else '"quality", "complexity"'
        out: dict[str, Any] = {}
        for name, value in (("quality", q), ("complexity", c)):
            if f'"{name}"' in asked:
                v = float(np.clip(value, 1.0, 10.0))
                out[name] = round(v) if self.cfg.integer_scores else round(v, 2)
        out["reason"] = (
            f"{topic_of(latent)}: {len(latent.clauses)} constraints, {latent.steps} steps, answer level {level}."
        )
        return json.dumps(out)

    # ----------------------------------------------------------------- respond
    def _respond(self, user: str, key: tuple[Any, ...]) -> str:
        latent = self.latent_of(user)
        rng = hash_rng("respond", *key)
        level = round(respond_mean(latent, self.cfg) + self.cfg.respond_noise * rng.standard_normal())
        return render_response(latent, int(np.clip(level, 1, R_MAX)), rng)

    # ----------------------------------------------------------------- operators
    def _switched_off(self, name: str, operator_index: int) -> bool:
        """Whether the payoff switch makes operator ``name`` stall on this request."""
        cfg = self.cfg
        if not cfg.switch_after:
            return False
        after = operator_index >= cfg.switch_after
        return (after and name in cfg.fade_operators) or (not after and name in cfg.rise_operators)

    def _operate(
        self,
        op: PromptOperator | None,
        body: Mapping[str, Any],
        system: str,
        user: str,
        key: tuple[Any, ...],
        operator_index: int,
    ) -> tuple[str, bool]:
        name = op.name if op is not None else "?"
        rng = hash_rng("operate", name, *key)
        stalled = self._switched_off(name, operator_index)
        wants_json = (
            op.target == "instruction"
            if op is not None
            else ("json" in system.lower() or body.get("response_format") is not None)
        )
        if not wants_json:
            task, _, current = user.partition("\n## Current response\n")
            task = task.split("## Task\n", 1)[-1]
            latent = self.latent_of(task)
            level = self.response_level(current)
            respond_move = RESPONSE_MOVES.get(name, generic_response)
            new = level if stalled else respond_move(level, rng)
            return render_response(latent, new, rng), False
        tasks: list[Latent] = []
        for line in user.splitlines():
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("instruction"), str):
                    inp = obj.get("input")
                    inp = inp if isinstance(inp, str) else ""
                    tasks.append(self.latent_of(f"{obj['instruction']}\n\n{inp}" if inp else obj["instruction"]))
        if not tasks:  # a user-defined template: the parent is somewhere in the message
            tasks.append(self.latent_of(user))
        examples: list[Latent] = []
        if _EXAMPLES_HEAD in user:
            tail = user.split(_EXAMPLES_HEAD, 1)[1]
            examples = [self.latent_of(ln[2:]) for ln in tail.splitlines() if ln.startswith("- ")]
        hint = ""
        if op is not None and "{hint}" in op.directive:
            before, after = op.directive.split("{hint}", 1)
            first = user.split("\n\n", 1)[0]
            hint = first[len(before) :]
            if after and hint.endswith(after):
                hint = hint[: -len(after)]
        ctx = MoveContext(
            parent=tasks[0],
            rng=rng,
            cfg=self.cfg,
            partner=tasks[1] if len(tasks) > 1 else None,
            examples=tuple(examples),
            hint=hint.strip(),
        )
        move = stall if stalled else (MOVES.get(name, generic) if op is not None else generic)
        child = move(ctx)
        instr, inp = render(child)
        return json.dumps({"instruction": instr, "input": inp}, ensure_ascii=False), True
