"""The fast complexity features (case-sensitive patterns on folded text, one search
per matching clause) give exactly what the original per-clause IGNORECASE code gave.

The reference below is a frozen copy of ``qdsearch/descriptors/complexity.py``'s
patterns and ``complexity_features`` / ``count_constraints`` before the speed-up."""

from __future__ import annotations

import math
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.descriptors import complexity as cx
from qdsearch.types import Sample

# --------------------------------------------------------------------------- frozen reference
_REF_I = re.IGNORECASE

_REF_CONSTRAINT = re.compile(
    r"\b(?:must|should|shall|need(?:s)? to|has to|have to|make sure|ensure|be sure|required?|requirement|"
    r"at least|at most|no more than|no less than|fewer than|less than|more than|up to|exactly|maximum|minimum|"
    r"under \d+|within \d+|limit(?:ed)? to|keep it|keep (?:the|your)|only|without|avoid|never|do not|don't|"
    r"cannot|can't|must not|refrain|exclude|except|include|including|mention|cite|reference|incorporate|"
    r"use (?:a|an|the|only|exactly|at|no|simple|formal|plain|one|two|three|\d+)|written (?:in|for|as)|"
    r"write (?:it )?(?:in|for|as)|in the (?:style|voice|tone) of|tone|audience|suitable for|aimed at|"
    r"for (?:a|an) (?:beginner|child|expert|\d+-year-old)|begin with|start with|end with|finish with|"
    r"each|every|per|rhym\w*|alliterat\w*|acrostic|palindrom\w*|deadline|budget of|assume)\b",
    _REF_I,
)
_REF_FORMAT = re.compile(
    r"\b(?:json|yaml|xml|csv|markdown|html|latex|table|tabular|bullet(?:ed)?(?: points?)?|numbered|list|"
    r"headings?|sections?|columns?|code block|pseudo-?code|diagram|outline|template|format(?:ted)?|"
    r"\d+ (?:words?|sentences?|paragraphs?|lines?|items?|points?|bullets?|examples?|steps?|options?|tips?|"
    r"reasons?|ideas?|questions?|characters?|syllables?|stanzas?)|"
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten) (?:words?|sentences?|paragraphs?|lines?|items?|"
    r"points?|bullets?|examples?|steps?|options?|tips?|reasons?|ideas?|questions?|stanzas?)|"
    r"haiku|sonnet|limerick|title|summary table|subject line)\b",
    _REF_I,
)
_REF_STEPS = re.compile(
    r"\b(?:step[- ]by[- ]step|steps?|explain (?:why|how)|justify|prove|derive|show (?:your|the) (?:work|reasoning)|"
    r"reason(?:ing)?|walk (?:me |the reader )?through|compare|contrast|analy[sz]e|evaluate|assess|critique|"
    r"trade-?offs?|pros and cons|advantages and disadvantages|first(?:ly)?|second(?:ly)?|then|next|finally|"
    r"afterwards|followed by|before|after that|in order|sequence|plan|strategy|optimi[sz]e|debug|design|"
    r"calculate|compute|estimate|solve|determine|deduce|infer)\b",
    _REF_I,
)
_REF_TASK_VERB = re.compile(
    r"(?:^|[.!?;:,]\s*|\b(?:and|then|also|first|next|finally|and then)\s+)(?:please )?(?:write|list|explain|describe|compare|give|provide|"
    r"calculate|compute|summari[sz]e|translate|classify|identify|suggest|propose|design|create|draft|generate|"
    r"rewrite|analy[sz]e|evaluate|prove|derive|estimate|find|name|outline|discuss|convert|extract|implement|"
    r"solve|recommend|rank|predict|justify|argue|plan|compose|define|illustrate)\b",
    _REF_I,
)
_REF_TECH = re.compile(
    r"(?:\d+\s*[-+*/^=<>%]\s*\d+|[=<>]\s*-?\d|\b\d+(?:\.\d+)?\s*(?:km|kg|m|cm|mm|s|ms|h|hours?|minutes?|%|"
    r"dollars?|usd|eur)\b|\b(?:def|return|class|function|select|from|where|join|import|lambda|array|"
    r"algorithm|complexity|equation|integral|derivative|matrix|vector|probability|theorem|lemma|variable|"
    r"regex|api|sql|python|javascript|java|c\+\+|rust|recursion|big-o|o\(n)\b|[{}\[\];]|\$[^$]+\$)",
    _REF_I,
)
_REF_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+|,\s*(?=(?:and |but |then |while |using |without |with |in )?\w)")
_REF_ENUMERATED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)


def ref_count_constraints(text: str) -> int:
    return sum(1 for c in _ref_clauses(text) if _REF_CONSTRAINT.search(c))


def _ref_clauses(text: str) -> list[str]:
    return [c for c in _REF_CLAUSE_SPLIT.split(text) if c and c.strip()]


def ref_complexity_features(sample: Sample) -> dict[str, float]:
    instr = sample.instruction or ""
    clauses = _ref_clauses(instr)
    constraints = sum(1 for c in clauses if _REF_CONSTRAINT.search(c))
    formats = sum(1 for c in clauses if _REF_FORMAT.search(c))
    steps = sum(1 for c in clauses if _REF_STEPS.search(c)) + 0.5 * len(_REF_ENUMERATED.findall(instr))
    questions = instr.count("?")
    verbs = len(_REF_TASK_VERB.findall(instr))
    subq = max(0, questions + verbs - 1)
    inp = sample.input or ""
    inputs = 0.0
    if inp.strip():
        inputs = 1.0 + min(2.0, math.log1p(len(inp.split())) / math.log(20.0))
    if "```" in instr or "\n    " in instr:
        inputs += 1.0
    technical = min(4.0, 0.5 * len(_REF_TECH.findall(instr + "\n" + inp)))
    return {
        "constraints": float(constraints),
        "formats": float(formats),
        "steps": float(steps),
        "subquestions": float(min(subq, 6)),
        "inputs": float(inputs),
        "technical": float(technical),
    }


# --------------------------------------------------------------------------- texts
REALISTIC = [
    "What is the capital of Australia?",
    "Explain how a bicycle gear system works.",
    "Write a haiku about autumn rain. Do not use the word 'leaves'.",
    "Summarize the following article in at most 50 words, and avoid technical jargon.",
    "Give me three ideas for a rainy Sunday with kids; each must cost less than $20.",
    "Compare Python and JavaScript for backend development. Use a table with 3 columns: feature, Python, "
    "JavaScript. Finally, recommend one for a beginner.",
    "Write a Python function that checks whether a string is a palindrome. Explain why your solution is O(n) "
    "and include two test cases.",
    "Draft an email to my landlord about a broken heater.\n- Keep it polite\n- Mention the date it broke\n"
    "- Ask for a repair within 3 days",
    "1. List five causes of the French Revolution.\n2. Rank them by importance.\n3. Justify the ranking.",
    "Solve for x: 3x + 5 = 20. Show your work step by step.",
    "Translate the sentence below into French, then into German. Keep the tone formal.",
    "Describe the water cycle for a 10-year-old, in no more than 5 sentences.",
    "Pretend you are a medieval knight and introduce yourself. Begin with a greeting and end with a question.",
    "Calculate the monthly payment on a $200,000 loan at 5% interest over 30 years, and estimate the total "
    "interest paid.",
    "Design a REST API for a to-do app. Provide the endpoints as JSON, with an example request for each.",
    "Write a limerick about a cat who loves lasagna. It must rhyme and should be funny!",
    "Why do cats purr? Is it always a sign of happiness? What else could it mean?",
    "Create a 7-day meal plan for a vegetarian athlete. Format it as a markdown table; include calories per day.",
    "Analyze the following code and find the bug:\n```\ndef add(a, b):\n    return a - b\n```",
    "Outline a strategy to reduce customer churn by 15% within 6 months. First assess the current situation, "
    "then propose three initiatives, and finally estimate their cost.",
    "Rewrite this paragraph in the style of Ernest Hemingway, using short sentences only.",
    "Explain the difference between a derivative and an integral, with one example equation each.",
    "Suggest a name for my bakery. It should be catchy, under 3 words, and not include the word 'bread'.",
    "Write a SQL query that selects all users from the table users where age > 30, ordered by name.",
    "How many piano tuners are there in Chicago? Walk me through your reasoning and state every assumption.",
    "Compose a sonnet about the sea in iambic pentameter, with an acrostic spelling OCEAN.",
    "Give a bulleted list of pros and cons of remote work, at least 4 bullets each side.",
    "  Please describe your ideal weekend, but don't mention work.  ",
    "Evaluate the argument below: is it valid? Identify any logical fallacies, and cite the premise they attack.",
    "Write a short story (around 300 words) about a lighthouse keeper who finds a message in a bottle; the "
    "ending must be hopeful.",
    "Prove that the square root of 2 is irrational. Use a proof by contradiction, and write it in LaTeX.",
    "Classify each of these animals as mammal, reptile or bird: dolphin, gecko, penguin, bat.",
    "Generate 10 interview questions for a junior data analyst, numbered, with a one-line rationale for each.",
    "Explique pourquoi le ciel est bleu, en trois phrases au maximum, sans utiliser de jargon.",
    "Erkläre, wie ein Kühlschrank funktioniert – kurz und für Kinder verständlich.",
    "Объясни, как работает фотосинтез, и приведи 2 примера.",
    "用三句话解释什么是机器学习，并举一个例子。",
    "Write a tweet (max 280 characters) announcing our café’s new “Pumpkin Spice” latte — no hashtags.",
    "THE ANSWER MUST BE IN ALL CAPS. LIST THREE PLANETS AND EXPLAIN WHY PLUTO IS NOT ONE.",
    "Debug this JavaScript: `const x = [1, 2, 3]; x.map(i => i * 2)` returns undefined; why? Then fix it.",
    "Estimate how long it takes to drive 450 km at 90 km/h, and convert the answer to minutes.",
    "Plan a 3-day itinerary for Kyoto.\n\nDay 1: temples\nDay 2: food\nDay 3: nature\n\nKeep each day under "
    "100 words and avoid tourist traps.",
    "İstanbul'da yapılacak 5 şeyi listele; her biri için kısa bir açıklama yaz. ſome KELVIN ſtep by ſtep.",
]
EDGE = [
    "",
    " ",
    "   \t  ",
    "\n",
    "\n\n\n",
    " \n \t\n ",
    ".",
    "...",
    ",",
    ", , ,",
    "?!?",
    ";;;",
    "- * •",
    "```",
    "\n    ",
    "$",
    "$$",
    "{}",
    "=",
    "1.",
    "1)",
    "-",
    "•",
    "\u00a0",
    "\u2028",
    "ſ",
    "\u212a",
    "İ",
    "ı",
    "Σ",
]

# Words and phrases of the patterns' alternations, and what else realistic texts hold.
_PATTERN_WORDS = sorted(
    {
        w
        for p in (cx._CONSTRAINT, cx._FORMAT, cx._STEPS, cx._TASK_VERB, cx._TECH)
        for w in re.findall(r"[a-z]{2,}", p.pattern)
    }
)
_PHRASES = [
    "need to",
    "needs to",
    "has to",
    "make sure",
    "be sure",
    "at least",
    "at most",
    "no more than",
    "fewer than",
    "under 50",
    "within 3",
    "limited to",
    "keep it",
    "keep the",
    "do not",
    "don't",
    "can't",
    "must not",
    "use a",
    "use 3",
    "use simple",
    "written in",
    "write it in",
    "write for",
    "in the style of",
    "in the voice of",
    "suitable for",
    "aimed at",
    "for a beginner",
    "for an expert",
    "for a 12-year-old",
    "begin with",
    "end with",
    "rhyming",
    "alliteration",
    "palindromes",
    "budget of",
    "bullet points",
    "bulleted",
    "code block",
    "pseudo-code",
    "pseudocode",
    "formatted",
    "5 words",
    "3 paragraphs",
    "two sentences",
    "ten tips",
    "summary table",
    "subject line",
    "step-by-step",
    "step by step",
    "explain why",
    "explain how",
    "show your work",
    "show the reasoning",
    "walk me through",
    "walk the reader through",
    "trade-offs",
    "tradeoff",
    "pros and cons",
    "advantages and disadvantages",
    "firstly",
    "secondly",
    "followed by",
    "after that",
    "in order",
    "analyse",
    "optimize",
    "and then write",
    "then list",
    "also explain",
    "please give",
    "10 km",
    "3.5 kg",
    "20%",
    "5 hours",
    "100 usd",
    "2 + 2",
    "x = 3",
    "a<b",
    "< -1",
    "c++",
    "big-o",
    "o(n)",
    "$x^2$",
    "[1, 2]",
    "{a}",
    "a; b",
    "x=-4",
]
_OTHER = [
    "the",
    "a",
    "of",
    "and",
    "cat",
    "mustard",
    "reach",
    "paper",
    "commonly",
    "explain",
    "name",
    "é",
    "café",
    "naïve",
    "straße",
    "Σίσυφος",
    "İnclude",
    "ınclude",
    "ſhould",
    "\u212aeep",
    "\u212am",
    "٣",
    "①",
    "Ⅻ",
    "x²",
    "“quote”",
    "’",
    "—",
    "–",
    "…",
    "中文",
    "мы",
    "_",
    "__init__",
    "e-mail",
    "x1",
    "1st",
]
_SEPS = [
    " ",
    " ",
    " ",
    "  ",
    ", ",
    ",",
    ". ",
    ".",
    "? ",
    "! ",
    "; ",
    ";",
    ": ",
    ":",
    "\n",
    "\n\n",
    "\n- ",
    "\n* ",
    "\n• ",
    "\n1. ",
    "\n2) ",
    "\n    ",
    "\t",
    "```",
    "-",
    "/",
    "'",
    '"',
    "(",
    ")",
    "",
    "\u00a0",
    "\r\n",
    ", and ",
    ", but ",
    ", then ",
    ", using ",
    ", with ",
    ", in ",
    " = ",
    " + ",
    "$",
]
_CASES = [str.lower, str.lower, str.upper, str.capitalize, str.title, str.swapcase]

_token = st.builds(
    lambda w, case: case(w),
    st.one_of(
        st.sampled_from(_PATTERN_WORDS),
        st.sampled_from(_PHRASES),
        st.sampled_from(_OTHER),
        st.integers(0, 1000).map(str),
    ),
    st.sampled_from(_CASES),
)
texts = st.lists(st.tuples(_token, st.sampled_from(_SEPS)), max_size=40).map(lambda ts: "".join(a + b for a, b in ts))
noise = st.text(
    alphabet=st.one_of(
        st.sampled_from(" \n\t.,;:!?-*•$=<>{}[]()'\"`/+%^0123456789_ſıİ\u212aΣσς"),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=80,
)


def _same(instruction: str, inp: str = "") -> None:
    s = Sample("x", instruction, input=inp)
    assert cx.complexity_features(s) == ref_complexity_features(s), (instruction, inp)
    assert cx.count_constraints(instruction) == ref_count_constraints(instruction), instruction


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("text", REALISTIC + EDGE)
def test_same_features_on_realistic_and_edge_texts(text: str) -> None:
    _same(text)
    _same(text, text)
    _same(text.upper())
    _same(text, "Input: " + text.lower())


@settings(max_examples=600, deadline=None, derandomize=True)
@given(texts, st.one_of(st.just(""), texts))
def test_same_features_on_pattern_word_texts(instruction: str, inp: str) -> None:
    _same(instruction, inp)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.one_of(texts, noise), min_size=1, max_size=3).map("".join), st.one_of(st.just(""), noise))
def test_same_features_on_noisy_texts(instruction: str, inp: str) -> None:
    _same(instruction, inp)


def test_same_features_on_realistic_compositions() -> None:
    for i, a in enumerate(REALISTIC):
        b = REALISTIC[(i * 7 + 3) % len(REALISTIC)]
        _same(a + " " + b, a)
        _same(a + "\n- " + b.lower() + "\n- Keep it under 80 words.")


def test_fast_patterns_are_the_reference_patterns_without_ignorecase() -> None:
    pairs = [
        (cx._CONSTRAINT_F, _REF_CONSTRAINT),
        (cx._FORMAT_F, _REF_FORMAT),
        (cx._STEPS_F, _REF_STEPS),
        (cx._TASK_VERB_F, _REF_TASK_VERB),
        (cx._TECH_F, _REF_TECH),
    ]
    for fast, ref in pairs:
        assert fast.pattern == ref.pattern and not fast.flags & re.IGNORECASE
        assert not re.search(r"[A-Z]", re.sub(r"\\.", "", fast.pattern))  # every literal is lower case
    assert cx._CLAUSE_SPLIT.pattern == _REF_CLAUSE_SPLIT.pattern


def test_folded_text_matches_like_ignorecase_at_every_code_point() -> None:
    """``_folded`` keeps length, ``\\w``/``\\d``/``\\s`` and turns a character into an
    ASCII letter exactly where IGNORECASE matches it to that letter, for every code
    point (each alone, and all in one text, where ``lower()`` sees final sigmas)."""
    chars = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    for text in (chars, chars[::-1]):
        low = cx._folded(text)
        assert len(low) == len(text)
        for cls in (r"\w", r"\d", r"\s"):
            assert [m.start() for m in re.finditer(cls, low)] == [m.start() for m in re.finditer(cls, text)], cls
        for letter in "abcdefghijklmnopqrstuvwxyz":
            hits = [m.start() for m in re.finditer(letter, text, re.IGNORECASE)]
            assert [m.start() for m in re.finditer(letter, low)] == hits, letter
        # every other ASCII character stays itself, and no other character becomes one
        ascii_low = [(i, c) for i, c in enumerate(low) if c.isascii() and not "a" <= c <= "z"]
        assert ascii_low == [(i, c) for i, c in enumerate(text) if c.isascii() and not c.isalpha()]
    assert all(len(cx._folded(c)) == 1 for c in "\u0130\u0131\u017f\u212aΣ")


def test_clause_separators_are_the_split_points() -> None:
    for text in REALISTIC + EDGE:
        spans = [m.span() for m in _REF_CLAUSE_SPLIT.finditer(text)]
        assert [m.span() for m in cx._CLAUSE_SEP.finditer(text)] == spans
        assert cx._separators(text) == [a for a, _ in spans] + [len(text)]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(texts, noise))
def test_clause_separators_on_generated_texts(text: str) -> None:
    assert [m.span() for m in cx._CLAUSE_SEP.finditer(text)] == [m.span() for m in _REF_CLAUSE_SPLIT.finditer(text)]
