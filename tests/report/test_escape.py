"""Run text inside the page's JSON can never end its script element or open a comment,
and reads back exactly (property tests over arbitrary text)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.report.html import asset, embedded_data, json_for_script

HOSTILE = ["</script>", "<script>alert(1)</script>", "<!--", "-->", "</SCRIPT >", "<\u2028/script>", "&lt;", "]]>"]

texts = st.one_of(st.text(), st.sampled_from(HOSTILE), st.lists(st.sampled_from([*HOSTILE, "a", "<", "/", "!"]))
                  .map("".join))  # fmt: skip


@given(st.recursive(texts, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                    max_leaves=12))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_json_for_script_is_inert_and_round_trips(value: object) -> None:
    out = json_for_script({"v": value})
    assert "<" not in out and ">" not in out and "&" not in out
    assert json.loads(out) == {"v": value}


@given(texts)
@settings(max_examples=200, deadline=None)
def test_a_page_holding_any_text_has_only_its_own_two_scripts(text: str) -> None:
    page = f'<html><script type="application/json" id="qd-data">{json_for_script({"t": text})}</script></html>'
    assert len(re.findall(r"</script", page, re.I)) == 1 and "<!--" not in page
    assert embedded_data(page) == {"t": text}


def test_the_assets_cannot_end_their_element() -> None:
    for name in ("report.js", "report.css"):
        assert "</" not in asset(name)
    js = asset("report.js")
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js
    assert "document.write" not in js and "eval(" not in js


def test_embedded_data_refuses_a_page_without_data() -> None:
    with pytest.raises(ValueError, match="not a qdsearch report page"):
        embedded_data("<html></html>")
