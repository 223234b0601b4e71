"""``adaptrl sweep`` on a real 2-node Ray cluster on loopback (the session fixture
``cluster`` of tests/conftest.py, see tests/ray_cluster.py: 127.0.0.1 only) records the
same results as the same sweep run locally; a sweep run again reads its finished trials
back and reruns only what is missing.

The Ray workers import adaptrl and Ray Tune from the test's ``PYTHONPATH``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.tune", exc_type=ImportError)

from adaptrl.advisor.store import Store  # noqa: E402
from adaptrl.cli import main  # noqa: E402

#: every test that starts a Ray cluster runs in the same test process (pytest-xdist)
pytestmark = pytest.mark.xdist_group("ray")

GRID = """\
algo: maml-vpg
set: {algo.meta_batch_size: 2, algo.hidden: [8], algo.shots: 3, iterations: 2}
grid: {algo.inner_lr: [0.001, 0.01]}
eval: {num_tasks: 4, adapt_steps: 1}
"""


def _sweep(tmp_path: Path, name: str, *extra: str, capsys) -> list[dict]:
    assert main(["sweep", "--tasks", "sinusoid", "--grid", str(tmp_path / "grid.yaml"),
                 "--out", str(tmp_path / name), "--store", str(tmp_path / f"{name}.sqlite"),
                 "--workers", "1", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _recorded(path: Path) -> dict[str, tuple]:
    with Store(path) as s:
        runs = {Path(r["run_dir"]).name: (r["seed"], r["env_steps"], r["final_metrics"])
                for r in s.runs()}
        for e in s.evals():
            name = Path(json.loads(e["run_dirs"])[0]).name
            runs[name] += (e["score"], json.loads(e["result"])["curve"])
    return runs


def test_ray_sweep_records_what_the_local_sweep_records_and_resumes(cluster, tmp_path,
                                                                     capsys):
    (tmp_path / "grid.yaml").write_text(GRID)
    local = _sweep(tmp_path, "local", capsys=capsys)
    ray = _sweep(tmp_path, "ray", "--ray", cluster, capsys=capsys)
    assert [(t["strategy"], t["seed"], t["score"]) for t in local] == \
        [(t["strategy"], t["seed"], t["score"]) for t in ray]
    assert len(local) == 2
    assert _recorded(tmp_path / "local.sqlite") == _recorded(tmp_path / "ray.sqlite")
    # resume: a finished trial is read back, not rerun; a missing one is run
    first, second = (Path(t["run_dir"]) for t in local)
    stamp = (first / "summary.json").stat().st_mtime_ns
    shutil.rmtree(second)  # as if the sweep had been killed before the second trial
    again = _sweep(tmp_path, "local", capsys=capsys)
    assert [t["score"] for t in again] == [t["score"] for t in local]
    assert (first / "summary.json").stat().st_mtime_ns == stamp
    assert (second / "summary.json").is_file()
