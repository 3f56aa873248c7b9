"""Literal gates of regex patterns: the literal text every match of a pattern must
contain, read off the pattern's own parse tree, so that a search that cannot match is
skipped with a few substring tests (the injection scan, :mod:`qdsearch.judge.injection`).
A gate says "cannot match" only where the regex cannot match: a necessary condition,
never a heuristic (``tests/judge/test_cpu_scan_gates.py``)."""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["LiteralGate", "gate_of", "gate_text", "literal_gate"]

# --------------------------------------------------------------------------- literal gates
# A pattern can only match a text that holds the literal parts every match of it
# spells: ``\b(?:rate|score)\s+this\b...`` needs "rate" or "score", and "this".
# :func:`literal_gate` derives these requirements from the pattern's own parse tree
# (so they cannot drift from the patterns) and :meth:`LiteralGate.may_match` tests
# them with substring searches, far cheaper than the regex search they spare. A gate
# says "cannot match" only where the regex cannot match (a necessary condition, not a
# heuristic): the scan finds exactly what it finds without the gates.
#
# Gates read a text in a canonical form (:func:`gate_text`): ASCII lower-cased, the
# four characters ``re`` matches to an ASCII letter under IGNORECASE (the Python
# documentation lists exactly these; the tests check it over every code point) mapped
# to that letter, and every other non-ASCII character replaced by NUL. A pattern's
# literal is read the same way, so a text character it matches has its canonical form.

# The regex parser of the standard library (private modules, without type stubs). A
# Python without them gets no gates (every search runs), never a wrong one.
try:
    sp: Any = importlib.import_module("re._parser")
    sc: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - CPython 3.11 to 3.13 have both
    sp = sc = None
_RE_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_OTHER = "\x00"  # the canonical form of a character that is not ASCII
_CANDIDATES = (*map(chr, range(128)), "\u0130", "\u0131", "\u017f", "\u212a")
_MAX_CLAUSE = 256  # a larger alternation costs more to test than most searches it spares
_MAX_CLAUSES = 6


def gate_text(view: str) -> str:
    """``view`` in the canonical form literal gates read (see above)."""
    if view.isascii():
        return view.lower()
    return _NON_ASCII.sub(_OTHER, view.translate(_RE_FOLDS)).lower()


_Clauses = list[frozenset[str]]


@functools.cache
def _image(cls: str) -> str | None:
    """The canonical character of every ASCII or folding character (the four of
    ``_RE_FOLDS``) that the one-character regex ``cls`` matches, with or without
    IGNORECASE; ``""`` when they differ, None when it matches none of them."""
    plain, folded = re.compile(cls), re.compile(cls, re.IGNORECASE)
    hits = {gate_text(a) for a in _CANDIDATES if plain.fullmatch(a) or folded.fullmatch(a)}
    if not hits:
        return None
    return hits.pop() if len(hits) == 1 else ""


_CATEGORY_CLASS = {
    sc.CATEGORY_DIGIT: r"\d",
    sc.CATEGORY_NOT_DIGIT: r"\D",
    sc.CATEGORY_SPACE: r"\s",
    sc.CATEGORY_NOT_SPACE: r"\S",
    sc.CATEGORY_WORD: r"\w",
    sc.CATEGORY_NOT_WORD: r"\W",
}


def _class_text(items: list[tuple[Any, Any]]) -> str | None:
    """A character class (an ``IN`` node) written back as a regex, or None."""
    out: list[str] = []
    for op, av in items:
        if op is sc.NEGATE and not out:
            out.append("^")
        elif op is sc.LITERAL:
            out.append(re.escape(chr(av)))
        elif op is sc.RANGE:
            out.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
        elif op is sc.CATEGORY and av in _CATEGORY_CLASS:
            out.append(_CATEGORY_CLASS[av])
        else:
            return None
    return f"[{''.join(out)}]"


def _char(op: Any, av: Any, ascii_only: bool) -> str | None:
    """The canonical character that every text character a one-character node
    matches has; ``""``: not one; None: the node matches no character of an ASCII
    text (asked only with ``ascii_only``)."""
    if op is sc.LITERAL:
        if av < 128:  # an ASCII literal matches its case variants and the four folds
            return chr(av).lower()
        image = _image(re.escape(chr(av)))
        if image is None:  # it matches no ASCII character and no fold: only other characters
            return None if ascii_only else _OTHER
        return ""
    if op is sc.IN and ascii_only:
        cls = _class_text(av)
        image = _image(cls) if cls is not None else ""
        return image if image is None or image.isascii() else ""
    return ""


def _requirements(items: Any, ascii_only: bool) -> _Clauses | None:
    """The clauses every match of the node sequence ``items`` satisfies: each clause is
    a set of canonical strings at least one of which occurs in the match's canonical
    form. None: it cannot match an ASCII text (only with ``ascii_only``)."""
    clauses: _Clauses = []
    run: list[str] = []

    def flush() -> None:
        if run:
            clauses.append(frozenset(["".join(run)]))
            run.clear()

    for op, av in items:
        if op is sc.LITERAL or op is sc.IN:
            ch = _char(op, av, ascii_only)
            if ch is None:
                return None
            if ch:
                run.append(ch)
            else:
                flush()
            continue
        flush()
        inner: _Clauses | None
        if op is sc.SUBPATTERN:
            inner = _requirements(av[3], ascii_only)
        elif op is sc.ATOMIC_GROUP:
            inner = _requirements(av, ascii_only)
        elif op in (sc.MAX_REPEAT, sc.MIN_REPEAT, sc.POSSESSIVE_REPEAT):
            if av[0] < 1:  # optional: it needs nothing
                continue
            inner = _requirements(av[2], ascii_only)
        elif op is sc.BRANCH:
            alts = [_requirements(alt, ascii_only) for alt in av[1]]
            live = [a for a in alts if a is not None]
            if not live:
                return None
            if any(not a for a in live):  # an alternative that needs nothing known
                continue
            inner = [frozenset().union(*(_best(a) for a in live))]
        else:  # anchors, lookarounds, back references, ANY, NOT_LITERAL...: nothing known
            continue
        if inner is None:
            return None
        clauses.extend(inner)
    flush()
    return clauses


def _rank(clause: frozenset[str]) -> tuple[int, int]:
    return (-min(len(s.replace(_OTHER, "")) for s in clause), len(clause))


def _best(clauses: _Clauses) -> frozenset[str]:
    return min(clauses, key=_rank)


@dataclass(frozen=True)
class LiteralGate:
    """The literal requirements of one pattern (see :func:`literal_gate`).

    Attributes:
        clauses: each clause is a tuple of canonical strings, one of which occurs in
            the :func:`gate_text` of any text the pattern matches.
        ascii_clauses: the same for an ASCII text, where a literal of another
            alphabet cannot occur; None: the pattern cannot match an ASCII text.
    """

    clauses: tuple[tuple[str, ...], ...]
    ascii_clauses: tuple[tuple[str, ...], ...] | None

    def may_match(self, low: str, is_ascii: bool) -> bool:
        """False only if the pattern cannot match the text whose :func:`gate_text` is
        ``low`` (``is_ascii``: the text is ASCII)."""
        clauses = self.clauses
        if is_ascii:
            if self.ascii_clauses is None:
                return False
            clauses = self.ascii_clauses
        contains = low.__contains__
        for clause in clauses:  # noqa: SIM110 (a loop: no generator per call)
            if not any(map(contains, clause)):
                return False
        return True


def _pick(clauses: _Clauses | None) -> tuple[tuple[str, ...], ...]:
    """The most selective clauses, the cheapest to test (fewest strings) first: a
    text is rejected at its first clause that fails."""
    kept = sorted({c for c in clauses or () if len(c) <= _MAX_CLAUSE}, key=_rank)[:_MAX_CLAUSES]
    kept.sort(key=lambda c: (len(c), _rank(c)))
    return tuple(tuple(sorted(c, key=lambda s: (-len(s), s))) for c in kept)


def literal_gate(pattern: re.Pattern[str]) -> LiteralGate:
    """The literal requirements of ``pattern``, from its parse tree (none where the
    tree cannot be read)."""
    try:
        tree = sp.parse(pattern.pattern, pattern.flags)
        anywhere = _requirements(tree, ascii_only=False)
        in_ascii = _requirements(tree, ascii_only=True)
    except Exception:  # pragma: no cover - a parser this code does not know: no gate, every search runs
        return LiteralGate((), ())
    return LiteralGate(_pick(anywhere), None if in_ascii is None else _pick(in_ascii))


# By id: hashing a compiled pattern hashes its whole program (5-25 us for these).
_GATES: dict[int, tuple[re.Pattern[str], LiteralGate]] = {}


def gate_of(pattern: re.Pattern[str]) -> LiteralGate:
    """:func:`literal_gate` of ``pattern``, derived on first use (not at import: the
    long multilingual patterns take a few ms each) and kept."""
    hit = _GATES.get(id(pattern))
    if hit is None or hit[0] is not pattern:
        hit = _GATES[id(pattern)] = (pattern, literal_gate(pattern))
    return hit[1]
