"""A campaign's folder on disk: config, frozen descriptor spaces, event log, snapshots.

Layout of ``archives/<run>/``::

    config.toml        the campaign config as run (no secrets: keys live in env vars)
    fingerprint.json   the descriptor-space part of the config when the run began
    projection.npz     the frozen topic projection
    centroids.npy      CVT centroids (CVT archives only)
    events.jsonl       append-only log of every seed and child, accepted or not
    events-NNNNNN.jsonl.gz  the log's closed segments, before events.jsonl (a log past
                       RunStore.segment_bytes is moved there, compressed, at a snapshot)
    checkpoint.json    the replay's fold at a byte offset of the log, and the elites then
                       (qdsearch.checkpoint: resume reads only the log after it)
    elites.parquet     latest atomic snapshot of the archive's elites
    state.json         counters at the latest snapshot
    stats.csv          one row per step (QD-score, coverage, calls, tokens...)

The event log is the source of truth: the archive and counters are rebuilt by
replaying it. A torn last line (a crash mid-write) is dropped and cut off on resume;
any other malformed line is an error naming its line number. Every other file is
written atomically (temp file, fsync, rename): a crash leaves the previous version
whole, and at most a stale ``.<name>.*.tmp`` file, removed when the folder is next
opened for writing.

The frozen descriptor spaces are checked whenever they are loaded (resume, export,
report): a folder whose log holds events but whose ``projection.npz`` (or, for a
CVT archive, ``centroids.npy``) is gone, or whose ``events.jsonl`` is gone or empty
while a snapshot exists, is refused rather than seeded again or read as empty; and
a ``config.toml`` whose descriptor space (``[archive]``, the embedding model, the
domain's axes) no longer matches ``fingerprint.json`` is refused with the keys
that changed, since every cell would change meaning.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from qdsearch.atomic import BackgroundSync, atomic_write
from qdsearch.checkpoint import LogFold, closed_segments, iter_segment, segment_name, selector_for
from qdsearch.config import CampaignConfig, load_config, to_dict
from qdsearch.descriptors.space import TopicSpace, load_topic_space
from qdsearch.stats import operator_table

__all__ = ["RunStore", "StoreError", "atomic_write", "descriptor_space", "dumps_toml"]


class StoreError(RuntimeError):
    """A run folder cannot be created, opened or read; the message names the path."""


def _atomic_write_all(items: list[tuple[Path, bytes]]) -> None:
    """Like :func:`atomic_write` for files that belong together (one folder): every
    temp file is written and fsynced first, then all are renamed back to back, so a
    crash leaves them all old or (but for microseconds between renames) all new."""
    tmps: list[str] = []
    try:
        for path, data in items:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            tmps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        while tmps:
            os.replace(tmps[0], items[len(items) - len(tmps)][0])
            tmps.pop(0)
    except BaseException:
        for tmp in tmps:
            with _suppress():
                os.unlink(tmp)
        raise
    dfd = os.open(items[0][0].parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _toml_str(s: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped and
    # takes no surrogate-pair escapes (so non-ASCII stays raw).
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: dict[str, dict[str, Any]]) -> str:
    """TOML text for a two-level table of config sections."""
    out: list[str] = []
    for section, table in data.items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


def descriptor_space(cfg: CampaignConfig) -> dict[str, Any]:
    """The config values that give a run's cells their meaning, by dotted key.

    The whole ``[archive]`` section (so keys added to it later are covered too), the
    embedding backend and model, and the domain's kind, descriptors and axes.
    """
    d = to_dict(cfg)
    out = {f"archive.{k}": v for k, v in d["archive"].items()}
    out |= {f"embedding.{k}": d["embedding"][k] for k in ("backend", "model")}
    out |= {f"domain.{k}": d["domain"][k] for k in ("kind", "descriptors")}
    out["domain.axes"] = {k: list(v) for k, v in cfg.domain.axis_labels().items()}
    return out


# Keys a run folder's config may lack because they did not exist when it was made,
# and the value they had then: every run before topic regions used PCA axes.
_LEGACY = {"archive.topic": "pca"}


def _legacy_topic(path: Path, cfg: CampaignConfig) -> CampaignConfig:
    """A run folder's config; one written before ``archive.topic`` existed is a PCA run."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return cfg
    if isinstance(raw.get("archive"), dict) and "topic" not in raw["archive"]:
        return dataclasses.replace(cfg, archive=dataclasses.replace(cfg.archive, topic="pca"))
    return cfg


def _fingerprint(space: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(space, sort_keys=True, ensure_ascii=False)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "descriptor_space": space}


def _changed_keys(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every key whose value differs. A key the saved
    fingerprint lacks (added to the config since) counts as its default value; a
    key the config no longer has is ignored (config.toml could not set it)."""
    defaults = descriptor_space(CampaignConfig())
    out = []
    for key in now:
        old = saved.get(key, _LEGACY.get(key, defaults.get(key)))
        if old != now[key]:
            out.append(f"{key}: {json.dumps(old)} -> {json.dumps(now[key])}")
    return out


# The columns of qdsearch.archive.elites_frame a checkpoint restores an archive from.
CHECKPOINT_COLUMNS = ("id", "instruction", "input", "response", "quality", "complexity", "measures", "cell",
                      "operator", "parent_id", "generation")  # fmt: skip


class RunStore:
    """One campaign folder. Holds an exclusive lock while open for writing.

    Attributes:
        segment_bytes: at a snapshot that wrote a checkpoint at the end of a log that has
            grown to this size, the log is closed as a segment and compressed (gzip), and
            a new ``events.jsonl`` begun; the segments and ``events.jsonl`` are one log to
            every reader (:meth:`events`).
    """

    segment_bytes = 64 * 2**20

    def __init__(self, path: Path, cfg: CampaignConfig) -> None:
        self.path = path
        self.cfg = cfg
        self._lock: BinaryIO | None = None
        self._events: BinaryIO | None = None
        self._since_sync = 0
        self._sync = BackgroundSync()  # the log's periodic fsync
        # The fold of every event logged (qdsearch.checkpoint), kept up to date by append
        # and written with each snapshot; None: no checkpoint is written (the folder was
        # opened without one, or an append failed).
        self._fold: LogFold | None = None
        self._offset = 0  # bytes of the log the fold covers
        # The campaign's archive (follow_archive), and whether the last snapshot could
        # write no checkpoint (inside a generation): one is written where the next begins.
        self._archive_of: Callable[[], Any] | None = None
        self._checkpoint_due = False

    # ------------------------------------------------------------------ open/create
    @classmethod
    def create(cls, cfg: CampaignConfig, root: str | Path | None = None) -> RunStore:
        """Creates ``<root>/<cfg.run.name>/`` and writes the config.

        Raises:
            StoreError: the folder exists already (resume it instead), or the parent
                folder cannot be written.
        """
        base = Path(root if root is not None else cfg.run.out_dir)
        path = base / cfg.run.name
        if path.exists() and any(path.iterdir()):
            raise StoreError(
                f"{path}: run folder exists already; resume it with `qdsearch resume {path}` or pick another run.name"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"{path}: cannot create run folder ({e.strerror or e})") from None
        store = cls(path, cfg)
        store._acquire()
        atomic_write(path / "config.toml", dumps_toml(to_dict(cfg)).encode())
        store._write_fingerprint()
        store.follow(LogFold(selector_for(cfg)))
        return store

    @classmethod
    def open(cls, path: str | Path, *, write: bool = True) -> RunStore:
        """Opens an existing run folder (for resume, export, stats).

        Raises:
            StoreError: not a run folder, or another process holds it.
        """
        p = Path(path)
        if not (p / "config.toml").is_file():
            raise StoreError(f"{p}: not a qdsearch run folder (no config.toml)")
        store = cls(p, _legacy_topic(p / "config.toml", load_config(p / "config.toml")))
        if write:
            store._acquire()
        return store

    def _acquire(self) -> None:
        f = open(self.path / ".lock", "ab")  # noqa: SIM115
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise StoreError(f"{self.path}: another qdsearch process is running this campaign") from None
        self._lock = f
        # Temp files of atomic writes cut short by a crash; no writer can own them now.
        for tmp in self.path.glob(".*.tmp"):
            with _suppress():
                tmp.unlink()

    def close(self) -> None:
        if self._events is not None:
            try:
                self._sync.close()
                self._events.flush()
                os.fsync(self._events.fileno())
            finally:
                self._events.close()
                self._events = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frozen spaces
    def save_projection(self, proj: TopicSpace, centroids: np.ndarray | None = None) -> None:
        if centroids is not None:
            buf = _npy_bytes(centroids)
            atomic_write(self.path / "centroids.npy", buf)
        fd, tmp = tempfile.mkstemp(suffix=".npz")
        os.close(fd)
        try:
            proj.save(tmp)
            atomic_write(self.path / "projection.npz", Path(tmp).read_bytes())
        finally:
            os.unlink(tmp)

    def load_projection(self) -> tuple[TopicSpace, np.ndarray | None] | None:
        """The saved (projection, centroids), or None before the seed phase finished.

        The folder is checked first (see the module docstring); a folder opened for
        writing that has no ``fingerprint.json`` yet (made by an older version) gets
        one from its config.

        Raises:
            StoreError: naming the missing file, or the descriptor-space keys of
                ``config.toml`` that changed since the run began.
        """
        p = self.path / "projection.npz"
        ev = self.path / "events.jsonl"
        logged = (ev.is_file() and ev.stat().st_size > 0) or bool(closed_segments(self.path))
        snapshots = [n for n in ("state.json", "elites.parquet") if (self.path / n).is_file()]
        if not p.is_file():
            if logged or snapshots:
                raise StoreError(
                    f"{p}: missing, so the campaign has no archive yet although "
                    f"{ev.name if logged else snapshots[0]} holds results: the frozen topic projection "
                    "cannot be refitted over them; restore the file, or start a new run"
                )
            return None
        c = self.path / "centroids.npy"
        if self.cfg.archive.kind == "cvt" and not c.is_file():
            raise StoreError(
                f"{c}: missing; a CVT archive's cells are its saved centroids: restore the file, or start a new run"
            )
        if snapshots and not logged:
            raise StoreError(
                f"{ev}: {'empty' if ev.is_file() else 'missing'}, but {snapshots[0]} holds a snapshot: "
                "the event log is the run's only source of truth; restore it (nothing is re-seeded or exported "
                "from an empty log)"
            )
        self._check_fingerprint()
        return load_topic_space(p), (np.load(c) if c.is_file() else None)

    def _write_fingerprint(self) -> None:
        data = json.dumps(_fingerprint(descriptor_space(self.cfg)), indent=2, sort_keys=True, ensure_ascii=False)
        atomic_write(self.path / "fingerprint.json", data.encode())

    def _check_fingerprint(self) -> None:
        f = self.path / "fingerprint.json"
        if not f.is_file():
            if self._lock is not None:  # an older run folder, opened to resume
                self._write_fingerprint()
            return
        try:
            saved = json.loads(f.read_text(encoding="utf-8"))["descriptor_space"]
            if not isinstance(saved, dict):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreError(f"{f}: unreadable descriptor-space fingerprint") from None
        changed = _changed_keys(saved, descriptor_space(self.cfg))
        if changed:
            raise StoreError(
                f"{self.path / 'config.toml'}: the descriptor space differs from the one this run was made with "
                f"({f.name}): {'; '.join(changed)}. Its cells would change meaning: put the old values back, "
                "or start a new run with the new ones (qdsearch run CONFIG --name NEW_NAME)"
            )

    # ------------------------------------------------------------------ event log
    def _events_file(self) -> BinaryIO:
        if self._events is None:
            self._events = open(self.path / "events.jsonl", "ab")  # noqa: SIM115
        return self._events

    def follow(self, fold: LogFold) -> None:
        """Keeps ``fold``, the fold of the whole log as it is now (its own copy, not the
        campaign's counters), up to date with every event appended, and writes it as
        the checkpoint with each :meth:`snapshot`."""
        p = self.path / "events.jsonl"
        self._fold, self._offset = fold, (p.stat().st_size if p.is_file() else 0)

    def follow_archive(self, archive: Callable[[], Any]) -> None:
        """``archive()`` is the campaign's archive (None before the seed phase): under the
        generational schedule, where a snapshot fell inside a generation, the checkpoint
        is written from it just before the next ``generation`` event instead."""
        self._archive_of = archive

    def _checkpoint_at_generation(self) -> None:
        fold, archive = self._fold, self._archive_of() if self._archive_of is not None else None
        if fold is None or archive is None or fold.generation_open:
            return
        from qdsearch import checkpoint
        from qdsearch.archive import elites_frame

        if self._events is not None:
            self._events.flush()
            os.fsync(self._events.fileno())
        checkpoint.write(self.path, fold, elites_frame(archive), self._offset)
        self._checkpoint_due = False

    def append(self, event: dict[str, Any]) -> None:
        """Appends one event as a JSON line; written through to the OS at once."""
        if self._checkpoint_due and event.get("type") == "generation":
            self._checkpoint_at_generation()
        try:
            f = self._events_file()
            line = json.dumps(event, ensure_ascii=False, allow_nan=False).encode() + b"\n"
            f.write(line)
            f.flush()
        except BaseException:
            # The log may hold part of the line, or miss an event the campaign's archive
            # took in: no checkpoint (of the snapshot's elites) past it.
            self._fold = None
            raise
        if self._fold is not None:
            self._offset += len(line)
            try:
                self._fold.update(event)
            except (KeyError, TypeError, ValueError, AttributeError):  # not an event the fold knows
                self._fold = None
        self._since_sync += 1
        if self._since_sync >= 64:
            self._sync.request(f.fileno())  # on a thread: the loop does not wait for the disk
            self._since_sync = 0

    def repair(self) -> None:
        """Cuts a torn last record off the log, as :meth:`events` with ``repair`` does,
        reading only the log's end: a fragment after the last newline, or a last complete
        line that does not parse."""
        p = self.path / "events.jsonl"
        if not p.is_file():
            return
        with open(p, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            end, tail = size, b""
            while end > 0:  # read back to the start of the last complete line
                start = max(0, end - 65536)
                f.seek(start)
                tail = f.read(end - start) + tail
                end = start
                whole = tail.endswith(b"\n")
                if (not whole and b"\n" in tail) or (whole and b"\n" in tail.rstrip(b"\n")):
                    break
            base = size - len(tail)
            cut = tail.rfind(b"\n") + 1
            if cut < len(tail):  # a fragment without its newline
                f.truncate(base + cut)
                return
            body = tail.rstrip(b"\n")
            line_start = body.rfind(b"\n") + 1
            last = body[line_start:]
            if not last.strip():
                return
            try:
                ok = isinstance(json.loads(last), dict)
            except ValueError:
                ok = False
            if not ok:
                f.truncate(base + line_start)

    def events(self, *, repair: bool = False) -> Iterator[dict[str, Any]]:
        """Yields the logged events in order.

        A torn last line (no newline, or unparsable) is skipped; with ``repair`` it
        is also cut off the file so later appends start on a clean line.

        Raises:
            StoreError: a malformed line before the last one (names the line).
        """
        for seg in closed_segments(self.path):  # closed whole: no torn line
            try:
                yield from iter_segment(seg)
            except (ValueError, OSError, EOFError) as e:
                raise StoreError(f"{e}") from None
        p = self.path / "events.jsonl"
        if not p.is_file():
            return
        data = p.read_bytes()
        lines = data.split(b"\n")
        # The last element follows the last newline: non-empty means a torn write.
        # Then that fragment is the torn record and every complete line must parse;
        # otherwise the last complete line may be the torn (unparsable) one.
        last_full = len(lines) - 2 if not lines[-1].strip() else -1
        while last_full >= 0 and not lines[last_full].strip():
            last_full -= 1
        good_end = 0
        pos = 0
        for no, line in enumerate(lines[:-1], 1):
            pos += len(line) + 1
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict):
                    raise ValueError("not an object")
            except ValueError:
                if no - 1 == last_full:  # a torn final record
                    break
                raise StoreError(f"{p}:{no}: malformed event record") from None
            good_end = pos
            yield ev
        if repair and good_end < len(data):
            with open(p, "r+b") as f:
                f.truncate(good_end)

    # ------------------------------------------------------------------ snapshots, stats
    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None:
        """Atomically writes the elites (parquet), the counters (JSON) and the operator
        table (CSV), as one unit (see :func:`_atomic_write_all`)."""
        if self._events is not None:
            os.fsync(self._events.fileno())
        items = [
            (self.path / "elites.parquet", elites.to_parquet(index=False)),
            (self.path / "state.json", json.dumps(state, indent=2, sort_keys=True).encode()),
        ]
        if state.get("ops"):
            items.append((self.path / "operators.csv", operator_table(state["ops"]).to_csv(index=False).encode()))
        _atomic_write_all(items)
        fold = self._fold
        # Under the generational schedule a resume draws an unfinished generation again
        # from the log at its start: a checkpoint only where the last one is complete
        # (else where the next one begins: follow_archive).
        inside = self.cfg.runtime.schedule == "generational" and fold is not None and fold.generation_open
        self._checkpoint_due = inside
        if fold is not None and not inside:
            from qdsearch import checkpoint

            if set(CHECKPOINT_COLUMNS) <= set(elites.columns):  # a campaign's elites (not a test's table)
                checkpoint.write(self.path, fold, elites, self._offset)
                if self._offset >= self.segment_bytes:
                    self._close_segment()
                    checkpoint.write(self.path, fold, elites, 0)

    def _close_segment(self) -> None:
        """Moves ``events.jsonl`` to the next closed segment and compresses it. Every
        step leaves a whole log behind: the rename makes it a plain segment (no
        ``events.jsonl`` until the next append), the compressed copy is written
        atomically, and only then is the plain one removed (while both are there,
        readers take the plain one)."""
        import gzip
        import shutil

        if self._events is not None:
            self._sync.wait()
            self._events.flush()
            os.fsync(self._events.fileno())
            self._events.close()
            self._events = None
        number = len(closed_segments(self.path)) + 1
        plain = self.path / segment_name(number, compressed=False)
        os.replace(self.path / "events.jsonl", plain)
        _fsync_dir(self.path)
        self._offset = 0
        packed = self.path / segment_name(number)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{packed.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as raw, open(plain, "rb") as src:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as z:
                    shutil.copyfileobj(src, z, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, packed)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise
        _fsync_dir(self.path)
        os.unlink(plain)

    def read_state(self) -> dict[str, Any]:
        """The counters of the latest snapshot (``state.json``); ``{}`` before the first.

        Raises:
            StoreError: ``state.json`` is unreadable or not a JSON object.
        """
        p = self.path / "state.json"
        if not p.is_file():
            return {}
        try:
            state = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise StoreError(f"{p}: unreadable snapshot ({e})") from None
        if not isinstance(state, dict):
            raise StoreError(f"{p}: not a JSON object")
        return state

    def append_stats(self, row: dict[str, Any]) -> None:
        p = self.path / "stats.csv"
        new = not p.exists()
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def read_stats(self) -> pd.DataFrame:
        p = self.path / "stats.csv"
        return pd.read_csv(p) if p.is_file() else pd.DataFrame()


def _fsync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
