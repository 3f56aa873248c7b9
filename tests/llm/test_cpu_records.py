"""CallRecord.to_dict is dataclasses.asdict of the record."""

from __future__ import annotations

import dataclasses

from qdsearch.llm.records import CallRecord


def test_to_dict_is_asdict() -> None:
    r = CallRecord("judge", "m", 10, 3, 0.25, 2, "ok", "stop", 0.001, "miss", 1, 2, 0.5)
    assert r.to_dict() == dataclasses.asdict(r)
    assert list(r.to_dict()) == list(dataclasses.asdict(r))
    plain = CallRecord("respond", "m", 0, 0, 0.0, 1, "http_429")
    assert plain.to_dict() == dataclasses.asdict(plain)
