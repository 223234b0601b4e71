"""Meta-test harness, statistics over tasks and seeds, plots."""

from adaptrl.evaluation.harness import evaluate_runs, gap_closed

__all__ = ["evaluate_runs", "gap_closed"]
