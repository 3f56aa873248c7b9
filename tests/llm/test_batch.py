"""The batch client (issue 18 part 2) against the fake Files and Batches server on 127.0.0.1:
results mapped by custom id, failed and expired lines retried in the next job, a job
resumed by polling after a crash, no batch API (404) in one line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from qdsearch.llm.batch import BatchClient, BatchUnavailable, LineResult, batch_cost, job_lines
from tests.fakes.batch_server import FakeBatches


def _requests(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"c{i:07d}:op", {"model": "m", "messages": [{"role": "user", "content": f"task {i}"}], "max_tokens": 32})
        for i in range(n)
    ]


@pytest.fixture
def server() -> Iterator[Any]:
    made: list[FakeBatches] = []

    def make(**kw: Any) -> FakeBatches:
        srv = FakeBatches(**kw).start()
        made.append(srv)
        return srv

    yield make
    for s in made:
        s.stop()


def _run(srv: FakeBatches, reqs: list[tuple[str, dict[str, Any]]], **kw: Any) -> dict[str, LineResult]:
    async def go() -> dict[str, LineResult]:
        client = BatchClient(srv.base_url, poll_s=0.01)
        try:
            return await client.run(reqs, **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def _text(r: LineResult) -> str:
    assert r.body is not None
    return str(r.body["choices"][0]["message"]["content"])


def test_results_are_mapped_back_by_custom_id(server: Any) -> None:
    srv = server()
    seen: list[tuple[str, list[str]]] = []

    def submitted(bid: str, ids: list[str]) -> None:
        # written down before polling: the job is not finished yet
        assert srv.batches[bid]["status"] in ("validating", "in_progress")
        seen.append((bid, ids))

    reqs = _requests(7)
    out = _run(srv, reqs, on_submitted=submitted)
    assert list(out) == [cid for cid, _ in reqs]
    assert all(r.ok and r.jobs == 1 for r in out.values())
    for i, (cid, _) in enumerate(reqs):
        assert _text(out[cid]) == f"ok: task {i}"  # the server answers in reverse order
    assert srv.created == 1 and seen == [("batch-1", [cid for cid, _ in reqs])]
    upload = srv.files["file-0"].decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in upload] == [cid for cid, _ in reqs]
    assert all(json.loads(x)["url"] == "/v1/chat/completions" for x in upload)


def test_failed_lines_are_retried_in_the_next_job(server: Any) -> None:
    # lines 1 and 4 fail on their first try, line 5 on every try
    srv = server(fail=lambda cid, attempt: (cid.startswith(("c0000001", "c0000004")) and attempt == 1)
                 or cid.startswith("c0000005"))  # fmt: skip
    reqs = _requests(6)
    out = _run(srv, reqs, max_jobs=3)
    assert srv.created == 3
    ok = {cid for cid, r in out.items() if r.ok}
    assert ok == {cid for cid, _ in reqs} - {"c0000005:op"}
    assert out["c0000001:op"].jobs == 2 and out["c0000000:op"].jobs == 1
    bad = out["c0000005:op"]
    assert bad.status == 500 and bad.jobs == 3 and "scripted failure" in bad.error and bad.retryable
    # the later jobs held only the lines still failing
    second = srv.files[srv.batches["batch-2"]["input_file_id"]].decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in second] == ["c0000001:op", "c0000004:op", "c0000005:op"]


def test_an_expired_job_loses_no_line(server: Any) -> None:
    srv = server(expire_after=3, expire_jobs=1)
    reqs = _requests(8)
    out = _run(srv, reqs)
    assert srv.batches["batch-1"]["status"] == "expired" and srv.created == 2
    assert all(r.ok for r in out.values())
    assert sum(r.jobs == 2 for r in out.values()) == 5  # the 5 lines the expired job never ran


def test_lines_never_answered_are_returned_failed_after_max_jobs(server: Any) -> None:
    srv = server(expire_after=0, expire_jobs=99)
    out = _run(srv, _requests(3), max_jobs=2)
    assert srv.created == 2
    assert all(not r.ok and r.status == 0 and "batch_expired" in r.error and r.jobs == 2 for r in out.values())


def test_a_job_is_resumed_by_polling_not_paid_again(server: Any) -> None:
    srv = server(delay_s=0.3)
    reqs = _requests(4)
    ids: list[str] = []

    async def crash() -> None:
        client = BatchClient(srv.base_url, poll_s=0.01)
        task = asyncio.ensure_future(client.run(reqs, on_submitted=lambda bid, _: ids.append(bid)))
        while not ids:
            await asyncio.sleep(0.01)
        task.cancel()  # the driver dies while the job runs
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()

    asyncio.run(crash())
    assert srv.created == 1 and srv.batches[ids[0]]["status"] != "completed"
    out = _run(srv, reqs, resume_id=ids[0])
    assert srv.created == 1, "the resumed job was paid for again"
    assert all(r.ok and r.batch_id == ids[0] for r in out.values())


def test_an_endpoint_without_a_batch_api_says_so_in_one_line(server: Any) -> None:
    srv = server(no_batch_api=True)
    with pytest.raises(BatchUnavailable) as e:
        _run(srv, _requests(2))
    msg = str(e.value)
    assert "\n" not in msg and "no batch API" in msg and "endpoint.batch = false" in msg and srv.base_url in msg


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distinct"):
        job_lines([("a", {}), ("a", {})])
    assert batch_cost(2.0, 0.5) == 1.0

    async def go() -> None:
        client = BatchClient("http://127.0.0.1:1/v1")
        try:
            with pytest.raises(ValueError, match="max_jobs"):
                await client.run(_requests(1), max_jobs=0)
        finally:
            await client.aclose()

    asyncio.run(go())
