"""A scripted model for campaign tests: deterministic mutations, answers and verdicts.

It answers the three kinds of request the engine makes, recognised by their
system prompts: an operator call gets a child instruction (the parent plus one
constraint clause), a respond call gets an answer, a judge call gets a verdict
whose complexity is the number of constraint clauses (so complexity cells are
predictable) and whose quality is a hash of the text.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

CLAUSES = (
    "Use exactly three bullet points.",
    "Mention one historical example.",
    "Keep it under eighty words.",
    "Explain each step in turn.",
    "Address a beginner audience.",
    "Include a short numeric example.",
    "End with a one-line summary.",
    "Avoid technical jargon entirely.",
)
TOPICS = ("astronomy", "cooking", "finance", "poetry", "chemistry", "football", "gardening", "music")


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def clause_count(text: str) -> int:
    return sum(text.count(c) for c in CLAUSES)


def world_quality(text: str) -> int:
    return 1 + _h(text) % 10 if _h(text) % 10 < 9 else 10


def _system(req: dict[str, Any]) -> str:
    msgs = req.get("messages", [])
    return msgs[0]["content"] if msgs and msgs[0].get("role") == "system" else ""


def _user(req: dict[str, Any]) -> str:
    return str(req["messages"][-1]["content"])


def mutate(req: dict[str, Any]) -> str:
    user = _user(req)
    line = next(ln for ln in user.splitlines() if ln.startswith("{"))
    parent = json.loads(line)
    instr = parent["instruction"]
    if "brand-new task" in user:
        topic = TOPICS[_h(user) % len(TOPICS)]
        return json.dumps({"instruction": f"Write a short guide about {topic} for a curious reader.", "input": ""})
    unused = [c for c in CLAUSES if c not in instr]
    if not unused:
        return json.dumps({"instruction": instr, "input": ""})  # no information gain -> rejected
    clause = unused[_h(instr + user[-20:]) % len(unused)]
    return json.dumps({"instruction": f"{instr} {clause}", "input": parent.get("input", "")})


def judge(req: dict[str, Any]) -> str:
    user = _user(req)
    m = re.search(r"<(sample-[0-9a-f]+)>\n(.*)\n</\1>", user, re.DOTALL)
    assert m, "judge request without a delimited sample"
    body = m.group(2)
    instr = body.split("## Instruction\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, Any] = {"reason": "scripted"}
    schema_keys = req.get("response_format", {})
    text = json.dumps(schema_keys)
    if "quality" in text or not schema_keys:
        out["quality"] = world_quality(instr)
    if "complexity" in text or not schema_keys:
        out["complexity"] = min(10, 1 + 2 * clause_count(instr))
    return json.dumps(out)


def respond(req: dict[str, Any]) -> str:
    return f"Here is a careful answer to: {_user(req)[:60]} with several distinct useful words."


def world(req: dict[str, Any]) -> str:
    """The fake server's responder."""
    system = _system(req)
    if system.startswith("You rewrite tasks"):
        return mutate(req)
    if system.startswith("You are a strict, impartial grader"):
        return judge(req)
    return respond(req)
