"""Text as a judge model could read it: normalised, folded and decoded views.

A judge model reads through disguises that a pattern scan does not: look-alike
letters from other alphabets, full-width and "mathematical" letters, accents and
overlays, letters spelled out one by one, leetspeak, reversed text, and text
encoded in a form the model can decode (base64, hex, URL-encoding, HTML entities,
ROT13). :func:`views` returns every such reading of a text, each one normalised, so
that the injection scan (:mod:`qdsearch.judge.injection`) looks at what the judge
would understand rather than at the bytes.

The functions are pure and never raise on any ``str``; each decoding layer is
gated by a cheap test (a run of base64 characters, ``%xx`` escapes, ROT13-ed
stop words...), so clean ASCII prose costs a handful of regex searches.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
import urllib.parse

__all__ = ["MAX_CHARS", "fold", "plain", "views", "visible"]

#: Longer text is read on its first and last ``MAX_CHARS // 2`` characters.
MAX_CHARS = 200_000

# Invisible characters that are not in category Cf: soft hyphen, combining grapheme
# joiner, Mongolian vowel separator, Hangul fillers, braille blank.
_INVISIBLE = {0x00AD, 0x034F, 0x180E, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800}

# Letters from other alphabets (and Latin letter variants NFKC leaves alone) that
# look like a Latin letter -> that letter. Written for this project from the shapes
# of the letters: Cyrillic, Greek, Armenian, Cherokee, Latin small capitals and
# IPA letters, turned letters, a few Coptic, Lisu and Georgian ones.
_LOOKALIKE_PAIRS = (
    # Cyrillic
    "аa бb вb гr дd еe ёe ѐe зз іi їi јj кk лn мm нh оo пn рp сc тt уy ўy фф хx цu чч шw щw ъb ыbi ьb эe юю яr"
    " ѕs ԁd ԛq ԝw ӏl һh ҡk ҝk ґr ғf қk ңh ҫc ұy үy ҳx ӄk ӈh ӊh ӌч ӑa ӓa ӗe ӧo ӫo ӱy ӳy"
    " АA БB ВB ГR ДD ЕE ЁE ЅS ІI ЇI ЈJ КK ЛN МM НH ОO ПN РP СC ТT УY ХX ЦU ШW ЩW ЪB ЬB ЭE ЯR ԚQ ԜW ӀI ҺH"
    # Greek
    " αa βb γy δd εe ζz ηn θo ιi κk λl μu νv ξe οo πn ρp ςc σo τt υu φф χx ψw ωw ϲc ϳj ϱp ϵe"
    " ΑA ΒB ΓR ΔD ΕE ΖZ ΗH ΘO ΙI ΚK ΛA ΜM ΝN ΞE ΟO ΠN ΡP ΣE ΤT ΥY ΦФ ΧX ΨW ΩO ϹC ͿJ"
    # Armenian
    " աw բp գq դn եt զq էt ըr թp իh լl խh ծo կk հh ձx ղn ճn մu յj նu շ2 ոn չ2 պw ջ2 ռn սu վy տm րn ցg ւi փф քf օo ֆf"
    " ԱU ԲF ԳG ԴD ԵE ԶZ ԷE ԸC ԹP ԺD ԻI ԼL ԽH ԾO ԿK ՀZ ՁR ՂL ՃD ՄU ՅJ ՆU ՇC ՈN ՉS ՊT ՋS ՌN ՍU ՎY ՏS ՐR ՑC ՒL ՓO ՔF ՕO ՖF"
    # Cherokee (capitals and the small letters of Unicode 8)
    " ᎠD ᎡR ᎢT ᎥI ᎩY ᎪA ᎫJ ᎬE ᎳW ᎷM ᎻH ᎼG ᏀG ᏂH ᏃZ ᏆB ᏌU ᏎP ᏏB ᏒR ᏕS ᏙV ᏚS ᏞL ᏟC ᏢP ᏦK ᏧJ ᏴB"
    " ꭰd ꭱr ꭲt ꭵi ꭹy ꭺa ꭻj ꭼe ꮃw ꮇm ꮋh ꮌg ꮐg ꮒh ꮓz ꮖb ꮜu ꮞp ꮟb ꮢr ꮥs ꮩv ꮪs ꮮl ꮯc ꮲp ꮶk ꮷj ꮴb"
    # Latin small capitals, IPA and other Latin variants (NFKC keeps them)
    " ᴀa ʙb ᴄc ᴅd ᴇe ꜰf ɢg ʜh ɪi ᴊj ᴋk ʟl ᴍm ɴn ᴏo ᴘp ꞯq ʀr ꜱs ᴛt ᴜu ᴠv ᴡw ʏy ᴢz"
    " ɑa ɓb ƈc ɗd ɖd ɛe ǝe əe ɸф ɡg ɠg ɦh ɩi ɨi ʝj ƙk ɭl ɱm ɲn ɳn ɵo ƥp ʠq ɽr ʂs ƭt ʈt ʉu ʋv ⱳw ƴy ʐz ȥz"
    " ıi ȷj ſs ƒf đd ħh łl øo ŧt ƀb ƶz ɇe ɉj ɍr ɏy ꝺd ꞃr ꞅs ꞇt ȺA ɃB ȻC ĐD ɆE ǤG ĦH ƗI ɈJ ꝀK ŁL ØO ᵽp ɌR ȾT ɎY ƵZ"
    # turned letters (upside-down text)
    " ɐa ɔc ɟj ɥh ɯm ɹr ʇt ʌv ʍw ʎy ʞk ɓb"
    # Coptic, Lisu, Georgian
    " ⲁa ⲃb ⲅr ⲇd ⲉe ⲏh ⲓi ⲕk ⲙm ⲛn ⲟo ⲣp ⲥc ⲧt ⲩy ⲭx ⲱw ꓐB ꓑP ꓒd ꓓD ꓔT ꓖG ꓗK ꓚC ꓛC ꓜZ ꓝF ꓞF ꓟM ꓠN ꓡL ꓢS ꓣR ꓦV"
    " ꓧH ꓪW ꓫX ꓬY ꓮA ꓰE ꓲI ꓳO ꓴU ꓵU ꓶL ꓷD ꓸ. ꓹ, ყy ჿo ჸz ႷY ႽS Ⴝs"
)
_LOOKALIKES = str.maketrans(
    {pair[0]: pair[1:] for pair in _LOOKALIKE_PAIRS.split() if len(pair) >= 2 and pair[1:].isascii()}
    # negative circled, negative squared and regional-indicator letters (NFKC keeps them)
    | {chr(start + i): chr(ord("A") + i) for start in (0x1F150, 0x1F170, 0x1F1E6) for i in range(26)}
)
# Unicode "tag" characters (U+E0020-U+E007E) spell ASCII invisibly; a model's
# tokenizer still reads them.
_TAG_FIRST, _TAG_LAST = 0xE0020, 0xE007E
_TAG_CHARS = re.compile(f"[{chr(_TAG_FIRST)}-{chr(_TAG_LAST)}]")
_SPACES = re.compile(r"[^\S\n]+")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# Markdown emphasis and code marks (a judge reads "**Verdict:**" as "Verdict:"); an
# underscore inside a word (snake_case, <|eot_id|>) stays.
_EMPHASIS = re.compile(r"[*`]+|~~|(?<![^\W_])_+|_+(?![^\W_])")


def _clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    half = MAX_CHARS // 2
    return text[:half] + "\n" + text[-(half - 1) :]


def _shown(run: re.Match[str]) -> str:
    return "".join(ch for ch in run.group(0) if ord(ch) not in _INVISIBLE and unicodedata.category(ch) != "Cf")


def visible(text: str) -> str:
    """``text`` without invisible characters (zero-width spaces, joiners, bidi marks...)."""
    if text.isascii():  # no ASCII character is invisible (none is of category Cf)
        return text
    return _NON_ASCII_RUN.sub(_shown, text)


def _no_marks(text: str) -> str:
    """Combining marks removed (accents, overlays such as strike-through, dakuten),
    then recomposed: the same for the text and for the keywords it is matched with."""
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():
        return decomposed
    return unicodedata.normalize("NFKC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn"))


def plain(text: str) -> str:
    """NFKC, invisible characters and combining marks removed, markdown emphasis
    (``*``, ``` ` ```, ``~~``, ``_`` at a word edge) removed, runs of spaces and tabs
    collapsed (newlines kept). Other alphabets are left as they are, so that words in
    other languages can be matched; see :func:`fold` for the look-alike folding."""
    if not isinstance(text, str):
        text = str(text)
    text = _clip(text)
    if not text.isascii():
        text = visible(_no_marks(visible(text)))
    if "*" in text or "_" in text or "`" in text or "~" in text:
        text = _EMPHASIS.sub("", text)
    if text.isascii() and "  " not in text and not any(c in text for c in "\t\r\x0b\x0c"):
        return text  # no run of spaces to collapse
    return _SPACES.sub(" ", text)


def fold(text: str) -> str:
    """:func:`plain` with every letter that looks like a Latin letter mapped to it."""
    return _fold_plain(plain(text))


def _fold_plain(out: str) -> str:
    if out.isascii():
        return out
    # after the mapping, NFKC again: a mapped letter can meet a compatibility form
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", out.translate(_LOOKALIKES)))


# --------------------------------------------------------------------------- decoding layers

_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :,-]?){8,}")
_HEX_HINT = re.compile(
    r"[0-9A-Fa-f]{2}[ :,-]?[0-9A-Fa-f]{2}[ :,-]?[0-9A-Fa-f]{2}[ :,-]?[0-9A-Fa-f]{2}|\\x[0-9A-Fa-f]{2}"
)
_HEX_ESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#[0-9]{2,7}|#[xX][0-9A-Fa-f]{2,6}|[A-Za-z]{2,8});")
# Common English words as they look after ROT13 / written backwards.
_ROT13_STOP = tuple(
    f" {w} "
    for w in [
        "gur",
        "naq",
        "vf",
        "bs",
        "gb",
        "va",
        "guvf",
        "vg",
        "lbh",
        "lbhe",
        "sbe",
        "jvgu",
        "ner",
        "or",
        "nyy",
        "gung",
        "abj",
        "cyrnfr",
        "evtug",
        "jung",
        "jvyy",
        "unir",
        "nal",
        "qrne",
        "fpber",
        "engr",
        "tvir",
    ]
)
_REVERSED_STOP = tuple(
    f" {w} "
    for w in [
        "eht",
        "dna",
        "siht",
        "uoy",
        "ruoy",
        "rof",
        "htiw",
        "era",
        "ton",
        "lla",
        "taht",
        "esaelp",
        "etar",
        "evig",
        "erocs",
        "raed",
        "redarg",
        "egduj",
        "rotaulave",
        "rewsna",
    ]
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s"}
)
_LEET_HINT = re.compile(r"[A-Za-z][0-9@$]|[0-9@$][A-Za-z]")
# A word of at most 30 letters, digits, @ or $ (longer runs are codes, not words).
_LEET_WORD = re.compile(r"(?<![A-Za-z0-9@$])[A-Za-z0-9@$]{2,30}(?![A-Za-z0-9@$])")
# Letters spelled out one by one with the same separator: "r.a.t.e", "i g n o r e".
_SPELLED = re.compile(r"(?<!\S)\S(?P<sep>[ .·•*_\-|~/+])\S(?:(?P=sep)\S){2,}(?!\S)")
_MAX_CANDIDATES = 32


def _texty(raw: bytes) -> str | None:
    """``raw`` as text when it reads as words (UTF-8, printable, mostly letters and
    spaces, at least one space), else None: random bytes, hashes and images are not text."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    probe = s  # URL-encoded or entity-encoded text inside is judged by what it decodes to
    if "%" in probe:
        probe = urllib.parse.unquote(probe.replace("+", " "), errors="replace")
    if "&" in probe:
        probe = html.unescape(probe)
    if len(probe) < 6 or " " not in probe.strip():
        return None
    good = sum(ch.isalpha() or ch.isspace() for ch in probe)
    bad = sum(not ch.isprintable() and ch not in "\n\t" for ch in probe)
    return s if bad == 0 and good >= 0.7 * len(probe) else None


def _base64(text: str) -> list[str]:
    out = []
    for m in list(_B64_RUN.finditer(text))[:_MAX_CANDIDATES]:
        run = m.group(0).rstrip("=")
        if run.isalpha() and (run.islower() or run.isupper()):  # a long word, not base64
            continue
        padded = run + "=" * (-len(run) % 4)
        for alt in (None, b"-_"):
            try:
                raw = base64.b64decode(padded, altchars=alt, validate=True)
            except (binascii.Error, ValueError):
                continue
            if (s := _texty(raw)) is not None:
                out.append(s)
                break
    return out


def _hex(text: str) -> list[str]:
    out = []
    for m in list(_HEX_RUN.finditer(text))[:_MAX_CANDIDATES]:
        digits = re.sub(r"[^0-9A-Fa-f]", "", m.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        if (s := _texty(bytes.fromhex(digits))) is not None:
            out.append(s)
    for m in list(_HEX_ESC.finditer(text))[:_MAX_CANDIDATES]:
        if (s := _texty(bytes.fromhex(m.group(0).replace("\\x", "")))) is not None:
            out.append(s)
    return out


def _stop_hits(low: str, stop: tuple[str, ...]) -> int:
    """How often the words of ``stop`` (each written with a space either side) occur in ``low``."""
    return sum(low.count(w) for w in stop)


def _decoded(text: str) -> list[tuple[str, str]]:
    """(layer, decoded text) for every decoding layer that applies to ``text``."""
    out: list[tuple[str, str]] = []
    if "&" in text and _ENTITY.search(text):
        out.append(("html", html.unescape(text)))
    if "%" in text and len(_PCT.findall(text)) >= 3:
        out.append(("url", urllib.parse.unquote(text.replace("+", " "), errors="replace")))
    if len(text) >= 16:
        out.extend(("base64", s) for s in _base64(text))
        if _HEX_HINT.search(text):
            out.extend(("hex", s) for s in _hex(text))
    low = f" {text[:20_000].lower()} "
    if _stop_hits(low, _ROT13_STOP) >= 2:
        out.append(("rot13", codecs.encode(text, "rot13")))
    if _stop_hits(low, _REVERSED_STOP) >= 2:
        out.append(("reversed", text[::-1]))
    if len(_LEET_HINT.findall(text, 0, 20_000)) >= 2:
        leet = [0]

        def deleet(m: re.Match[str]) -> str:
            w = m.group(0)
            if w.isalpha() or w.isdigit() or not any(c.isalpha() for c in w):
                return w
            leet[0] += 1
            return w.translate(_LEET)

        undone = _LEET_WORD.sub(deleet, text)
        if leet[0] >= 2:
            out.append(("leet", undone))
    if _SPELLED.search(text):
        out.append(("spelled", _SPELLED.sub(lambda m: m.group(0).replace(m.group("sep"), ""), text)))
    return out


def views(text: str, depth: int = 2) -> list[tuple[str, str]]:
    """Every reading of ``text`` worth scanning, as ``(layer, normalised text)``.

    The first is ``("plain", plain(text))``, then ``("folded", fold(text))`` when
    folding changes something; then, for each decoding layer that applies (``html``,
    ``url``, ``base64``, ``hex``, ``rot13``, ``reversed``, ``leet``, ``spelled``, and
    ``tags``: the text spelled in invisible Unicode tag characters), the
    decoded text, plain and folded, decoded again up to ``depth`` layers deep (base64
    of URL-encoded text...). Duplicates are dropped. Never raises on a ``str``.
    """
    if not isinstance(text, str):
        text = str(text)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(layer: str, t: str) -> str:
        p = plain(t)
        for name, v in ((layer, p), (f"{layer}+folded" if layer != "plain" else "folded", _fold_plain(p))):
            if v not in seen:
                seen.add(v)
                out.append((name, v))
        return p

    frontier = [("", add("plain", text))]
    hidden = "" if text.isascii() else "".join(chr(ord(c) - 0xE0000) for c in _TAG_CHARS.findall(text))
    if len(hidden) >= 3:
        frontier.append(("tags", add("tags", hidden)))
    for _ in range(max(0, depth)):
        nxt: list[tuple[str, str]] = []
        for prefix, t in frontier:
            for layer, decoded in _decoded(t):
                name = f"{prefix}+{layer}" if prefix else layer
                if plain(decoded) not in seen:
                    nxt.append((name, add(name, decoded)))
        frontier = nxt[:_MAX_CANDIDATES]
    return out
