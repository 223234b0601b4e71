"""Metrics logging: one CSV row per meta-iteration, and the same scalars for TensorBoard."""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

from adaptrl.errors import UserError
from adaptrl.runs.files import METRICS_FILE, atomic_write


def _read_metric_lines(path: Path) -> tuple[bytes | None, list[tuple[int, bytes, list[str]]]]:
    """The header line and the well-formed rows ``(iteration, raw line, fields)`` of a
    metrics CSV; a line cut short by a kill, or any malformed line, is skipped."""
    try:
        if not path.is_file():
            return None, []
        raw = path.read_bytes()
    except OSError:
        return None, []
    lines = raw.splitlines(keepends=True)
    complete = [ln for ln in lines if ln.endswith(b"\n")]
    if not complete:
        return None, []
    header, rows = complete[0], []
    try:
        columns = next(csv.reader([header.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None, []
    if not columns or columns[0] != "iteration":
        return None, []
    for ln in complete[1:]:
        try:
            fields = next(csv.reader([ln.decode("utf-8")]))
            values = [float(v) for v in fields]
        except (UnicodeDecodeError, csv.Error, StopIteration, ValueError):
            continue
        if len(values) != len(columns) or not values[0].is_integer():
            continue
        rows.append((int(values[0]), ln, fields))
    return header, rows


def _tensorboard():
    """tensorboardX's synchronous event writer and protos, imported without torch:
    tensorboardX imports torch at module level when it is installed (2 s and ~300 MB per
    process) though scalars never need it. A ``None`` entry in ``sys.modules`` makes that
    optional import fail; it is removed again so a later ``import torch`` works as usual."""
    blocked = "tensorboardX" not in sys.modules and "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto import event_pb2, summary_pb2
    finally:
        if blocked and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return EventsWriter, event_pb2, summary_pb2


class MetricsLog:
    """Per-iteration metrics in CSV and TensorBoard.

    Rows are kept in memory and written — CSV appended, TensorBoard events written
    synchronously, both fsynced — by :meth:`flush`, which the training loop calls before
    each checkpoint commits. So everything up to a checkpoint is on disk when the
    checkpoint is. On resume from iteration ``start``, CSV rows at or past ``start`` (and a
    line cut short by a kill) are dropped, and a new event file opens with a
    ``SessionLog.START`` at step ``start`` (TensorBoard's purge marker), which hides the
    older files' events at those steps: nothing is duplicated and nothing is lost.
    """

    def __init__(self, run_dir: Path, *, start: int):
        self.path = run_dir / METRICS_FILE
        self.pending: list[dict[str, float]] = []
        self.pending_tb: list[tuple[float, int, str, float]] = []
        self.columns: list[str] | None = None
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_file():
                raise UserError(f"{self.path}: metrics file is not a regular file")
            header, rows = _read_metric_lines(self.path)
            kept = [ln for it, ln, _ in rows if it < start]
            if header is not None and kept:
                self.columns = next(csv.reader([header.decode("utf-8")]))
                atomic_write(self.path, header + b"".join(kept))
            else:
                atomic_write(self.path, b"")
        events_writer, self._event_pb2, self._summary_pb2 = _tensorboard()
        # the pid suffix keeps a writer started within the same second from reusing a file
        self.tb = events_writer(str(run_dir / "events"), f".{os.getpid()}")
        purge = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
        self.tb.write_event(self._event_pb2.Event(wall_time=time.time(), step=start,
                                                  session_log=purge))
        self.tb.flush()

    def add(self, row: dict[str, float], *, extra: dict[str, float] | None = None) -> None:
        """Queue one iteration's metrics; ``extra`` scalars go to TensorBoard only."""
        self.pending.append(row)
        step, now = int(row["iteration"]), time.time()
        for k, v in {**row, **(extra or {})}.items():
            if k != "iteration":
                self.pending_tb.append((now, step, k, float(v)))

    def flush(self) -> None:
        """Write pending rows durably (called before each checkpoint is committed)."""
        if self.pending_tb:
            Summary = self._summary_pb2.Summary
            for wall_time, step, tag, value in self.pending_tb:
                self.tb.write_event(self._event_pb2.Event(
                    wall_time=wall_time, step=step,
                    summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))
            self.tb.flush()  # flushes and fsyncs
            self.pending_tb.clear()
        if not self.pending:
            return
        new = self.columns is None
        self.columns = self.columns or list(self.pending[0])
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            if new:
                w.writeheader()
            w.writerows(self.pending)
            f.flush()
            os.fsync(f.fileno())
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The run's metrics rows (a trailing line cut short by a kill is ignored)."""
    header, rows = _read_metric_lines(run_dir / METRICS_FILE)
    if header is None:
        return []
    columns = next(csv.reader([header.decode("utf-8")]))
    return [{k: float(v) for k, v in zip(columns, fields, strict=True)} for _, _, fields in rows]
