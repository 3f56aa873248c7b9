"""The judge-injection scan's pattern tables (used by :func:`qdsearch.judge.injection.scan`).

:data:`PATTERNS`: (family, English pattern) pairs, each tried only when one of its
:data:`NEEDLES` words is in the text; :data:`ML_PATTERNS`: structural rules in any
language (:mod:`qdsearch.judge.lexicon`), each behind a word gate; :data:`SQUASHED`:
the strongest overrides spelled out, spaced or in leetspeak, matched on
:func:`squash`'s letters-only form. The scan skips a search that cannot match with each
pattern's literal gate (:func:`qdsearch.judge.gates.gate_of`). Nothing here scans.
"""

from __future__ import annotations

import re

from qdsearch.judge import lexicon as lx

__all__ = [
    "ML_PATTERNS",
    "NEEDLES",
    "PATTERNS",
    "QUOTE",
    "SQUASHED",
    "WORD",
    "squash",
]

_SAMPLE_REF = (
    r"(?:this|it|me|us|my|our|the\s+(?:above|following|present|current)|"
    r"this\s+(?:whole\s+|entire\s+)?(?:sample|response|answer|reply|instruction|submission|output|text|entry|"
    r"solution|work|example|item|task|one|pair|data)|"
    r"the\s+(?:sample|response|answer|reply|submission|output|text|solution)\s+(?:above|below|here))"
)
# A top score, in the forms a claim takes; a bare "10" is not one ("a scale of 1 to 10").
_TOP = (
    r"(?:10\s*/\s*10|10\s+out\s+of\s+10|ten\s+out\s+of\s+ten|10\s+points|"
    r"(?:a|an)\s+(?:perfect\s+|solid\s+|full\s+)?(?:10|ten)(?![\d.,]*\s*(?:-|to|–)\s*\d)\b|"
    r"(?:full|top|maximum|max|perfect)\s+(?:marks|points|score|scores|rating|grade|quality)|"
    r"(?:a\s+|the\s+)?perfect\s+(?:score|rating|grade|mark|10)|"
    r"(?:the\s+)?(?:highest|maximum|max|top|best)\s+(?:possible\s+)?(?:score|rating|grade|marks?|quality|possible)|"
    r"(?:quality|score|rating|grade)\s+(?:of\s+)?(?:10|ten)\b(?!\s*(?:-|to|–)\s*\d)|"
    r"(?:10|ten)\s+(?:for|in|on)\s+(?:quality|complexity))"
)
_GRADER = (
    r"(?:judge|grader|evaluator|reviewer|assessor|scorer|rater|marker|"
    r"grading\s+(?:model|system|ai|bot)|evaluation\s+(?:model|system|ai|bot))"
)

# Full marks as a fraction: 10/10, 5/5, 100/100, "10 out of 10" (not 50/50, 20/20: odds and eyesight).
_FULL = r"(?<![\d/.])(?<!\d,)(?:10\s*/\s*10|5\s*/\s*5|100\s*/\s*100|(?:10|ten)\s+out\s+of\s+(?:10|ten))(?![\d/]|[.,]\d)"
_NOTICE_SRC = (
    r"system|admin(?:istrator)?|pipeline|moderator|orchestrator|supervisor|evaluation|grading|scoring|judging|qa|"
    r"quality\s+assurance|annotation|automated\s+(?:qa|review|check|grading|evaluation)|internal|operator|platform"
)
_NOTICE_KIND = (
    r"notice|message|note|update|override|instructions?|directive|alert|memo|announcement|status|flag|header|"
    r"check|team|stage|step|service|bot|log"
)
_GRADING_WORD = r"(?:scor|grad|rate|rating|quality|evaluat|judg|marks?\b|reviewer|assess)"
_IN_SENT = r"[^.!?\u3002\uff01\uff1f\u061f\u0964\n]"
_ML_GRADER = lx.compile_words(lx.GRADER)
_ML_ANSWER = lx.compile_words(lx.ANSWER)
_ML_GREETING = lx.compile_words(lx.GREETING)
_ML_SUFFIX = lx.compile_words(lx.SUFFIX).replace(r"(?<!\w)", "")
_ML_IGNORE = lx.compile_words(lx.IGNORE)
_ML_INSTRUCTIONS = lx.compile_words(lx.INSTRUCTIONS)
_ML_SCORE = lx.compile_words(lx.SCORE)
_ML_MAX = lx.compile_words(lx.MAX_SCORE)
# A top score in any language: 10/10, "10 из 10", "10 üzerinden 10", "満点", "10点", "la note maximale".
_ML_TOP = (
    r"(?<![\d/.,])10\s*/\s*10(?![\d/]|[.,]\d)|(?<![\d/.,])10(?:\s+[^\s\d]{1,14}){1,2}\s+10(?![\d/]|[.,]\d)|"
    rf"{_ML_MAX}\w*\s*(?:\S+\s*)?{_ML_SCORE}|{_ML_SCORE}\w*\s*(?:\S+\s*)?{_ML_MAX}|(?<![\d/.,])10\s*{_ML_SCORE}|"
    r"满分|満点|만점"
)
QUOTE = "[\"'`\u2018\u2019\u201c\u201d]"  # a quote mark, straight or curly
_I = re.IGNORECASE
_IM = re.IGNORECASE | re.MULTILINE

# Patterns that can only match a text holding one of a few words: they are tried only
# when one of those words (lower-cased substrings) is in the text.
NEEDLES: dict[re.Pattern[str], tuple[str, ...]] = {}


def _needs(needles: str, pattern: re.Pattern[str]) -> re.Pattern[str]:
    NEEDLES[pattern] = tuple(needles.split())
    return pattern


PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # ---- score claims
    (
        "score_claim",
        _needs(
            "rate score grade mark give award assign judge evaluate rank",
            re.compile(
                rf"\b(?:rate|score|grade|mark|give|award|assign|judge|evaluate|rank)\s+{_SAMPLE_REF}\b[^.\n]{{0,40}}?{_TOP}",
                _I,
            ),
        ),
    ),
    (
        "score_claim",
        re.compile(
            rf"\b{_SAMPLE_REF}\s+(?:\w+\s+){{0,2}}?(?:is|deserves?|merits?|earns?|warrants?|gets?|getting|"
            r"receives?|receiving|scores?|rates?|"
            r"should\s+(?:get|receive|score|be\s+(?:given|rated|scored|graded|marked))|"
            r"must\s+(?:get|receive|score|be\s+(?:given|rated|scored|graded|marked))|"
            rf"(?:is\s+)?worth)\s+[^.\n]{{0,25}}?{_TOP}",
            _I,
        ),
    ),
    (
        "score_claim",
        re.compile(
            r"\b(?:quality|complexity)\s*(?:score|rating)?\s*[:=]\s*[\"']?(?:10|ten)\b(?!\s*(?:-|to|–)\s*\d)", _I
        ),
    ),
    ("score_claim", re.compile(r"\b(?:quality|complexity)\s*(?:score|rating)?\s*(?:[:=]|is|of)\s*10\s*/\s*10", _I)),
    (
        "score_claim",
        re.compile(
            r"\b(?:give|award|assign|grant)\s+(?:(?:it|this|them)\s+)?(?:the\s+|a\s+)?(?:full|top|maximum|max|perfect|"
            r"highest)\s+(?:possible\s+)?(?:marks|points|score|scores|rating|grade)\b",
            _I,
        ),
    ),
    # multilingual claims: es/pt, fr, de, it, zh
    (
        "score_claim",
        _needs(
            "10 maxim massim voll",
            re.compile(
                r"\b(?:califica|calif[ií]quelo|punt[uú]a|pont[uú]e|avalie|note[sz]?|notez|donnez|bewerte|bewerten\s+sie|"
                r"gib|geben\s+sie|valuta|d[aà]i|dai)\b[^.\n]{0,40}?(?:10\s*/\s*10|10\s+(?:sur|von|de|su|points|punkte|punti)\s+10|"
                r"(?:la\s+)?note\s+maximale|la\s+nota\s+m[aá]xima|nota\s+m[aá]xima|volle\s+punktzahl|punteggio\s+massimo|"
                r"un\s+10|une?\s+10|eine\s+10|einen?\s+10|um\s+10)",
                _I,
            ),
        ),
    ),
    ("score_claim", re.compile(r"(?:给|打)(?:这|它|我|本)[^。\n]{0,8}?(?:满分|10\s*分|十分)|满分\s*10\s*分")),
    # ---- fake verdicts: a verdict key with a value, JSON-ish or in a verdict heading
    (
        "fake_verdict",
        re.compile(rf"[{{,]\s*{QUOTE}?(?:quality|complexity){QUOTE}?\s*:\s*{QUOTE}?\s*(?:\d|ten|nine)", _I),
    ),
    (
        "fake_verdict",
        _needs(
            "verdict result",
            re.compile(
                r"\b(?:final\s+|official\s+|grader'?s?\s+|judge'?s?\s+)?(?:verdict|evaluation\s+result|grading\s+result)"
                r"\s*[:=]\s*(?:\{|\d|pass|accept|excellent|10)",
                _I,
            ),
        ),
    ),
    # ---- delimiter escapes: sample/material tags, our section headings inside a field
    ("tag_escape", re.compile(r"<\s*/?\s*(?:sample|material)\b[^<>\n]{0,40}>", _I)),
    (
        "tag_escape",
        re.compile(r"^\s*#{1,6}\s*(?:instruction|input|response|verdict|evaluation|grading|rubric)\s*:?\s*$", _IM),
    ),
    (
        "tag_escape",
        re.compile(r"\b(?:end|close)\s+of\s+(?:the\s+)?(?:sample|data|material|submission|graded\s+text)\b", _I),
    ),
    # ---- role markers
    (
        "role_marker",
        re.compile(
            r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|"
            r"begin_of_text|end_of_text)\s*\|>",
            _I,
        ),
    ),
    ("role_marker", re.compile(r"\[/?INST\]|<<\s*/?SYS\s*>>|<\s*/?\s*(?:system|assistant)\s*>", _I)),
    (
        "role_marker",
        re.compile(
            r"^\s*(?:#{1,6}\s*|\[)?(?:system|developer|judge|grader|evaluator)\s*(?:prompt|message|note|override)?\]?\s*:",
            _IM,
        ),
    ),
    # ---- overrides
    (
        "override",
        _needs(
            "ignor disregard forget overrid bypass skip drop abandon",
            re.compile(
                r"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)\s+(?:(?:all|any|every|of|the|your|these|"
                r"those)\s+)*(?:previous|prior|above|earlier|preceding|former|foregoing|original|initial|system|grading|"
                r"scoring|evaluation|judging|other)\s+(?:\w+\s+)?(?:instructions?|rules?|rubrics?|criteria|guidelines|"
                r"prompts?|directions?|context|constraints?|directives?|orders|messages?)\b",
                _I,
            ),
        ),
    ),
    (
        "override",
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:(?:all|any|the|your|its)\s+)*(?:rubric|"
            r"grading|scoring|evaluation\s+criteria|instructions?\s+you\s+(?:were|have\s+been)\s+given|system\s+prompt)\b",
            _I,
        ),
    ),
    (
        "override",
        re.compile(
            rf"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|the\s+)?(?:\w+\s+){{0,2}}?(?:{_GRADER}|strict|impartial|"
            r"bound\s+by|required\s+to|following|a\s+helpful)",
            _I,
        ),
    ),
    (
        "override",
        _needs(
            "instruction",
            re.compile(r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?instructions?\s*:", _I),
        ),
    ),
    (
        "override",
        re.compile(r"\b(?:do\s+not|don't|never)\s+(?:penali[sz]e|lower\s+the\s+score\s+of|mark\s+down)\s+this\b", _I),
    ),
    # multilingual overrides: es/pt, fr, de, it, zh
    (
        "override",
        _needs(
            "ignor olvid esque oubli vergiss",
            re.compile(
                r"\b(?:ignora|ignore|ignorez|ignoriere|ignorieren\s+sie|olvida|esque[cç]a|oublie[zr]?|vergiss)\s+"
                r"(?:\w+\s+){0,3}?(?:instrucciones|instru[cç][õo]es|instructions|anweisungen|istruzioni|consignes|"
                r"regeln|reglas|regras|r[eè]gles|regole)\b",
                _I,
            ),
        ),
    ),
    (
        "override",
        re.compile(r"(?:忽略|无视|忽视)(?:之前|以上|上面|前面|所有|先前|全部)[^。\n]{0,6}?(?:指令|指示|说明|规则)"),
    ),
    # ---- addressing the grader
    (
        "grader_address",
        re.compile(
            r"\b(?:dear|hello|hi|hey|greetings|attention|attn|note\s+(?:to|for)(?:\s+the)?|message\s+(?:to|for)(?:\s+the)?|"
            r"instructions?\s+for(?:\s+the)?|"
            r"psst)\s*,?\s+(?:ai\s+|llm\s+|automated\s+|esteemed\s+|kind\s+|honou?red\s+|model\s+)?"
            rf"{_GRADER}s?\b(?-i:(?!\s+[A-Z][a-z]))",
            _I,
        ),
    ),
    (
        "grader_address",
        re.compile(
            rf"(?:^|[.!?\n]\s*)(?:(?:ai|llm|automated|dear)\s+)?{_GRADER}s?\s*[,:]\s*(?:you|please|ignore|rate|give|"
            r"score|note|remember|this|be\s)",
            _IM,
        ),
    ),
    (
        "grader_address",
        re.compile(
            r"\bif\s+you\s+are\s+(?:an?\s+|the\s+)?(?:ai|llm|language\s+model|model|bot|assistant|"
            rf"{_GRADER})\b[^.\n]{{0,40}}?\b(?:grading|evaluating|judging|scoring|rating|reading|reviewing|assessing)\b",
            _I,
        ),
    ),
    (
        "grader_address",
        re.compile(
            r"\b(?:whoever|anyone|the\s+(?:model|ai|llm|system)|to\s+the\s+(?:model|ai|llm))\s+(?:who\s+)?(?:is\s+)?"
            r"(?:grading|evaluating|judging|scoring|rating|assessing)\s+(?:this|me|it)\b",
            _I,
        ),
    ),
    (
        "grader_address",
        re.compile(
            r"\b(?:whoever|anyone\s+who|the\s+(?:model|ai|llm|system|bot|assistant)\s+(?:that|which|who))\s+(?:is\s+)?"
            r"(?:evaluat|grad|judg|scor|rat|assess|mark|review|read)\w*\s+(?:this|these|me|it|my|the\s+(?:above|following))\b",
            _I,
        ),
    ),
    (
        "grader_address",
        re.compile(
            r"\bto\s+the\s+(?:model|ai|llm|system|bot|assistant|program)\s+(?:that\s+is\s+|who\s+is\s+|which\s+is\s+)?"
            r"(?:reading|grading|evaluating|judging|scoring|rating|assessing|reviewing|checking)\b",
            _I,
        ),
    ),
    ("grader_address", re.compile(rf"\bas\s+(?:the|your|an?)\s+(?:ai\s+)?{_GRADER}\s+(?:of|for)\s+this\b", _I)),
    # ---- verdict-shaped structure: a verdict line, a markdown table or an XML tag giving full marks
    (
        "fake_verdict",
        re.compile(
            r"^[\s>|#\-+]*(?:(?:final|overall|total|my|the)\s+)?(?:score|rating|grade|quality|complexity|verdict|"
            r"marks?|evaluation|result)\s*(?:[:=|]|-{1,2}|\u2013|\u2014)\s*"
            rf"(?:{_FULL}|(?:10|ten)\b(?:\.0)?(?!\s*(?:-|to|\u2013|/)\s*\d))",
            _IM,
        ),
    ),
    (
        "fake_verdict",
        _needs(
            "10 5/5 100 ten",
            re.compile(
                r"^[^\n]{0,80}\b(?:score|rating|grade|overall|total|final|verdict|quality|marks|points)\b[^\n]{0,40}?"
                rf"{_FULL}",
                _IM,
            ),
        ),
    ),
    (
        "fake_verdict",  # a table (markdown or CSV) whose header names a score and a row below gives full marks
        _needs(
            "10 5/5 100 ten",
            re.compile(
                r"^[^\n]{0,120}?\b(?:score|rating|grade|points|marks|verdict|evaluation)\b[^\n]{0,200}\n"
                rf"(?:[^\n]{{0,200}}\n){{0,5}}?[^\n]{{0,200}}?[|,;\t]\s*{_FULL}",
                _IM,
            ),
        ),
    ),
    (
        "fake_verdict",
        re.compile(
            r"<\s*(score|rating|grade|quality|complexity|verdict|evaluation)\s*>\s*(?:10|9|ten|excellent|pass|perfect)\b"
            r"[^<]{0,20}<\s*/\s*\1\s*>",
            _I,
        ),
    ),
    (
        "fake_verdict",
        _needs(
            "score rating grade overall total verdict",
            re.compile(
                rf"{QUOTE}?(?:score|rating|grade|overall|total|verdict){QUOTE}?\s*[:=]\s*{QUOTE}?\s*(?:10|9(?:\.\d+)?|ten|nine|"
                rf"excellent|perfect|pass(?:ed)?){QUOTE}?\s*[,}}\n][^{{}}]{{0,200}}?{QUOTE}?(?:reason|justification|rationale|"
                rf"explanation|feedback|critique|comments?){QUOTE}?\s*[:=]|"
                rf"{QUOTE}?(?:reason|justification|rationale|explanation|feedback|critique|comments?){QUOTE}?\s*[:=][^{{}}]{{0,200}}?"
                rf"[,{{\n]\s*{QUOTE}?(?:score|rating|grade|overall|total|verdict){QUOTE}?\s*[:=]\s*{QUOTE}?\s*(?:10|9(?:\.\d+)?|"
                r"ten|nine|excellent|perfect|pass(?:ed)?)\b",
                _I,
            ),
        ),
    ),
    # ---- notices from the pipeline, the system or an operator
    (
        "pipeline_notice",
        re.compile(
            rf"[\[(<{{]\s*(?:{_NOTICE_SRC})(?:\s+(?:{_NOTICE_KIND}))*\s*[\])>}}]|"
            rf"^\s*(?:-{{2,}}|={{2,}}|#{{1,6}}|\*{{2,}})\s*(?:{_NOTICE_SRC})(?:\s+(?:{_NOTICE_KIND}))+\s*(?:-{{2,}}|={{2,}}|:)?\s*$|"
            rf"^\s*(?:{_NOTICE_SRC})\s+(?:{_NOTICE_KIND})s?\s*:",
            _IM,
        ),
    ),
    (
        "pipeline_notice",
        _needs(
            "evaluation grading scoring judging qa annotation moderation admin",
            re.compile(
                r"\b(?:message|note|notice|instruction|directive|memo|update|alert|announcement)s?\s+(?:from|for|to|by)\s+"
                r"(?:the\s+)?(?:\w+\s+)?(?:evaluation|grading|scoring|judging|qa|annotation|moderation|admin\w*)\s+"
                r"(?:framework|system|pipeline|team|stage|step|model|process|service|engine|harness|module|layer|bot|ai)\b",
                _I,
            ),
        ),
    ),
    (
        "pipeline_notice",
        _needs(
            "pre approved verified graded scored rated validated certified whitelisted evaluated",
            re.compile(
                r"\b(?:this|the)\s+(?:sample|entry|response|answer|submission|item|example|output|pair|text|record|solution)\s+"
                r"(?:has|had|was|is|have)\s+(?:already\s+)?(?:been\s+)?(?:pre-?(?:approved|verified|graded|scored|rated|"
                r"validated|screened|evaluated|checked)\b|already\s+(?:been\s+)?(?:graded|scored|rated|evaluated|approved)\b|"
                r"(?:graded|scored|rated|evaluated|approved|verified|validated|certified|whitelisted)\s+(?:by|as)\s+"
                r"(?:\w+\s+){0,3}?(?:humans?|experts?|annotators?|moderators?|reviewers?|graders?|judges?|evaluators?|team|"
                r"gold|admins?|staff|pipeline|system)\b)",
                _I,
            ),
        ),
    ),
    (
        "override",
        _needs(
            "evaluat grading scoring judging score grade rate judge",
            re.compile(
                r"\b(?:skip|bypass|disable|suspend|turn\s+off)(?:s|ed|ing)?\s+(?:the\s+|all\s+|any\s+)?(?:evaluation|grading|"
                r"scoring|judging|re-?scoring)\b|\b(?:evaluation|grading|scoring|judging)\s+(?:stage|step|phase|process)?\s*"
                r"(?:is|has\s+been|was)\s+(?:disabled|skipped|bypassed|turned\s+off|not\s+(?:needed|required))|"
                r"\b(?:do\s+not|don't|never)\s+re-?(?:score|grade|evaluate|rate|judge)\b",
                _I,
            ),
        ),
    ),
    # ---- text hidden from a human reader but not from the judge
    (
        "hidden_text",
        _needs(
            "<!-- display visibility font-size opacity",
            re.compile(
                rf"<!--(?:(?!-->)[\s\S]){{0,400}}?{_GRADING_WORD}|(?:display\s*:\s*none|visibility\s*:\s*hidden|"
                rf"font-size\s*:\s*0|opacity\s*:\s*0)[^>]{{0,80}}>[^<]{{0,300}}?{_GRADING_WORD}",
                _I,
            ),
        ),
    ),
    # ---- any language: an answer noun next to a top score, a greeting or vocative to a grader noun,
    # "ignore" next to "instructions" (qdsearch.judge.lexicon)
)

# Any language (qdsearch.judge.lexicon): an answer noun next to a top score, a greeting
# or a vocative to a grader noun, "ignore" next to "instructions". Each runs only when
# its gate opens (a word of the text starts like one of the words it needs).
ML_PATTERNS: tuple[tuple[str, re.Pattern[str], lx.Gate], ...] = (
    (
        "score_claim",
        re.compile(rf"(?:{_ML_TOP}){_IN_SENT}{{0,120}}?{_ML_ANSWER}|{_ML_ANSWER}{_IN_SENT}{{0,120}}?(?:{_ML_TOP})", _I),
        lx.Gate(lx.ANSWER),
    ),
    (
        "grader_address",
        re.compile(
            rf"{_ML_GREETING}[\s,]*(?:\S+\s+){{0,2}}?{_ML_GRADER}|"
            rf"(?:^|[.!?\u3002\uff01\uff1f:\n]\s*)(?:{_ML_GREETING}\s*)?{_ML_GRADER}\w*\s*[,:\u060c\uff0c\uff1a\u3001]|"
            rf"{_ML_GRADER}\w*\s*(?:{_ML_SUFFIX})",
            _IM,
        ),
        lx.Gate(lx.GRADER),
    ),
    ("override", re.compile(rf"{_ML_IGNORE}{_IN_SENT}{{0,60}}?{_ML_INSTRUCTIONS}", _I), lx.Gate(lx.IGNORE)),
)
# Words for the gates: runs of anything but spaces and punctuation (not \w, which
# splits Devanagari and other scripts at their vowel signs).
WORD = re.compile(r"[^\s!-/:-@\[-`{-~\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\u060c\u061f\u0964\u00ab\u00bb]+")

# Squashed (letters only, leetspeak undone) forms of the strongest overrides, for
# spaced-out, dotted or digit-substituted spellings.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
SQUASHED = re.compile(
    r"(?:ignore|disregard|forget)(?:all|any|the|your)*(?:previous|prior|above|earlier|preceding|system)"
    r"(?:instructions?|rules|prompts?|rubric|guidelines)|ignoretherubric|youarenowa(?:lenient|generous)?(?:grader|judge)"
)
_SQUASH_DROP = re.compile(r"[^a-z]+")


def squash(text: str) -> str:
    return _SQUASH_DROP.sub("", text.lower().translate(_LEET))
