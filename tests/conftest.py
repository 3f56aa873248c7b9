from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The request cache (qdsearch.llm.cache, on by default) is off in tests, which count the
# requests a fake endpoint sees; tests of the cache turn it on (monkeypatch.delenv) with
# a folder of their own. Ray workers and CLI subprocesses inherit it.
os.environ["QDSEARCH_NO_CACHE"] = "1"

from tests.fakes.openai_server import FakeOpenAI  # noqa: E402


@pytest.fixture
def fake_openai() -> Iterator[Callable[..., FakeOpenAI]]:
    """A factory of started fake OpenAI servers, all stopped at teardown."""
    servers: list[FakeOpenAI] = []

    def make(responder: Any = None, **kw: Any) -> FakeOpenAI:
        srv = FakeOpenAI(responder, **kw).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def ray_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temp dir for a local Ray started by the test (``RAY_TMPDIR``), so its
    session logs can be read; short, for Ray's unix socket paths. Removed afterwards."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="qdr", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """qdsearch's on-disk caches (the reference corpus's embeddings) go to a temp dir."""
    old = os.environ.get("QDSEARCH_CACHE_DIR")
    os.environ["QDSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("qdsearch-cache"))
    yield
    if old is None:
        os.environ.pop("QDSEARCH_CACHE_DIR", None)
    else:
        os.environ["QDSEARCH_CACHE_DIR"] = old
