"""Joining an existing Ray cluster from the driver: loopback binding and token authentication.

Two things make ``ray.init(address=...)`` fail slowly (about 30 s of ``gcs_client``
warnings, then a bare ``ConnectionError``) where a clear line is possible:

- **Token authentication** (Ray 2.5x and later). ``ray start --head`` turns it on when
  ``RAY_AUTH_MODE`` is unset and a token exists on that machine (``~/.ray/auth_token``,
  which any local ``ray.init`` writes), but a driver given an explicit address never
  turns it on by itself: it retries without a token until it gives up. Before
  ``ray.init`` we ask the cluster once (one GCS request, about a second). A cluster on
  this machine (a loopback address) that wants a token gets the local token, as Ray
  does for ``address="auto"``; a remote one gets no token sent unasked: the error says
  to set ``RAY_AUTH_MODE=token`` and the cluster's token (``RAY_AUTH_TOKEN``,
  ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``).
- **Loopback.** Ray rewrites ``127.0.0.1`` (and ``localhost``) to this host's network
  address, both in ``ray start --node-ip-address`` and in a driver's address, and its
  gRPC servers bind every interface unless the node's address is exactly
  ``127.0.0.1``. A cluster kept on loopback (the head started with
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which stops the rewrite, see the README)
  answers only there, so a driver given a loopback address whose port does not answer
  on the host's network address connects with the rewrite off too.

Everything touching Ray's private modules is guarded: a Ray without them connects as
plain ``ray.init`` would.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

from qdsearch.quiet import quiet_stderr

__all__ = ["ClusterError", "check", "check_cluster", "connect", "is_loopback", "split_address"]

AUTH_HELP = (
    "set RAY_AUTH_MODE=token and give the cluster's token as RAY_AUTH_TOKEN (or in the file named by "
    "RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token); `ray get-auth-token` on the head node prints it"
)


class ClusterError(RuntimeError):
    """The Ray cluster at an address cannot be joined; the message says why and what to set."""


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``[v6]:port`` or ``ray://host:port``.

    Raises:
        ValueError: no port.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _host_address(ray: Any) -> str:
    """The address Ray rewrites a loopback address to ("" when unknown)."""
    try:
        return str(ray._raylet.node_ip_address_from_perspective(None))
    except Exception:
        return ""


@contextlib.contextmanager
def _loopback_kept(ray: Any, keep: bool) -> Iterator[None]:
    """While inside: Ray keeps ``127.0.0.1`` as it is (what
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` does for a process started with it)."""
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if not keep or consts is None or not hasattr(consts, "ENABLE_RAY_CLUSTER"):
        yield
        return
    old = consts.ENABLE_RAY_CLUSTER
    consts.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        consts.ENABLE_RAY_CLUSTER = old


def _auth(ray: Any) -> Any:
    """Ray's authentication hooks (None for a Ray without token authentication)."""
    raylet = getattr(ray, "_raylet", None)
    names = ("AuthenticationMode", "AuthenticationTokenLoader", "Config", "get_authentication_mode")
    if raylet is None or not all(hasattr(raylet, n) for n in names):
        return None
    return tuple(getattr(raylet, n) for n in names)


def _sync_auth_mode(auth: Any) -> None:
    """Makes this process's Ray see ``RAY_AUTH_MODE`` as it is now (Ray reads it once,
    at import; an earlier local ``ray.init`` may also have changed it)."""
    mode, loader, config, current = auth
    want_token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if want_token != (current() == mode.TOKEN):
        config.initialize("")
    loader.instance().reset_cache()


def fresh_auth(ray: Any) -> None:
    """Before this process starts a local Ray: its Ray sees ``RAY_AUTH_MODE`` and the
    token sources as they are now. Ray caches the token it last loaded, so after
    joining another cluster (with that cluster's ``RAY_AUTH_TOKEN``) a local start
    would present the old token to its own new GCS and fail to start."""
    auth = _auth(ray)
    if auth is not None:
        _sync_auth_mode(auth)


def _probe(ray: Any, address: str) -> BaseException | None:
    """One GCS request to the cluster: None if it answered, else the authentication
    error (other failures are left to ``ray.init``, which reports them itself)."""
    client = getattr(getattr(ray, "_raylet", None), "GcsClient", None)
    auth_error = getattr(getattr(ray, "exceptions", None), "AuthenticationError", None)
    if client is None or auth_error is None:
        return None
    try:
        client(address=address, cluster_id=None)
    except auth_error as e:
        return e
    except Exception:
        return None
    return None


def check(ray: Any, address: str, where: str = "runtime.ray_address") -> bool:
    """Checks that this process can join the cluster at ``address`` (a ``host:port``),
    turning on token authentication where the module docstring says.

    Returns:
        Whether Ray must keep the loopback address as it is (a loopback-bound cluster).

    Raises:
        ClusterError: nothing answers there, or the cluster wants a token this process
            does not have or has wrong (the message says what to set).
    """
    try:
        host, port = split_address(address)
    except ValueError:
        raise ClusterError(f"{where}: expected host:port, got {address!r}") from None
    if not _answers(host, port, timeout_s=3.0):
        raise ClusterError(f"{where}: nothing answers at {address} (is the Ray head node running?)")
    lan = _host_address(ray) if is_loopback(host) else ""
    keep = bool(lan) and not is_loopback(lan) and not _answers(lan, port)
    auth = _auth(ray)
    if auth is None:
        return keep
    mode, loader, _, current = auth
    with _loopback_kept(ray, keep), quiet_stderr():
        _sync_auth_mode(auth)
        err = _probe(ray, address)
        has_token = loader.instance().has_token(ignore_auth_mode=True)
        if err is not None and "RAY_AUTH_MODE" not in os.environ and has_token and is_loopback(host):
            # This machine's own cluster: use this machine's token, as Ray does for "auto".
            os.environ["RAY_AUTH_MODE"] = "token"
            _sync_auth_mode(auth)
            err = _probe(ray, address)
    if err is not None:
        if current() == mode.TOKEN and has_token:
            why = "refused this process's token (not the cluster's)"
        elif has_token:
            why = "requires token authentication, which is off here (RAY_AUTH_MODE)"
        else:
            why = "requires token authentication and this process has no token"
        raise ClusterError(f"{where}: the Ray cluster at {address} {why}: {AUTH_HELP}")
    return keep


def check_cluster(address: str, where: str) -> None:
    """:func:`check` for a caller that has not imported Ray (the command line, before
    it makes a run folder); ``auto``, ``local`` and ``ray://`` addresses are left to Ray."""
    if address in ("", "auto", "local") or address.startswith("ray://"):
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    check(ray, address, where)


def connect(ray: Any, address: str, where: str = "runtime.ray_address", **init_kwargs: Any) -> None:
    """``ray.init(address=address)`` after :func:`check`.

    Args:
        ray: the imported ``ray`` module.
        address: ``host:port`` of the cluster's GCS, ``ray://host:port``, or ``auto``.
        where: what to name in an error (the config key or the option).
        init_kwargs: passed to ``ray.init``.

    Raises:
        ClusterError: see :func:`check`; or ``ray.init`` could not join.
    """
    if address in ("auto", "local") or address.startswith("ray://"):
        ray.init(address=address, **init_kwargs)
        return
    keep = check(ray, address, where)
    with _loopback_kept(ray, keep):
        try:
            ray.init(address=address, **init_kwargs)
        except ConnectionError as e:
            raise ClusterError(f"{where}: cannot join the Ray cluster at {address} ({e})") from None
