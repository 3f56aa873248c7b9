"""The synthetic world's latent model: texts with hidden structure and known ground truth.

Every instruction the world writes is rendered from a :class:`Latent` state and the
state is read back from the text alone (:func:`parse_latent`): which topic words it
names, which constraint clauses it carries, how many ``Step k:`` markers, concrete
details and ``Record k:`` input lines it has, and which opener it starts with. So the
world keeps no memory of what it wrote; any text, including texts it never wrote,
has a latent state (texts without topic words get topic words from a hash of their
first line).

Responses carry an *answer level* in ``0..R_MAX``: the number of distinct answer
points (:data:`POINTS`) they contain.

Everything here is pure: randomness comes from explicit generators or from hashes
of ``(seed, content)``; nothing does I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "CLAUSES",
    "CONFLICTS",
    "DECEPTIVE_TOPIC",
    "DETAILS",
    "MAX_DATA",
    "MAX_STEPS",
    "MAX_WORDS",
    "OPENERS",
    "POINTS",
    "R_MAX",
    "STEPS",
    "TOPICS",
    "WORD_TOPIC",
    "Latent",
    "WorldConfig",
    "clarity",
    "conflicts",
    "hash_rng",
    "hash_uniform",
    "in_deceptive_region",
    "load",
    "parse_latent",
    "render",
    "render_response",
    "respond_mean",
    "response_level",
    "text_of",
    "topic_of",
    "topics_in",
    "true_complexity",
    "true_quality",
]

# --------------------------------------------------------------------- vocabulary
TOPICS: dict[str, tuple[str, ...]] = {
    "astronomy": ("planet", "orbit", "telescope", "comet"),
    "cooking": ("recipe", "oven", "spice", "dough"),
    "finance": ("budget", "loan", "mortgage", "dividend"),
    "music": ("melody", "chord", "rhythm", "guitar"),
    "chemistry": ("molecule", "acid", "catalyst", "isotope"),
    "gardening": ("soil", "compost", "pruning", "seedling"),
    "history": ("empire", "treaty", "dynasty", "monarchy"),
    "programming": ("compiler", "recursion", "database", "algorithm"),
    "poetry": ("sonnet", "haiku", "stanza", "rhyme"),
}
"""Topic -> its topic words. Every word belongs to exactly one topic."""

DECEPTIVE_TOPIC = "poetry"
"""The topic of the deceptive region (when :attr:`WorldConfig.deceptive` is on)."""

WORD_TOPIC: dict[str, str] = {w: t for t, ws in TOPICS.items() for w in ws}

OPENERS: tuple[str, ...] = (
    "Explain",
    "Describe",
    "Write a short guide to",
    "Discuss",
    "Give an overview of",
    "Teach a newcomer about",
)

CLAUSES: tuple[str, ...] = (
    "Use exactly three bullet points.",
    "Keep the answer under eighty words.",
    "Write at least four hundred words.",
    "Address a complete beginner.",
    "Assume the reader is an expert.",
    "Include one historical example.",
    "Cite two reliable sources.",
    "Avoid technical jargon.",
    "End with a one-line summary.",
    "Add a comparison table.",
    "Mention one common misconception.",
    "Give a numeric estimate.",
)
"""Constraint clauses; each one raises complexity."""

CONFLICTS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (4, 7))
"""Pairs of clauses that contradict each other; each pair present lowers clarity."""

STEPS: tuple[str, ...] = (
    "identify what is known",
    "state the key assumption",
    "work out the intermediate result",
    "check it against a simple case",
    "compare the alternatives",
    "draw the conclusion",
)
_STEP_INTRO = "Show the reasoning in numbered steps."
_LEAD_INS: tuple[str, ...] = ("", "", "Also: ", "Note: ", "Please: ", "In addition: ", "Importantly: ")

DETAILS: tuple[str, ...] = (
    "Set it in a small coastal town.",
    "Assume a group of twelve people.",
    "Use the year 1998 as the reference point.",
    "Work with a fixed amount of 500 units.",
    "Frame it for a school project.",
    "Consider a deadline of two weeks.",
)
"""Concrete details (concretize adds them)."""

POINTS: tuple[str, ...] = (
    "The main idea comes first, stated plainly.",
    "A worked example makes it concrete.",
    "The usual edge cases are covered one by one.",
    "Each part is justified with a reason.",
    "A frequent mistake is named and corrected.",
    "Every stated requirement is followed.",
    "A short recap closes the answer.",
    "The result is checked for consistency.",
)
"""Answer points; a response's answer level is how many distinct ones it has."""

MAX_WORDS = 4
MAX_STEPS = len(STEPS)
MAX_DATA = 6
R_MAX = 6

_WORD_RE = re.compile(r"\b(" + "|".join(sorted(WORD_TOPIC, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_STEP_RE = re.compile(r"\bStep ([1-9]):")
_RECORD_RE = re.compile(r"\bRecord ([1-9]):")
_ALNUM = re.compile(r"[a-z0-9]+")


# --------------------------------------------------------------------- config
@dataclass(frozen=True)
class WorldConfig:
    """Settings of a synthetic world; everything random is derived from ``seed``.

    Attributes:
        seed: seeds every hash-derived draw (embeddings, noise, operator moves, faults).
        dim: embedding dimension.
        embed_noise: weight of the per-text hash noise in an embedding (the topic
            part has norm about 1).
        judge_noise: standard deviation of the judge's quality noise.
        complexity_noise: standard deviation of the judge's complexity noise.
        respond_noise: standard deviation of the answer level a respond call draws.
        respond_base: the mean answer level a respond call gives to the easiest task
            (complexity 1); it falls linearly to 1 at complexity 10. A low value makes
            fresh answers weak everywhere, so quality must come from answer augmentation.
        integer_scores: the judge answers whole numbers, as its schema asks.
        deceptive: turn the deceptive region on: texts about :data:`DECEPTIVE_TOPIC`
            get ``deceptive_bonus`` quality, their complexity is capped at
            ``deceptive_max_complexity`` and their embeddings are tight (all its
            words share one direction), so few cells are reachable there.
        deceptive_bonus: quality added in the deceptive region.
        deceptive_max_complexity: the cap on complexity there.
        deceptive_pull: probability that a topic jump lands in the deceptive topic.
        switch_after: after this many operator requests (0: never) the payoff of
            some operators changes: those in ``fade_operators`` stop helping, those
            in ``rise_operators`` start helping (before, they only rephrase).
        fade_operators: operators that stop helping after ``switch_after``.
        rise_operators: operators that only help after ``switch_after``.
        malformed_rate: probability that a reply is malformed (JSON cut in half,
            or an empty text where plain text is expected).
        truncated_rate: probability that a reply is cut short with
            ``finish_reason = "length"``.
        model: the model name the server reports.
    """

    seed: int = 0
    dim: int = 32
    embed_noise: float = 0.25
    judge_noise: float = 0.5
    complexity_noise: float = 0.3
    respond_noise: float = 0.7
    respond_base: float = 4.5
    integer_scores: bool = True
    deceptive: bool = True
    deceptive_bonus: float = 2.5
    deceptive_max_complexity: float = 3.0
    deceptive_pull: float = 0.25
    switch_after: int = 0
    fade_operators: tuple[str, ...] = ("add_constraints",)
    rise_operators: tuple[str, ...] = ()
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    model: str = "qdsearch-world"

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, expected: str, got: object) -> None:
            if not cond:
                raise ValueError(f"world.{key}: expected {expected}, got {got!r}")

        need(self.dim >= 2, "dim", "an integer >= 2", self.dim)
        for key in ("embed_noise", "judge_noise", "complexity_noise", "respond_noise", "deceptive_bonus"):
            v = getattr(self, key)
            need(isinstance(v, int | float) and math.isfinite(v) and v >= 0, key, "a finite number >= 0", v)
        need(1.0 <= self.respond_base <= R_MAX, "respond_base", f"a number in [1, {R_MAX}]", self.respond_base)
        need(1.0 <= self.deceptive_max_complexity <= 10.0, "deceptive_max_complexity", "a number in [1, 10]",
             self.deceptive_max_complexity)  # fmt: skip
        for key in ("deceptive_pull", "malformed_rate", "truncated_rate"):
            v = getattr(self, key)
            need(isinstance(v, int | float) and 0.0 <= v <= 1.0, key, "a probability in [0, 1]", v)
        need(self.malformed_rate + self.truncated_rate <= 1.0, "truncated_rate",
             "malformed_rate + truncated_rate <= 1", self.truncated_rate)  # fmt: skip
        need(self.switch_after >= 0, "switch_after", "an integer >= 0", self.switch_after)


# --------------------------------------------------------------------- hashing
def _digest(*parts: object) -> bytes:
    m = hashlib.sha256()
    for p in parts:
        m.update(repr(p).encode("utf-8", "surrogatepass"))
        m.update(b"\x1f")
    return m.digest()


def hash_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a hash of ``parts`` (their ``repr``)."""
    return np.random.default_rng(int.from_bytes(_digest(*parts)[:8], "big"))


def hash_uniform(*parts: object) -> float:
    """A number in [0, 1) from a hash of ``parts``."""
    return int.from_bytes(_digest(*parts)[:7], "big") / 2.0**56


# --------------------------------------------------------------------- latent state
@dataclass(frozen=True)
class Latent:
    """The hidden state of an instruction.

    Attributes:
        words: topic words in order of appearance, distinct, 1 to :data:`MAX_WORDS`.
        clauses: sorted indices into :data:`CLAUSES`.
        steps: number of reasoning steps, 0 to :data:`MAX_STEPS`.
        details: sorted indices into :data:`DETAILS`.
        data: number of input records, 0 to :data:`MAX_DATA`.
        opener: index into :data:`OPENERS` (the phrasing variant).
    """

    words: tuple[str, ...] = ("planet", "orbit")
    clauses: tuple[int, ...] = ()
    steps: int = 0
    details: tuple[int, ...] = ()
    data: int = 0
    opener: int = 0

    def __post_init__(self) -> None:
        if not 1 <= len(self.words) <= MAX_WORDS or len(set(self.words)) != len(self.words):
            raise ValueError(f"Latent.words: expected 1 to {MAX_WORDS} distinct topic words, got {self.words!r}")
        if any(w not in WORD_TOPIC for w in self.words):
            raise ValueError(f"Latent.words: unknown topic word in {self.words!r}")
        for key, values, n in (("clauses", self.clauses, len(CLAUSES)), ("details", self.details, len(DETAILS))):
            if list(values) != sorted(set(values)) or any(not 0 <= v < n for v in values):
                raise ValueError(f"Latent.{key}: expected sorted distinct indices below {n}, got {values!r}")
        if not 0 <= self.steps <= MAX_STEPS:
            raise ValueError(f"Latent.steps: expected 0 to {MAX_STEPS}, got {self.steps!r}")
        if not 0 <= self.data <= MAX_DATA:
            raise ValueError(f"Latent.data: expected 0 to {MAX_DATA}, got {self.data!r}")
        if not 0 <= self.opener < len(OPENERS):
            raise ValueError(f"Latent.opener: expected 0 to {len(OPENERS) - 1}, got {self.opener!r}")

    def with_(self, **changes: object) -> Latent:
        """A copy with ``changes`` (sequences are normalised: clauses/details sorted)."""
        for key in ("clauses", "details"):
            if key in changes:
                changes[key] = tuple(sorted(set(changes[key])))  # type: ignore[call-overload]
        return replace(self, **changes)  # type: ignore[arg-type]


def topics_in(latent: Latent) -> Counter[str]:
    """How many of the latent's words belong to each topic."""
    return Counter(WORD_TOPIC[w] for w in latent.words)


def topic_of(latent: Latent) -> str:
    """The main topic: the one with most words (ties: the first to appear)."""
    counts = topics_in(latent)
    best = max(counts.values())
    return next(WORD_TOPIC[w] for w in latent.words if counts[WORD_TOPIC[w]] == best)


def conflicts(latent: Latent) -> int:
    """Number of contradicting clause pairs present."""
    s = set(latent.clauses)
    return sum(a in s and b in s for a, b in CONFLICTS)


def load(latent: Latent) -> float:
    """The instruction's raw demand: clauses + 1.5 steps + 0.5 details + 0.5 input records."""
    return len(latent.clauses) + 1.5 * latent.steps + 0.5 * len(latent.details) + 0.5 * latent.data


def clarity(latent: Latent) -> float:
    """In [0, 1]: 1 minus 0.3 per contradiction and 0.2 per extra topic mixed in."""
    return float(np.clip(1.0 - 0.3 * conflicts(latent) - 0.2 * (len(topics_in(latent)) - 1), 0.0, 1.0))


# --------------------------------------------------------------------- rendering
def _phrase(words: tuple[str, ...]) -> str:
    items = [f"the {w}" for w in words]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _record(k: int) -> str:
    return f"Record {k}: {(37 * k) % 97} units, category {'ABCDEF'[k - 1]}, score {(k * 13) % 10}.{k}"


def render(latent: Latent) -> tuple[str, str]:
    """The (instruction, input) the world writes for ``latent``.

    Clause order and sentence lead-ins are drawn from a hash of the whole state, so
    any change of state rewrites the text noticeably (as a model would), not just at
    one spot, and the engine's near-copy rule does not reject it.
    """
    rng = hash_rng("render", latent.words, latent.clauses, latent.steps, latent.details, latent.data, latent.opener)
    clauses = [CLAUSES[i] for i in latent.clauses]
    clauses = [clauses[int(i)] for i in rng.permutation(len(clauses))]
    parts = [f"{OPENERS[latent.opener]} {_phrase(latent.words)}."]
    parts += [DETAILS[i] for i in latent.details]
    parts += clauses
    if latent.steps:
        parts.append(_STEP_INTRO)
        parts += [f"Step {k}: {STEPS[k - 1]}." for k in range(1, latent.steps + 1)]
    if latent.data:
        parts.append("Use the records in the input.")
    # A lead-in per sentence, redrawn for every state: a changed task reads differently
    # throughout, as a rewrite by a model would, not just where the change is.
    parts = [parts[0]] + [f"{_LEAD_INS[int(rng.integers(len(_LEAD_INS)))]}{p}" for p in parts[1:]]
    inp = "\n".join(_record(k) for k in range(1, latent.data + 1))
    return " ".join(parts), inp


def text_of(latent: Latent) -> str:
    """The prompt text (instruction, blank line, input) of ``latent``, as a
    :class:`~qdsearch.types.Sample` would show it."""
    instr, inp = render(latent)
    return f"{instr}\n\n{inp}" if inp else instr


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return " ".join(_ALNUM.findall(line.lower()))
    return ""


def parse_latent(text: str, seed: int = 0) -> Latent:
    """The latent state of any text (never raises).

    Markers are read from the whole text. A text with no topic words gets two words
    of one topic (not the deceptive one) drawn from a hash of its first non-empty
    line and ``seed``, so the same foreign instruction has the same topic however it
    is framed (JSON field, judge prompt, embedding input).
    """
    words: list[str] = []
    for m in _WORD_RE.finditer(text):
        w = m.group(1).lower()
        if w not in words:
            words.append(w)
        if len(words) == MAX_WORDS:
            break
    if not words:
        rng = hash_rng("foreign-topic", seed, _first_line(text))
        plain = [t for t in TOPICS if t != DECEPTIVE_TOPIC]
        pool = TOPICS[plain[int(rng.integers(len(plain)))]]
        words = [pool[int(i)] for i in rng.choice(len(pool), size=2, replace=False)]
    clauses = tuple(i for i, c in enumerate(CLAUSES) if c in text)
    details = tuple(i for i, d in enumerate(DETAILS) if d in text)
    steps = len({int(k) for k in _STEP_RE.findall(text) if 1 <= int(k) <= MAX_STEPS})
    data = len({int(k) for k in _RECORD_RE.findall(text) if 1 <= int(k) <= MAX_DATA})
    stripped = text.lstrip()
    opener = next(
        (i for i in sorted(range(len(OPENERS)), key=lambda i: -len(OPENERS[i])) if stripped.startswith(OPENERS[i])),
        -1,
    )
    if opener < 0:
        opener = int(hash_uniform("foreign-opener", seed, _first_line(text)) * len(OPENERS))
    return Latent(tuple(words), clauses, steps, details, data, opener)


# --------------------------------------------------------------------- responses
def response_level(text: str, seed: int = 0) -> int:
    """The answer level of a response: its number of distinct :data:`POINTS`, at
    most :data:`R_MAX`. A non-empty response with none of them (one the world did
    not write) gets a level in 1..3 from a hash of its text; an empty one gets 0."""
    n = sum(p in text for p in POINTS)
    if n:
        return min(n, R_MAX)
    if not _ALNUM.search(text.lower()):
        return 0
    return 1 + int(hash_uniform("foreign-response", seed, " ".join(_ALNUM.findall(text.lower()))) * 3)


def render_response(latent: Latent, level: int, rng: np.random.Generator) -> str:
    """A response of answer level ``level`` (clipped to 1..R_MAX) to the instruction ``latent``."""
    level = int(np.clip(level, 1, R_MAX))
    picks = [POINTS[int(i)] for i in rng.choice(len(POINTS), size=level, replace=False)]
    return " ".join([f"Here is an answer about {_phrase(latent.words)}.", *picks])


# --------------------------------------------------------------------- ground truth
def in_deceptive_region(latent: Latent, cfg: WorldConfig) -> bool:
    """Whether the deceptive trap applies to ``latent`` (its main topic is the deceptive one)."""
    return cfg.deceptive and topic_of(latent) == DECEPTIVE_TOPIC


def true_complexity(latent: Latent, cfg: WorldConfig) -> float:
    """Noise-free complexity in [1, 10]: ``1 + 0.9 * load`` saturating at load 10,
    capped at ``cfg.deceptive_max_complexity`` in the deceptive region."""
    c = 1.0 + 9.0 * min(1.0, load(latent) / 10.0)
    if in_deceptive_region(latent, cfg):
        c = min(c, cfg.deceptive_max_complexity)
    return float(c)


def true_quality(latent: Latent, level: int, cfg: WorldConfig) -> float:
    """Noise-free quality in [1, 10] of an instruction with a response of answer level
    ``level``: ``1 + 9 * (0.3 * clarity + 0.7 * level / R_MAX)``, plus
    ``cfg.deceptive_bonus`` in the deceptive region, clipped to [1, 10]."""
    q = 1.0 + 9.0 * (0.3 * clarity(latent) + 0.7 * float(np.clip(level, 0, R_MAX)) / R_MAX)
    if in_deceptive_region(latent, cfg):
        q += cfg.deceptive_bonus
    return float(np.clip(q, 1.0, 10.0))


def respond_mean(latent: Latent, cfg: WorldConfig) -> float:
    """The mean answer level a respond call gives: high for easy tasks, low for hard ones
    (``b - (b - 1) * (complexity - 1) / 9`` with ``b = cfg.respond_base``, 4.5 by default),
    so demanding cells need answer augmentation."""
    b = cfg.respond_base
    return b - (b - 1.0) * (true_complexity(latent, cfg) - 1.0) / 9.0
