"""Progress output and signal-stop of a training run (``adaptrl train`` and ``demo``): a
Rich progress bar on a terminal, plain flushed lines in logs and pipes, and a first SIGINT
or SIGTERM that stops at the next iteration boundary with a checkpoint."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from adaptrl.errors import UserError

#: stderr, where progress and messages go (stdout carries results)
console = Console(stderr=True)

#: seconds between two plain progress lines when stderr is not a terminal
PROGRESS_EVERY = 5.0
#: ``ADAPTRL_PROGRESS=off`` turns progress output off (a bar or plain lines)
PROGRESS_ENV = "ADAPTRL_PROGRESS"


def progress_bar(label: str, total: int, target: Console | None = None) -> Progress:
    """A progress bar that fits the terminal's width: the metrics column is dropped
    first, then the description is shortened; bar, count and ETA always stay."""
    target = target or console
    count = 2 * len(str(total)) + 1  # MofNCompleteColumn: " 12/400"
    fixed = count + 7 + 3 + 8 + 5  # count, elapsed, "eta", remaining, the spaces between
    room = target.width - fixed - 1  # the description, the bar and the space between them
    bar = max(10, min(30, room - len(label)))
    desc = max(1, min(len(label), room - bar))
    info = target.width - fixed - bar - desc - 2
    columns: list = [
        TextColumn("[bold]{task.description}",
                   table_column=Column(no_wrap=True, overflow="ellipsis", max_width=desc)),
        BarColumn(bar_width=bar), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn()]
    if info >= 12:  # room for at least one metric
        columns.append(TextColumn("{task.fields[info]}", table_column=Column(
            no_wrap=True, overflow="ellipsis", max_width=info)))
    return Progress(*columns, console=target, transient=False)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class PlainProgress:
    """Progress for logs and pipes: a plain line on stderr, flushed, when the first
    iteration is done (compilation included), then every ``every`` seconds and at the
    end: iteration, elapsed time, ETA and the current headline metrics."""

    def __init__(self, label: str, total: int, *, start: int = 0,
                 every: float = PROGRESS_EVERY, clock=time.monotonic, file=None):
        self.label, self.total, self.start, self.every = label, total, start, every
        self.clock, self.file = clock, file
        self.t0 = clock()
        self.first: tuple[float, int] | None = None  # (time, iteration) of the first report
        self.last: float | None = None  # time of the last line

    def eta(self, now: float, done: int) -> str:
        # from the steady rate after the first report, whose iteration also compiled: "?"
        # until there is one (the first iteration's time would promise minutes too many)
        if done >= self.total:
            return _clock(0)
        if self.first is None or done <= self.first[1]:
            return "?"
        since, base = self.first
        return _clock((now - since) / (done - base) * (self.total - done))

    def update(self, done: int, row: dict[str, float]) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        elif done < self.total and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        line = (f"{self.label}: iteration {done}/{self.total}, elapsed {_clock(now - self.t0)}, "
                f"eta {self.eta(now, done)}")
        metrics = _headline(row)
        print(f"{line}, {metrics}" if metrics else line, file=self.file or sys.stderr,
              flush=True)


def _headline(row: dict[str, float]) -> str:
    keys = [k for k in row if k.startswith(("return_step", "success_step", "query_mse",
                                             "trial_return"))]
    return "  ".join(f"{k}={row[k]:.3f}" for k in keys[-3:])


class _StopRequest:
    """The first SIGINT or SIGTERM during training asks the loop to stop at the next
    iteration boundary (``runs.train(should_stop=...)``); it also restores both signals'
    default action, so a second one ends the process at once, even inside a compilation
    or a long iteration (checkpoint files are written atomically, so that is safe)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.installed: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        for s in self.installed:
            signal.signal(s, signal.SIG_DFL)
        with contextlib.suppress(RuntimeError, OSError):  # stderr busy in the main thread
            print(f"\n{signal.Signals(signum).name}: stopping after this iteration and "
                  "writing a checkpoint (Ctrl-C again to exit at once)", file=sys.stderr,
                  flush=True)


@contextlib.contextmanager
def _stop_on_signals():
    """Install :class:`_StopRequest` for SIGINT and SIGTERM while training (a signal the
    parent set to be ignored, as ``nohup`` does, stays ignored)."""
    stop = _StopRequest()
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(s)
            if old is not signal.SIG_IGN:
                stop.installed[s] = signal.SIG_DFL if old is None else old
                signal.signal(s, stop.handle)
    try:
        yield stop
    finally:
        for s, old in stop.installed.items():
            signal.signal(s, old)  # type: ignore[arg-type]


class Stopped(Exception):
    """Training stopped on a signal; ``main`` says how to continue and exits 128 + signum."""

    def __init__(self, signum: int, run_dir: Path, done: int, total: int):
        self.status = 128 + signum
        resume = f"adaptrl train --resume {shlex.quote(str(run_dir))}"
        name = signal.Signals(signum).name
        if done >= total:
            super().__init__(f"{name}: the run is complete at iteration {done}")
        elif done:
            super().__init__(f"{name}: stopped at iteration {done} of {total} "
                             f"(checkpointed); to continue: {resume}")
        else:
            super().__init__(f"{name}: stopped before the first checkpoint; to continue: "
                             f"{resume}")


def train_run(run_dir: Path, *, resume: bool, label: str, iterations: int | None = None
              ) -> None:
    """Train with progress output; shared by ``train`` and ``demo``. On a terminal a
    progress bar, else plain lines (:class:`PlainProgress`); none with
    ``ADAPTRL_PROGRESS=off``. SIGINT or SIGTERM stops at the next iteration boundary with a
    checkpoint (:class:`Stopped`). ``iterations`` extends a resumed run (its config is
    rewritten only once the run's checkpoint is verified)."""
    from adaptrl import runs

    config = runs.load_run(run_dir)
    total = config.run.iterations if iterations is None else iterations
    done = runs.list_checkpoints(run_dir) if resume else []
    start = done[-1] if done else 0
    with _stop_on_signals() as stop:

        def train(on_iteration=None):
            return runs.train(run_dir, resume=resume, iterations=iterations,
                              on_iteration=on_iteration, should_stop=stop)

        if os.environ.get(PROGRESS_ENV, "").strip().lower() == "off":
            state = train()
        elif not console.is_terminal:
            plain = PlainProgress(label, total, start=start)
            state = train(lambda done, total, row: plain.update(done, row))
        else:
            with progress_bar(label, total) as progress:
                task = progress.add_task(label, total=total, completed=start,
                                         info="compiling…")

                def report(done: int, total: int, row: dict[str, float]) -> None:
                    progress.update(task, completed=done, info=_headline(row))

                try:
                    state = train(report)
                except UserError:
                    progress.live.transient = True  # erase the bar: the error is the only line
                    raise
    if stop.signum is not None:
        raise Stopped(stop.signum, run_dir, int(state["iteration"]), total)
