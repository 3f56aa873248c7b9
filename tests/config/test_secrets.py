"""API keys come only from environment variables and are written nowhere: not to
logs (stdout/stderr), event logs, snapshots, stats, exports or reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qdsearch.cli import main
from qdsearch.config import ConfigError, from_dict
from qdsearch.store import dumps_toml
from tests.fakes.openai_server import Faults, Reply
from tests.fakes.world import CLAUSES, world
from tests.helpers import config_dict

CANARY = "sk-canary-" + "5e3b" * 8
VAR = "QDS_SECRET_TEST_KEY"


def _config(tmp_path: Path, base_url: str, **over: Any) -> Path:
    d = config_dict(base_url, tmp_path, **({"budget": {"max_children": 16}} | over))
    d["endpoint"]["api_key_env"] = VAR
    d["embedding"]["api_key_env"] = VAR
    d["run"]["name"] = "secret-run"
    p = tmp_path / "cfg.toml"
    p.write_text(dumps_toml(d))
    return p


def _leaks(root: Path) -> list[str]:
    return [str(f) for f in root.rglob("*") if f.is_file() and CANARY.encode() in f.read_bytes()]


def test_canary_key_is_used_but_written_nowhere(
    fake_openai: Any, tmp_path: Path, capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, CANARY)
    fake = fake_openai(world)
    cfg = _config(tmp_path, fake.base_url)
    run = tmp_path / "archives" / "secret-run"
    assert main(["run", str(cfg), "--quiet"]) == 0
    for fmt in ("jsonl", "parquet", "alpaca", "sharegpt"):
        assert main(["export", str(run), "--format", fmt]) == 0
    assert main(["report", str(run)]) == 0  # with the QDC table: embeddings from the endpoint, same key
    assert main(["operators", str(run), "--json"]) == 0
    out = capfd.readouterr()
    assert all(f"Bearer {CANARY}" == h for h in fake.auth_headers), "the key from the environment was not used"
    assert len(fake.auth_headers) > 16
    assert CANARY not in out.out and CANARY not in out.err
    assert (run / "report" / "index.html").is_file() and (run / "export" / "elites.jsonl").is_file()
    assert _leaks(tmp_path) == []
    assert VAR in (run / "config.toml").read_text()  # the variable's name is kept, never its value


def _echoing_endpoint(fake_openai: Any) -> Any:
    """The world model behind a proxy that quotes the Authorization header in every
    error: 400, 429, 500, broken (non-HTTP) answers, and embeddings it refuses."""
    fake = fake_openai(world, faults=Faults(p_400=0.05, p_429=0.05, p_500=0.05, p_broken=0.08), seed=7)
    fake.echo_auth = True
    fake.embed_poison = CLAUSES[1:4]  # clauses many children get, no seed has
    return fake


@pytest.mark.timeout(300)
@pytest.mark.parametrize("runtime", ["inprocess", "ray"])
def test_echoed_key_is_written_nowhere(
    fake_openai: Any, tmp_path: Path, capfd: Any, monkeypatch: pytest.MonkeyPatch, ray_tmpdir: Path, runtime: str
) -> None:
    monkeypatch.setenv(VAR, CANARY)
    fake = _echoing_endpoint(fake_openai)
    cfg = _config(
        tmp_path,
        fake.base_url,
        budget={"max_children": 30},
        runtime={"kind": runtime, "workers": 2},
        endpoint={"max_retries": 0},  # every fault is final, so its (echoing) detail is logged
    )
    run = tmp_path / "archives" / "secret-run"
    assert main(["run", str(cfg), "--quiet"]) == 0
    for fmt in ("jsonl", "parquet", "alpaca", "sharegpt"):
        assert main(["export", str(run), "--format", fmt]) == 0
    assert main(["report", str(run)]) == 0
    out = capfd.readouterr()
    # The endpoint did echo the key, on every kind of failure.
    for kind in ("400", "429", "500", "broken", "embed_400"):
        assert fake.stats.get(kind, 0) > 0, (kind, fake.stats)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    details = " ".join(str(e.get("detail", "")) for e in events)
    rejects = {e.get("reject") for e in events}
    assert {"llm_http_400", "llm_http_429", "llm_http_500", "llm_connection", "embed_failed"} <= rejects, rejects
    assert "[redacted]" in details  # the echoes reached the event log, cleaned
    assert CANARY not in out.out and CANARY not in out.err
    assert _leaks(tmp_path) == []
    if runtime == "ray":
        sessions = list(ray_tmpdir.rglob("session_*"))
        assert sessions and list(ray_tmpdir.rglob("raylet.out")), "Ray's session logs were not where the test looks"
    assert _leaks(ray_tmpdir) == []


def test_rejected_key_error_names_the_variable_not_the_key(
    fake_openai: Any, tmp_path: Path, capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, CANARY)
    fake = fake_openai(lambda req: Reply(status=401, content="invalid api key"))
    cfg = _config(tmp_path, fake.base_url)
    code = main(["run", str(cfg), "--quiet"])
    out = capfd.readouterr()
    assert code == 2
    assert "refused the API key" in out.err and f"${VAR}" in out.err, out.err
    assert CANARY not in out.out + out.err
    assert _leaks(tmp_path) == []
    assert "removed" in out.err and not (tmp_path / "archives" / "secret-run").exists()  # nothing half-written


def test_a_key_in_the_config_file_is_refused() -> None:
    d = {"endpoint": {"api_key": CANARY}}
    with pytest.raises(ConfigError) as e:
        from_dict(d)
    assert "endpoint.api_key: unknown key" in str(e.value)
    assert CANARY not in str(e.value)


def test_unloadable_embedding_model_is_a_clear_error(tmp_path: Path, capfd: Any, fake_openai: Any) -> None:
    fake = fake_openai(world)
    cfg = _config(tmp_path, fake.base_url, embedding={"backend": "sentence-transformers", "model": "no/such-model"})
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert "embedding.model" in err and "no/such-model" in err
