"""The request cache (qdsearch.llm.cache) with LLMClient against the fake OpenAI server
over real HTTP: keys, hits across clients and processes, sampled calls by place, the
ask loop's retries, secrets, broken files, concurrent writers, the CLI and config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.config import CacheConfig, ConfigError, from_dict
from qdsearch.llm import LLMClient
from qdsearch.llm.ask import Reject, Task, ask
from qdsearch.llm.cache import (
    FILE_NAME,
    CachedReply,
    CacheWarning,
    CallSite,
    RequestCache,
    cache_dir,
    call_site,
    endpoint_identity,
    open_cache,
    request_key,
)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.helpers import endpoint as cfg
from tests.helpers import run_client as run

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "say hello"}]
Make = Callable[..., FakeOpenAI]


def chat1(client: LLMClient, *args: Any, **kw: Any) -> Any:
    """One ``client.chat(*args, **kw)`` on a fresh loop."""
    return run(client, client.chat(*args, **kw))


def counting(prefix: str = "r") -> Callable[[dict[str, Any]], str]:
    """A responder whose n-th answer is ``prefix<n>``: every request gets a fresh reply."""
    n = [0]

    def reply(body: dict[str, Any]) -> str:
        n[0] += 1
        return f"{prefix}{n[0]}"

    return reply


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestCache]:
    """A cache of the test's own, with the suite-wide QDSEARCH_NO_CACHE lifted."""
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    c = RequestCache(tmp_path / "cache")
    yield c
    c.close()


def _sampled(client: LLMClient, seed: int, child: str, n: int = 1) -> list[Any]:
    async def go() -> list[Any]:
        with call_site(seed, child):
            return [await client.chat(MSG, tag="deepen", temperature=0.8) for _ in range(n)]

    return run(client, go())


# --------------------------------------------------------------------------- deterministic


def test_deterministic_request_is_answered_from_the_cache_by_another_client(
    fake_openai: Make, cache: RequestCache
) -> None:
    fake = fake_openai(counting())
    ep = cfg(fake.base_url, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    first = chat1(LLMClient(ep, cache=cache), MSG, temperature=0.0, max_tokens=50)
    assert first.record.cache == "miss" and not first.record.cached and len(fake.requests) == 1
    other = RequestCache(cache.folder)  # another object, its own connection
    second = LLMClient(ep, cache=other)
    again = chat1(second, MSG, temperature=0.0, max_tokens=50)
    assert len(fake.requests) == 1, "a cached deterministic request reached the endpoint"
    r, p = again.record, first.record
    assert again.text == first.text == "r1" and again.finish_reason == first.finish_reason
    assert r.cached and r.cache == "hit" and r.attempts == 0 and r.outcome == "ok"
    assert (r.prompt_tokens, r.completion_tokens, r.cost_usd) == (0, 0, 0.0)  # nothing spent
    assert (r.saved_prompt_tokens, r.saved_completion_tokens) == (p.prompt_tokens, p.completion_tokens)
    assert r.saved_cost_usd == pytest.approx(p.cost_usd) and p.cost_usd > 0
    assert r.reply_tokens == p.reply_tokens == p.completion_tokens
    assert second.usage.calls == 1 and second.usage.tokens == 0  # a hit is a call that spent nothing
    # any other parameter is another request
    chat1(LLMClient(ep, cache=other), MSG, temperature=0.0, max_tokens=51)
    chat1(LLMClient(cfg(fake.base_url, model="other-model"), cache=other), MSG, temperature=0.0)
    assert len(fake.requests) == 3
    other.close()


def test_a_judge_call_is_keyed_by_content_whatever_its_temperature(fake_openai: Make, cache: RequestCache) -> None:
    fake = fake_openai(counting())
    for seed in (1, 2):  # also across call sites: a verdict does not depend on the campaign
        client = LLMClient(cfg(fake.base_url), cache=cache)

        async def go(client: LLMClient = client, seed: int = seed) -> str:
            with call_site(seed, "c0000001"):
                return (await client.chat(MSG, tag="judge", temperature=0.7)).text

        assert run(client, go()) == "r1"
    assert len(fake.requests) == 1


def test_deterministic_hit_across_processes(fake_openai: Make, cache: RequestCache) -> None:
    """Another process (a CLI run, a Ray actor) answered it: this one asks nothing."""
    fake = fake_openai(counting())
    script = textwrap.dedent(
        f"""
        import asyncio
        from qdsearch.config import EndpointConfig
        from qdsearch.llm import LLMClient
        from qdsearch.llm.cache import RequestCache
        async def go():
            c = LLMClient(EndpointConfig(base_url={fake.base_url!r}, model="fake-model"),
                          cache=RequestCache({str(cache.folder)!r}))
            comp = await c.chat([{{"role": "user", "content": "say hello"}}], temperature=0.0)
            await c.aclose()
            print(comp.record.cache, comp.text)
        asyncio.run(go())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "QDSEARCH_NO_CACHE"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["miss", "r1"] and len(fake.requests) == 1
    comp = chat1(LLMClient(cfg(fake.base_url), cache=cache), MSG, temperature=0.0)
    assert comp.record.cached and comp.text == "r1" and len(fake.requests) == 1


# --------------------------------------------------------------------------- sampled


def test_sampled_calls_replay_by_place_and_are_never_shared_across_seeds(
    fake_openai: Make, cache: RequestCache
) -> None:
    fake = fake_openai(counting())
    first = _sampled(LLMClient(cfg(fake.base_url), cache=cache), 3, "c0000001")
    assert first[0].record.cache == "miss" and len(fake.requests) == 1
    # the same campaign (seed) and child: replayed
    again = _sampled(LLMClient(cfg(fake.base_url), cache=cache), 3, "c0000001")
    assert again[0].record.cached and again[0].text == first[0].text and len(fake.requests) == 1
    # another seed (a new campaign) or another child: a fresh sample each
    other_seed = _sampled(LLMClient(cfg(fake.base_url), cache=cache), 4, "c0000001")
    other_child = _sampled(LLMClient(cfg(fake.base_url), cache=cache), 3, "c0000002")
    assert [c.record.cache for c in other_seed + other_child] == ["miss", "miss"]
    assert len({first[0].text, other_seed[0].text, other_child[0].text}) == 3 and len(fake.requests) == 3
    # outside a campaign's call site nothing says which sample is meant: never cached
    for _ in range(2):
        comp = chat1(LLMClient(cfg(fake.base_url), cache=cache), MSG, tag="deepen", temperature=0.8)
        assert comp.record.cache == ""
    assert len(fake.requests) == 5


def test_identical_sampled_requests_of_one_child_are_fresh_samples_replayed_in_order(
    fake_openai: Make, cache: RequestCache
) -> None:
    fake = fake_openai(counting())
    first = [c.text for c in _sampled(LLMClient(cfg(fake.base_url), cache=cache), 1, "c7", n=3)]
    assert first == ["r1", "r2", "r3"] and len(fake.requests) == 3
    replay = _sampled(LLMClient(cfg(fake.base_url), cache=cache), 1, "c7", n=3)
    assert [c.text for c in replay] == first and all(c.record.cached for c in replay)
    assert len(fake.requests) == 3
    assert cache.count("1/c7/") == 3 and cache.count() == 3


def test_concurrent_jobs_on_one_loop_keep_their_own_call_site(fake_openai: Make, cache: RequestCache) -> None:
    fake = fake_openai(counting(), latency_s=0.02)
    client = LLMClient(cfg(fake.base_url, concurrency=8), cache=cache)

    async def job(child: str) -> str:
        with call_site(5, child):
            await asyncio.sleep(0)
            return (await client.chat(MSG, tag="respond", temperature=1.0)).text

    async def many() -> list[str]:
        return list(await asyncio.gather(*(job(f"c{i}") for i in range(6))))

    first = run(client, many())
    assert len(set(first)) == 6 and len(fake.requests) == 6
    client = LLMClient(cfg(fake.base_url, concurrency=8), cache=cache)
    assert run(client, many()) == first and len(fake.requests) == 6


# --------------------------------------------------------------------------- the ask loop


def _strict(text: str, finish: str | None) -> str:
    if text != "good":
        raise Reject("not_good", text)
    return text


def test_a_retry_after_a_parse_reject_is_a_fresh_request_and_a_rerun_asks_nothing(
    fake_openai: Make, cache: RequestCache
) -> None:
    """The same messages each attempt (as measure's tagging sends them) at temperature 0."""
    fake = fake_openai(lambda body: "good")
    fake.script(["bad"])  # the first answer does not parse
    task = Task("tags", lambda: MSG, _strict, temperature=0.0)
    calls: list[dict[str, Any]] = []

    def asked() -> str:
        client = LLMClient(cfg(fake.base_url), cache=cache)
        return run(client, ask(client, task, attempts=3, calls=calls))

    assert asked() == "good"
    assert len(fake.requests) == 2, "the retry was served the rejected reply"
    assert [x["cache"] for x in calls] == ["miss", "miss"]
    # a re-run replays both attempts as they went, at no cost
    calls.clear()
    assert asked() == "good"
    assert len(fake.requests) == 2 and [x["cache"] for x in calls] == ["hit", "hit"]
    assert all(x["prompt_tokens"] == 0 and x["saved_prompt_tokens"] > 0 for x in calls)


def test_forget_drops_a_reply(fake_openai: Make, cache: RequestCache) -> None:
    fake = fake_openai(counting())
    client = LLMClient(cfg(fake.base_url), cache=cache)
    comp = run(client, client.chat(MSG, temperature=0.0))
    assert comp.cache_key and cache.count() == 1
    client.forget(comp)
    assert cache.count() == 0
    assert chat1(LLMClient(cfg(fake.base_url), cache=cache), MSG, temperature=0.0).text == "r2"


def test_failed_calls_are_not_cached(fake_openai: Make, cache: RequestCache) -> None:
    from qdsearch.llm import LLMError

    fake = fake_openai(counting())
    fake.script([Reply(status=400)])
    client = LLMClient(cfg(fake.base_url, max_retries=0), cache=cache)
    with pytest.raises(LLMError) as err:
        run(client, client.chat(MSG, temperature=0.0))
    assert err.value.record.cache == "miss" and cache.count() == 0
    assert chat1(LLMClient(cfg(fake.base_url), cache=cache), MSG, temperature=0.0).text == "r1"


# --------------------------------------------------------------------------- secrets


def test_no_secret_is_written_to_the_cache(fake_openai: Make, cache: RequestCache, monkeypatch: Any) -> None:
    secret = "sk-test-cache-SECRET-0123456789"
    monkeypatch.setenv("QD_CACHE_KEY", secret)
    fake = fake_openai(lambda body: f"echo {secret}" if "echo" in body["messages"][0]["content"] else "plain")
    ep = cfg(fake.base_url, api_key_env="QD_CACHE_KEY")
    chat1(LLMClient(ep, cache=cache), MSG, temperature=0.0)
    echo = chat1(LLMClient(ep, cache=cache), [{"role": "user", "content": "echo"}], temperature=0.0)
    assert echo.record.cache == "miss" and echo.cache_key == ""  # a reply holding the key is not stored
    assert fake.auth_headers[0] == f"Bearer {secret}" and cache.count() == 1
    cache.close()
    for f in cache.folder.iterdir():
        data = f.read_bytes()
        assert secret.encode() not in data and b"say hello" not in data  # no key, no request text


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("https://user:sk-pass@API.example.com:8443/v1?api-key=sk-x#f", "https://api.example.com:8443/v1"),
        ("http://127.0.0.1:43211/v1", "local/v1"),
        ("http://localhost:8080/v1", "local/v1"),
        ("http://[::1]:9000/v1", "local/v1"),
    ],
)
def test_endpoint_identity_drops_credentials_and_local_ports(url: str, identity: str) -> None:
    assert endpoint_identity(url) == identity


# --------------------------------------------------------------------------- key stability

_text = st.text(max_size=30)
_requests = st.fixed_dictionaries(
    {
        "model": _text,
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": _text}),
            min_size=1,
            max_size=3,
        ),
        "temperature": st.sampled_from([0.0, 0.3, 0.7, 1.0]),
        "max_tokens": st.integers(1, 4096),
    },
    optional={
        "seed": st.integers(0, 2**31),
        "response_format": st.fixed_dictionaries({"type": st.sampled_from(["json_object", "json_schema"])}),
    },
)


def _mutations(req: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way of changing one field of ``req`` by a little."""
    msgs = req["messages"]
    out = [
        {**req, "model": req["model"] + "x"},
        {**req, "messages": [*msgs[:-1], {**msgs[-1], "content": msgs[-1]["content"] + "."}]},
        {**req, "messages": [*msgs[:-1], {**msgs[-1], "role": "tool"}]},
        {**req, "messages": [*msgs, {"role": "user", "content": ""}]},
        {**req, "max_tokens": req["max_tokens"] + 1},
        {**req, "temperature": req["temperature"] + 0.05},
        {**req, "seed": req.get("seed", 0) + 1},
        {**req, "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"k": 1}}}},
    ]
    return out


@settings(max_examples=60, deadline=None)
@given(req=_requests, role=st.sampled_from(["deepen", "respond", "judge", "tags"]), seed=st.integers(0, 99))
def test_key_is_stable_and_every_changed_field_changes_it(req: dict[str, Any], role: str, seed: int) -> None:
    ident = "https://api.example.com/v1"

    def key(r: dict[str, Any], role: str = role, site: tuple[int, str] = (seed, "c1"), **kw: Any) -> str:
        found = request_key(kw.pop("identity", ident), r, role, CallSite(*site), **kw)
        assert found is not None
        return found.key

    k = key(req)
    assert key(json.loads(json.dumps(req))) == k  # same request, same key (a copy, fresh site)
    assert key(dict(reversed(list(req.items())))) == k  # key order does not matter
    for changed in _mutations(req):
        assert key(changed) != k, changed
    assert key(req, identity="https://other.example.com/v1") != k
    assert key(req, attempt=1) != k and key(req, attempt=1) != key(req, attempt=2)
    deterministic = req["temperature"] == 0 or role in ("judge", "tags")
    other_place = [key(req, site=(seed + 1, "c1")), key(req, site=(seed, "c2"))]
    if deterministic:  # by content alone: any campaign, any child
        assert other_place == [k, k]
        assert key(req, role="judge" if role != "judge" else "tags") == k
    else:  # by place too
        assert k not in other_place and key(req, role=role + "_") != k
        site = CallSite(seed, "c1")
        first = request_key(ident, req, role, site)
        second = request_key(ident, req, role, site)
        assert first is not None and second is not None and first.key == k and second.key != k
        assert request_key(ident, req, role, None) is None


# --------------------------------------------------------------------------- broken files


def _one_cache_warning(record: list[warnings.WarningMessage]) -> str:
    found = [w for w in record if issubclass(w.category, CacheWarning)]
    assert len(found) == 1, [str(w.message) for w in record]
    return str(found[0].message)


def _two_calls(url: str, cache: RequestCache) -> list[Any]:
    """Two deterministic calls through one client (one warning at most, then uncached)."""
    client = LLMClient(cfg(url), cache=cache)

    async def go() -> list[Any]:
        return [await client.chat(MSG, temperature=0.0) for _ in range(2)]

    return run(client, go())


def test_a_corrupt_cache_file_gives_one_warning_and_is_left_as_it_was(fake_openai: Make, cache: RequestCache) -> None:
    fake = fake_openai(counting())
    cache.folder.mkdir(parents=True)
    junk = b"this is not an sqlite database\n" * 200
    cache.path.write_bytes(junk)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        comps = _two_calls(fake.base_url, cache)
    assert str(cache.path) in _one_cache_warning(record)
    assert [c.text for c in comps] == ["r1", "r2"] and [c.record.cache for c in comps] == ["", ""]
    assert cache.path.read_bytes() == junk and not cache.enabled
    assert "not a database" in cache.error


def test_a_locked_cache_gives_one_warning_and_calls_go_on(fake_openai: Make, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    fake = fake_openai(counting())
    cache = RequestCache(tmp_path / "c", timeout_s=0.2)
    cache.put("k", CachedReply("x", "stop", 1, 1), model="m", role="r")
    cache.close()
    holder = sqlite3.connect(cache.path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the lock past the busy timeout
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            comps = _two_calls(fake.base_url, cache)
        assert "locked" in _one_cache_warning(record)
        assert [c.text for c in comps] == ["r1", "r2"] and len(fake.requests) == 2
    finally:
        holder.rollback()
        holder.close()
    assert RequestCache(cache.folder).count() == 1  # nothing lost


@contextlib.contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    """Makes ``paths`` read-only even for root (``chattr +i``), or skips the test."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    done: list[Path] = []
    try:
        for p in paths:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i not permitted here")
            done.append(p)
        yield
    finally:
        for p in done:
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def test_a_read_only_cache_gives_one_warning_and_loses_nothing(fake_openai: Make, cache: RequestCache) -> None:
    fake = fake_openai(counting())
    cache.put("k", CachedReply("x", "stop", 1, 1), model="m", role="r")
    cache.close()
    before = {p.name: p.read_bytes() for p in cache.folder.iterdir()}
    with _immutable(*cache.folder.iterdir(), cache.folder):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            comps = _two_calls(fake.base_url, RequestCache(cache.folder))
        _one_cache_warning(record)
        assert [c.text for c in comps] == ["r1", "r2"]
    assert {p.name: p.read_bytes() for p in cache.folder.iterdir()} == before
    assert RequestCache(cache.folder).get("k") == CachedReply("x", "stop", 1, 1, 0.0)


def test_a_cache_folder_that_cannot_be_made_gives_one_warning(
    fake_openai: Make, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    fake = fake_openai(counting())
    (tmp_path / "a-file").write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        comps = _two_calls(fake.base_url, RequestCache(tmp_path / "a-file" / "cache"))
    _one_cache_warning(record)
    assert [c.text for c in comps] == ["r1", "r2"]


def test_a_folder_on_a_network_file_system_gets_one_file_per_host(tmp_path: Path, monkeypatch: Any) -> None:
    import re
    import socket

    from qdsearch.llm.cache import store

    home = tmp_path / "nfs home"
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        f"server:/export/home {str(home).replace(' ', chr(92) + '040')} nfs4 rw,relatime 0 0\n"
        f"sshfs#x {tmp_path / 'ssh'} fuse.sshfs rw 0 0\n"
    )
    monkeypatch.setattr(store, "_MOUNTS", str(mounts))
    assert store.network_fs(home / ".cache" / "qdsearch") == "nfs4"
    assert store.network_fs(tmp_path / "ssh") == "fuse.sshfs" and store.network_fs(tmp_path / "local") == ""
    assert store.network_fs(tmp_path / "nfs homework") == ""  # a prefix of the name is not inside
    per_host = RequestCache(home / "c")
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
    assert per_host.path.name == f"requests.{host}.sqlite3"
    assert per_host.put("k", CachedReply("x", "stop", 1, 1), model="m", role="r") and per_host.get("k")
    assert RequestCache(home / "c", shared=True).path.name == FILE_NAME  # shared: one file, rollback journal
    assert RequestCache(tmp_path / "local").path.name == FILE_NAME
    monkeypatch.setattr(store, "_MOUNTS", str(tmp_path / "no-such-file"))  # not Linux: no mount table
    assert store.network_fs(home) == ""


# --------------------------------------------------------------------------- concurrency

_WRITER = """
import sys, warnings
from qdsearch.llm.cache import CachedReply, RequestCache
warnings.simplefilter("error")
folder, me, other, n, shared = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
c = RequestCache(folder, shared=shared, timeout_s=30)
seen = 0
for i in range(n):
    assert c.put(f"{me}-{i}", CachedReply(f"{me} reply {i}", "stop", i, 2 * i), model="m", role=me, place=f"1/{me}/x/{i}")
    assert c.get(f"{me}-{i}").text == f"{me} reply {i}"
    got = c.get(f"{other}-{i}")
    seen += got is not None and got.text == f"{other} reply {i}"
assert c.enabled, c.error
print(seen)
"""


@pytest.mark.parametrize("shared", [False, True], ids=["wal", "shared-folder"])
def test_two_processes_write_and_read_one_cache_at_once(tmp_path: Path, shared: bool) -> None:
    n = 300
    folder = str(tmp_path / "shared-cache")
    RequestCache(folder, shared=shared).count()  # the file exists before both start: they race on writes only
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, folder, me, other, str(n), str(int(shared))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    c = RequestCache(folder, shared=shared)
    assert c.count() == 2 * n and c.count("1/a/") == n and c.count("1/b/") == n
    st = c.stats()
    assert st["roles"] == {"a": n, "b": n} and st["sampled"] == 0 and not st["error"]
    assert st["prompt_tokens"] == 2 * sum(range(n))


# --------------------------------------------------------------------------- config, open_cache, CLI


def test_cache_config_keys_are_validated_naming_the_key() -> None:
    assert from_dict({"cache": False}).cache.enabled is False
    assert from_dict({}).cache == CacheConfig()
    assert from_dict({"cache": {"dir": "/x", "shared": True}}).cache.shared
    for bad, key in [
        ({"timeout_s": 0}, "cache.timeout_s"),
        ({"timeout_s": "slow"}, "cache.timeout_s"),
        ({"shared": True}, "cache.shared"),
        ({"dir": " /x"}, "cache.dir"),
        ({"enabled": "yes"}, "cache.enabled"),
        ({"dirr": "/x"}, "cache.dirr"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            from_dict({"cache": bad})
    with pytest.raises(ConfigError, match="cache"):
        from_dict({"cache": "off"})


def test_open_cache_is_one_object_per_folder_and_honours_off(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    on = CacheConfig(dir=str(tmp_path / "c"))
    assert open_cache(on) is open_cache(on) and open_cache(on) is not None
    assert open_cache(CacheConfig(enabled=False)) is None
    monkeypatch.setenv("QDSEARCH_CACHE_DIR", str(tmp_path / "default"))
    assert cache_dir() == tmp_path / "default" and cache_dir(on) == tmp_path / "c"
    monkeypatch.setenv("QDSEARCH_NO_CACHE", "1")
    assert open_cache(on) is None


def test_cli_cache_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qdsearch.cli import main

    folder = tmp_path / "c"
    c = RequestCache(folder)
    c.put("k1", CachedReply("a", "stop", 10, 5, 0.01), model="m1", role="judge")
    c.put("k2", CachedReply("b", "stop", 20, 5), model="m1", role="deepen", place="3/c1/deepen/0", sampled=True)
    c.close()
    assert main(["cache", "stats", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "2 replies (1 sampled, 1 by content)" in out and "save 40 tokens" in out and "judge 1" in out
    assert main(["cache", "stats", "--dir", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 2
    assert main(["cache", "clear", "--dir", str(folder), "--older-than", "1"]) == 0  # both are newer
    assert "removed 0" in capsys.readouterr().out and RequestCache(folder).count() == 2
    assert main(["cache", "clear", "--dir", str(folder), "--older-than", "-1"]) == 2
    assert "--older-than" in capsys.readouterr().err
    assert main(["cache", "clear", "--dir", str(folder)]) == 0
    assert "removed 2" in capsys.readouterr().out and RequestCache(folder).count() == 0
    # a corrupt file: stats says so (exit 2), clear removes it
    (folder / FILE_NAME).write_bytes(b"junk" * 100)
    for p in folder.glob(FILE_NAME + "-*"):
        p.unlink()
    assert main(["cache", "stats", "--dir", str(folder)]) == 2
    assert "not a readable request cache" in capsys.readouterr().err
    assert main(["cache", "clear", "--dir", str(folder)]) == 0
    assert not (folder / FILE_NAME).exists()


# --------------------------------------------------------------------------- measure --judge


def _judge_responder(body: dict[str, Any]) -> str:
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    if "intention tags" in system:
        return json.dumps({"tags": ["a", "b"]})
    if "Broken" in user:
        return "I think it is quite good."  # never JSON: every attempt fails
    return json.dumps({"quality": 7, "complexity": 2, "reason": "fake"})


def test_measure_judge_twice_asks_nothing_the_second_time(
    tmp_path: Path, fake_openai: Make, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from qdsearch.cli.measure import cmd_measure, register
    from tests.helpers import HashEmbedder

    monkeypatch.delenv("QDSEARCH_NO_CACHE", raising=False)
    srv = fake_openai(_judge_responder)
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'[endpoint]\nbase_url = "{srv.base_url}"\nmodel = "fake"\nmax_retries = 0\n'
        f'[cache]\ndir = "{tmp_path / "cache"}"\n'
    )
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": f"Task number {i} with words", "output": "x"} for i in range(5)]
    rows.append({"instruction": "Broken one", "output": "x"})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def measure(*extra: str) -> dict[str, Any]:
        parser = argparse.ArgumentParser(prog="qdsearch")
        register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["measure", str(data), "--judge", "--config", str(conf), "--json", *extra])
        args.embedder = HashEmbedder()
        assert cmd_measure(args) == 0
        result: dict[str, Any] = json.loads(capsys.readouterr().out)["d.jsonl"]
        return result

    first = measure()
    asked = len(srv.requests)
    assert asked == 5 + 2 + 6  # a verdict each (two attempts for the broken one), tags each
    assert first["judge_failures"] == 1
    assert measure() == first and len(srv.requests) == asked, "the second measure --judge made requests"
    assert measure("--no-cache") == first and len(srv.requests) == 2 * asked
