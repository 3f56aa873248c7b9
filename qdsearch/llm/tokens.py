"""Token counts of texts and chat prompts without asking the endpoint.

In order of preference (:func:`token_counter`):

1. ``tiktoken`` for the models it knows (``pip install 'qdsearch[tokens]'``). It
   downloads its encoding file on first use; offline (the load is bounded by
   :data:`TIKTOKEN_TIMEOUT_S`) or when it is not installed, 3. is used and the
   counter's ``note`` says why;
2. the GGUF file's own vocabulary and chat template for the embedded llama.cpp model
   (exact, local, about 0.3 s to load);
3. :data:`CHARS_PER_TOKEN` characters per token, plus :data:`PER_MESSAGE` tokens per
   chat message and :data:`PER_REPLY` for the reply's priming. Four characters of
   English per token is the rule of thumb of OpenAI's tokenizer guide; code, JSON and
   other languages take more tokens per character, so this errs low for them.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qdsearch.config import EndpointConfig
from qdsearch.quiet import quiet_stderr

__all__ = [
    "CHARS_PER_TOKEN",
    "PER_MESSAGE",
    "PER_REPLY",
    "Filler",
    "TokenCounter",
    "chars_counter",
    "is_embedded",
    "token_counter",
]

CHARS_PER_TOKEN = 4.0
PER_MESSAGE = 4  # role markers and separators of one chat message
PER_REPLY = 3  # the assistant turn's priming
TIKTOKEN_TIMEOUT_S = 15.0


@dataclass
class TokenCounter:
    """Counts tokens of texts and chat prompts for one model.

    Attributes:
        name: how it counts (``"tiktoken o200k_base"``, ``"~4 chars per token"``).
        exact: whether the counts are the model's own.
        note: why this counter was chosen (shown in the dry run's output).
        count: text -> tokens.
        per_message, per_reply: chat-format overhead added by :meth:`prompt`.
        template: messages -> the whole prompt's tokens (replaces the overhead model).
    """

    name: str
    exact: bool
    note: str
    count: Callable[[str], int]
    per_message: int = PER_MESSAGE
    per_reply: int = PER_REPLY
    template: Callable[[Sequence[Mapping[str, str]]], int] | None = None

    def prompt(self, messages: Sequence[Mapping[str, str]]) -> int:
        if self.template is not None:
            return self.template(messages)
        return sum(self.count(str(m.get("content", ""))) + self.per_message for m in messages) + self.per_reply


def chars_counter(note: str) -> TokenCounter:
    """The documented fallback: :data:`CHARS_PER_TOKEN` characters per token."""
    return TokenCounter(
        f"~{CHARS_PER_TOKEN:g} chars per token", False, note, lambda t: math.ceil(len(t) / CHARS_PER_TOKEN)
    )


def _load_tiktoken(name: str) -> Any:
    """tiktoken's encoding ``name``, in a thread bounded by :data:`TIKTOKEN_TIMEOUT_S`
    (its first use downloads the encoding file, which may hang offline)."""
    import tiktoken

    out: dict[str, Any] = {}

    def load() -> None:
        try:
            out["enc"] = tiktoken.get_encoding(name)
        except Exception as e:  # any failure to fetch or read the file
            out["err"] = e

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(TIKTOKEN_TIMEOUT_S)
    if "enc" not in out:
        err = out.get("err")
        raise RuntimeError(f"{type(err).__name__}: {err}" if err else f"no answer within {TIKTOKEN_TIMEOUT_S:g}s")
    return out["enc"]


def _gguf_counter(path: str) -> TokenCounter:
    """The GGUF file's vocabulary and chat template (exact for the embedded model)."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    with quiet_stderr():  # llama.cpp writes context warnings to fd 2 even when not verbose
        m = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(m.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))

    tpl = m.metadata.get("tokenizer.chat_template")
    template = None
    if tpl:
        fmt = Jinja2ChatFormatter(
            tpl,
            eos_token=m.detokenize([m.token_eos()]).decode("utf-8", "replace"),
            bos_token=m.detokenize([m.token_bos()]).decode("utf-8", "replace"),
        )

        def template(messages: Sequence[Mapping[str, str]]) -> int:
            prompt = fmt(messages=[dict(x) for x in messages]).prompt  # type: ignore[misc]
            return len(m.tokenize(prompt.encode("utf-8", "replace"), add_bos=False, special=True))

    return TokenCounter(f"GGUF vocabulary of {path.rsplit('/', 1)[-1]}", True, "the model's own tokenizer", count,
                        template=template)  # fmt: skip


def is_embedded(ep: EndpointConfig) -> bool:
    """Whether ``ep`` is the embedded llama.cpp model: no ``base_url``, or the name the
    embedded server gives it (``qdsearch serve``'s model)."""
    from qdsearch.llm.server import MODEL_ALIAS

    return ep.embedded or ep.model == MODEL_ALIAS


def token_counter(ep: EndpointConfig, gguf: str = "") -> TokenCounter:
    """The best token counter for ``ep``'s model that needs no endpoint (see the module docstring).

    Args:
        ep: the endpoint; an empty ``base_url`` (or the embedded model's name) is the
            embedded llama.cpp model.
        gguf: the embedded model's GGUF (``local.gguf``; empty: the carried SmolLM2).
    """
    if is_embedded(ep):
        try:
            from qdsearch.llm.server import default_gguf

            return _gguf_counter(gguf or str(default_gguf()))
        except Exception as e:  # llama_cpp missing, unreadable file
            return chars_counter(f"the embedded model's tokenizer could not be loaded ({type(e).__name__}: {e})")
    try:
        import tiktoken.model
    except ImportError:
        return chars_counter(
            "tiktoken is not installed (pip install 'qdsearch[tokens]' counts exactly for OpenAI models)"
        )
    try:
        name = tiktoken.model.encoding_name_for_model(ep.model)
    except KeyError:
        return chars_counter(f"tiktoken does not know the model {ep.model!r}")
    try:
        enc = _load_tiktoken(name)
    except Exception as e:
        return chars_counter(
            f"tiktoken knows {ep.model!r} ({name}) but could not load its encoding file, which it downloads on first "
            f"use (offline?): {str(e)[:160]}"
        )
    return TokenCounter(f"tiktoken {name}", True, f"tiktoken's encoding of {ep.model!r}",
                        lambda t: len(enc.encode(t, disallowed_special=())))  # fmt: skip


# Innocuous filler for synthetic replies: diverse (a response of few distinct words
# is rejected as repetitive), and no word the injection scan or elimination rules react to.
_WORD_TEXT = (
    "river garden table window morning silver forest market bridge candle harbor meadow pencil station valley "
    "winter orchard lantern copper island village basket mountain letter number history travel kitchen season "
    "weather planet ocean engine circle bottle carpet doctor farmer jacket ladder mirror needle pepper rabbit "
    "saddle tunnel velvet wagon yellow anchor blanket button cattle desert fabric gravel helmet insect jungle "
    "kettle lemon marble napkin oyster parrot quartz ribbon shadow timber umbrella violin walnut barley canyon "
    "dragon falcon glacier hammer ivory jasmine koala lobster mango nectar olive pebble quill raven spruce "
    "thistle tulip urchin vessel willow zebra acorn beacon cobalt dune ember fjord granite hazel iris juniper"
)
_WORDS = _WORD_TEXT.split()


class Filler:
    """Deterministic filler text of a given token length for one counter."""

    def __init__(self, counter: TokenCounter, seed: int) -> None:
        self.counter = counter
        self.rng = np.random.default_rng(seed)
        sample = " ".join(_WORDS)
        self.per_word = max(0.2, counter.count(sample) / len(_WORDS))

    def text(self, tokens: float) -> str:
        n = max(1, round(tokens / self.per_word))
        return " ".join(_WORDS[int(i)] for i in self.rng.integers(len(_WORDS), size=n))

    def json(self, schema: Mapping[str, Any], tokens: float) -> str:
        """One object following ``schema`` whose text is about ``tokens`` long: scores
        mid-range, labels the first of their lists, the first free string (the child's
        ``instruction``, a verdict's ``reason``) filled to the length."""
        props: Mapping[str, Any] = schema.get("properties", {})
        obj: dict[str, Any] = {}
        main = ""
        for key, p in props.items():
            if "enum" in p:
                vals = list(p["enum"])
                obj[key] = vals[len(vals) // 2] if p.get("type") == "integer" else vals[0]
            elif p.get("type") in ("integer", "number"):
                obj[key] = p.get("minimum", 1)
            elif p.get("type") == "boolean":
                obj[key] = False
            elif p.get("type") == "array":
                obj[key] = []
            else:
                obj[key] = ""
                main = main or key
        if main:
            left = tokens - self.counter.count(json.dumps(obj))
            text = self.text(max(3.0, left))
            limit = props[main].get("maxLength")
            if limit:
                text = text[: int(limit)].rsplit(" ", 1)[0]
            obj[main] = text
        return json.dumps(obj)
