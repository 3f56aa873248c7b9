"""What a cached request is keyed by: its content, and for a sampled request its place.

Two kinds of request, two kinds of key (:func:`request_key`):

* **deterministic** (:func:`is_deterministic`: temperature 0, or a judge, grader or
  tagger call): keyed by content alone, that is the endpoint's model identity
  (:func:`endpoint_identity`), the model, the messages, the response format and every
  sampling parameter. Asking the same again anywhere (another run, a resume,
  ``measure --judge``, an experiment) is answered from the cache.
* **sampled** (temperature > 0: operators, responses): keyed by content *and* by the
  call's place in a campaign (:class:`CallSite`: the run seed, the child's id, the
  call's role and how many identical requests that child made before). Re-running a
  campaign with the same seed, or resuming one after a crash, replays the replies
  already paid for; a campaign with another seed, or another child, samples afresh.
  A sampled request made outside any call site is never cached: nothing says which
  fresh sample it is meant to be.

Either kind also carries the attempt index of the ask loop (the retry after a reply
that did not parse), so a retry is a request of its own and never the reply it
rejected.

No key holds the API key, a URL's user info or query string, or any header: a key
is a SHA-256 over a canonical JSON of what the model sees.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import ipaddress
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "DETERMINISTIC_ROLES",
    "KEY_VERSION",
    "CallSite",
    "RequestKey",
    "call_site",
    "current_site",
    "endpoint_identity",
    "is_deterministic",
    "request_key",
]

KEY_VERSION = 1
"""Bumped when what a key covers changes, so old entries are never matched wrongly."""

DETERMINISTIC_ROLES = frozenset({"judge", "grade", "grader", "tags", "tag", "tagger"})
"""Call roles (a call's ``tag``) that are keyed by content whatever their temperature:
a verdict is meant to be a function of what is judged. ``judge_*`` roles (the
separate quality and complexity verdicts) count too."""


def is_deterministic(role: str, temperature: float) -> bool:
    """Whether a request is keyed by its content alone (see the module docstring)."""
    return temperature == 0 or role in DETERMINISTIC_ROLES or role.startswith("judge_")


def endpoint_identity(base_url: str) -> str:
    """What identifies the server behind ``base_url`` in a key.

    Scheme, lower-cased host, port and path; no user info, query or fragment (which
    can hold credentials). A loopback host (``localhost``, ``127.0.0.0/8``, ``::1``)
    is ``local`` without its port: a local server (the embedded model, vLLM,
    llama.cpp) gets a fresh port each start, and what it serves is told apart by the
    model name, which is part of the key.
    """
    u = urllib.parse.urlsplit(base_url.strip())
    host = (u.hostname or "").lower()
    path = u.path.rstrip("/")
    try:
        port = u.port
    except ValueError:  # an unparsable port: keep the text, minus credentials
        port = None
    loopback = host == "localhost"
    if not loopback:
        with contextlib.suppress(ValueError):
            loopback = ipaddress.ip_address(host).is_loopback
    if loopback:
        return f"local{path}"
    netloc = host if port is None else f"{host}:{port}"
    return f"{u.scheme.lower()}://{netloc}{path}"


@dataclass
class CallSite:
    """Where in a campaign the calls made under it belong.

    Attributes:
        run_seed: the campaign's ``run.seed``.
        child: the id of the child (or seed) being made: the job's cache position.
        counts: identical sampled requests seen so far under this site, by base key
            (the n-th identical request is the n-th fresh sample, not the first again).
    """

    run_seed: int
    child: str
    counts: dict[str, int] = field(default_factory=dict)


_SITE: contextvars.ContextVar[CallSite | None] = contextvars.ContextVar("qdsearch_cache_site", default=None)


def current_site() -> CallSite | None:
    """The call site of the running task (None outside any :func:`call_site`)."""
    return _SITE.get()


@contextlib.contextmanager
def call_site(run_seed: int, child: str) -> Iterator[CallSite]:
    """Makes every chat call in the block (and in tasks it starts) belong to ``child``
    of the campaign seeded ``run_seed``. A context variable, so concurrent jobs on one
    event loop each see their own."""
    site = CallSite(int(run_seed), str(child))
    token = _SITE.set(site)
    try:
        yield site
    finally:
        _SITE.reset(token)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RequestKey(NamedTuple):
    """A request's cache key, and where it was asked (for ``cache stats`` and tests).

    Attributes:
        key: the SHA-256 hex key.
        place: ``run_seed/child/role/n`` of the call site (``""`` outside one); for a
            deterministic request only where it was first asked, not part of the key.
        sampled: keyed by place too (a sampled request), not by content alone.
    """

    key: str
    place: str
    sampled: bool


def request_key(
    identity: str, request: Mapping[str, Any], role: str, site: CallSite | None, attempt: int = 0
) -> RequestKey | None:
    """The cache key of one chat request.

    Args:
        identity: :func:`endpoint_identity` of the endpoint.
        request: the request body as sent (``model``, ``messages``, ``temperature``,
            ``max_tokens``, ``response_format``, ``seed``...; never a key or header).
        role: the call's role (its ``tag``).
        site: the current call site; its ``counts`` are advanced for a sampled request.
        attempt: the attempt at one question (the ask loop's retry after a reply that
            did not parse): attempts after the first are keys of their own.

    Returns:
        The key, or None for a sampled request outside any call site (not cacheable).
    """
    t = request.get("temperature")
    temperature = 1.0 if t is None else float(t)  # unset: the endpoint's default, which samples
    body = {k: v for k, v in request.items() if k not in ("stream", "user")}
    again = [attempt] if attempt else []
    if is_deterministic(role, temperature):
        place = f"{site.run_seed}/{site.child}/{role}" if site is not None else ""
        return RequestKey(_digest([KEY_VERSION, "content", identity, body, *again]), place, False)
    if site is None:
        return None
    base = _digest([KEY_VERSION, "sampled", identity, body, site.run_seed, site.child, role, *again])
    n = site.counts.get(base, 0)
    site.counts[base] = n + 1
    key = base if n == 0 else _digest([base, n])
    return RequestKey(key, f"{site.run_seed}/{site.child}/{role}/{n}", True)
