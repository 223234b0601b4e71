"""The run directory's file names and crash-safe file primitives: atomic writes, bounded
JSON reads, the run lock, and clean-up of temporaries a kill left behind."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

from adaptrl.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
#: run files larger than this are refused before they are read
MAX_JSON_BYTES = 10 * 2**20
_TMP = re.compile(r"^\..+\.tmp-\d+$")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files left by a process killed mid-write (the run is locked, so no
    live writer owns them)."""
    for d in (run_dir, run_dir / CHECKPOINT_DIR):
        if d.is_dir():
            for p in d.iterdir():
                if _TMP.match(p.name):
                    with contextlib.suppress(OSError):
                        p.unlink()


def read_json(path: Path, *, what: str) -> Any:
    """Parse a small JSON run file; every failure is a one-line :class:`UserError`."""
    try:
        with open(path, "rb") as f:  # bounded read: the path may be a FIFO or /dev/zero
            raw = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no {what} found") from None
    except OSError as e:
        raise UserError(f"{path}: unreadable {what} ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_JSON_BYTES:
        raise UserError(f"{path}: {what} is too large")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise UserError(f"{path}: malformed {what} (not valid JSON)") from None


@contextlib.contextmanager
def _locked(run_dir: Path):
    """Hold an exclusive lock on the run while training it (released by the OS on a kill)."""
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir}: another process is training this run") from None
        yield
    finally:
        os.close(fd)
