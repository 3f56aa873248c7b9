"""Upload an export folder to a Hugging Face Hub dataset repository.

The token comes from the environment (``HF_TOKEN`` by default) and is handed to
``huggingface_hub`` for the request headers only: it is never written to a file,
a log or an error message. ``HF_ENDPOINT`` (read at call time) points the upload
at another Hub, such as a self-hosted one or a test server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["HubError", "check_push", "push_folder"]

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


class HubError(ValueError):
    """The push cannot start or the Hub refused it; the message says why in one line."""


def check_push(repo_id: str, token_env: str = "HF_TOKEN") -> str:
    """Checks what a push needs before anything is written; returns the token.

    Raises:
        HubError: a bad repo id, no token in ``token_env``, or no ``huggingface_hub``.
    """
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise HubError(f"--push-to-hub: expected ORG/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}")
    token = os.environ.get(token_env, "")
    if not token:
        raise HubError(f"--push-to-hub: set {token_env} to a Hugging Face write token (read from the environment only)")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise HubError("--push-to-hub needs the 'huggingface_hub' package: pip install 'qdsearch[hf]'") from None
    return token


def push_folder(
    folder: str | Path,
    files: Sequence[str],
    repo_id: str,
    *,
    private: bool = False,
    token_env: str = "HF_TOKEN",
    log: Callable[[str], None] | None = None,
) -> str:
    """Creates (if needed) the dataset repo ``repo_id`` and commits ``files`` to it.

    Args:
        folder: the export folder.
        files: paths relative to ``folder`` (POSIX), uploaded at the same paths.
        repo_id: ``ORG/NAME``.
        private: create the repository private (an existing one keeps its visibility).
        token_env: the environment variable holding a write token.
        log: called with one progress line per step.

    Returns:
        The commit's URL.

    Raises:
        HubError: a bad repo id, no token, ``huggingface_hub`` missing, or the Hub
            answered an error.
    """
    token = check_push(repo_id, token_env)
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    root = Path(folder)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    where = f"{api.endpoint}/datasets/{repo_id}"
    say = log or (lambda _: None)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        say(f"hub: repository {where} ready{' (private)' if private else ''}")
        ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(root / f)) for f in files]
        info = api.create_commit(
            repo_id, ops, commit_message=f"qdsearch export ({len(files)} files)", repo_type="dataset"
        )
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HubError(f"push to {where}: HTTP {status}: {first.replace(token, '***')[:200]}") from None
    except (OSError, ValueError) as e:  # connection errors, an invalid card (validate-yaml)
        msg = " ".join(str(e).split()).replace(token, "***")
        raise HubError(f"push to {where}: {type(e).__name__}: {msg[:300]}") from None
    say(f"hub: committed {len(files)} files")
    return str(info.commit_url)
