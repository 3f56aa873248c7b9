"""Native libraries that write to file descriptor 2 themselves, silenced for a moment.

llama.cpp (token counting with the embedded model's vocabulary) and Ray's C++ GCS
client (probing a cluster) print to fd 2 directly, past Python's ``sys.stderr``; what
they print is either noise or said better by the error that follows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["quiet_stderr"]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Points fd 2 at ``/dev/null`` for the block, then back (nothing to do without an fd 2)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to quieten
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
