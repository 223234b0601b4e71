"""The advisor: the results store (round trip, rebuild, concurrent writers, atomicity), the
GP surrogate on a synthetic store with a known best strategy, expected improvement against
a Monte-Carlo reference, a seconds-long end-to-end advise, compare, and bad input."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from adaptrl import config as cfg
from adaptrl.advisor import features as F
from adaptrl.advisor.store import Store, family_key, rebuild
from adaptrl.advisor.surrogate import (
    Row,
    Surrogate,
    expected_improvement,
    family_features,
    store_rows,
)
from adaptrl.cli import main
from adaptrl.errors import UserError
from adaptrl.tasks import make_family

#: a tiny sinusoid MAML run: compiles and trains in seconds
TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.hidden=[8]", "--set", "algo.shots=3"]

CANDIDATES = """\
eval: {num_tasks: 4, adapt_steps: 1}
candidates:
  - name: small-step
    algo: maml-vpg
    set: {algo.inner_lr: 0.001, algo.meta_batch_size: 2, algo.hidden: [8], algo.shots: 3, iterations: 2}
  - name: usual-step
    algo: maml-vpg
    set: {algo.inner_lr: 0.01, algo.meta_batch_size: 2, algo.hidden: [8], algo.shots: 3, iterations: 2}
"""


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished tiny runs (two strategies) and one meta-test of each, recorded in a
    store of their own."""
    import os

    root = tmp_path_factory.mktemp("advisor")
    store = root / "store.sqlite"
    old = os.environ.get("ADAPTRL_STORE")
    os.environ["ADAPTRL_STORE"] = str(store)
    try:
        dirs = []
        for lr in ("0.001", "0.01"):
            d = root / f"lr{lr}"
            assert main(["train", "maml-vpg", "--tasks", "sinusoid", "--iterations", "2", *TINY,
                         "--set", f"algo.inner_lr={lr}", "--out", str(d)]) == 0
            assert main(["eval", str(d), "--num-tasks", "4", "--adapt-steps", "1",
                         "--json"]) == 0
            dirs.append(d)
    finally:
        if old is None:
            os.environ.pop("ADAPTRL_STORE")
        else:
            os.environ["ADAPTRL_STORE"] = old
    return root, store, dirs


# ---- the store ---------------------------------------------------------------------------
def test_finished_runs_and_meta_tests_are_recorded_and_rebuilt(trained, tmp_path):
    root, path, dirs = trained
    with Store(path) as s:
        recorded = s.runs(), s.evals()
    assert [r["run_dir"] for r in recorded[0]] == sorted(str(d.resolve()) for d in dirs)
    assert len(recorded[1]) == 2 and all(json.loads(e["run_dirs"]) for e in recorded[1])
    run = recorded[0][0]
    assert run["env_steps"] == 2 * 2 * 2 * 3 and run["wall_s"] > 0  # it, tasks, 2 sets, shots
    # the run directories hold it all: a rebuilt store has the same rows
    copy = tmp_path / "rebuilt.sqlite"
    counts = rebuild(copy, [root])
    assert counts["runs"] == 2 and counts["evals"] == 2
    with Store(copy) as s:
        rebuilt = s.runs(), s.evals()

    def same(rows, drop):
        return [{k: v for k, v in r.items() if k not in drop} for r in rows]

    assert same(rebuilt[0], {"recorded_at"}) == same(recorded[0], {"recorded_at"})
    assert same(rebuilt[1], {"recorded_at"}) == same(recorded[1], {"recorded_at"})


def test_rebuild_through_the_cli_and_a_bad_record_leaves_the_store_alone(trained, tmp_path,
                                                                          capsys):
    root, _, dirs = trained
    path = tmp_path / "s.sqlite"
    assert main(["store", "rebuild", str(root), "--store", str(path)]) == 0
    assert "2 runs, 2 meta-tests" in capsys.readouterr().out
    before = path.read_bytes()
    bad = tmp_path / "copy"
    import shutil

    shutil.copytree(dirs[0], bad)
    (bad / "evals" / "x.json").write_text("{not json")
    assert main(["store", "rebuild", str(root), str(bad), "--store", str(path)]) == 2
    assert "malformed meta-test record" in one_line(capsys)
    assert path.read_bytes() == before  # never half-written
    assert not list(tmp_path.glob(".s.sqlite.rebuild-*"))


def _writer(path: str, worker: int, n: int) -> None:
    with Store(Path(path)) as s:
        for i in range(n):
            s.add_run({"run_dir": f"/runs/{worker}-{i}", "algo": "maml-vpg", "tasks": "bandit",
                       "config": {"task_options": {"arms": worker}}, "seed": i,
                       "iterations": 1, "env_steps": 1, "wall_s": 0.1, "final_metrics": {}})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(path) as s:
        assert s.counts()["runs"] == 100
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        with pytest.raises(RuntimeError), s.transaction() as db:
            db.execute("INSERT INTO meta VALUES ('x', 'y')")
            raise RuntimeError("killed mid-write")
        assert s.db.execute("SELECT COUNT(*) FROM meta WHERE key='x'").fetchone()[0] == 0


def test_a_corrupt_store_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not an SQLite database, just bytes" * 100)
    with pytest.raises(UserError, match="not a readable results store"):
        Store(bad)
    assert main(["advise", "--tasks", "bandit", "--store", str(bad)]) == 2
    assert "not a readable results store" in one_line(capsys)
    assert main(["store", "rebuild", str(tmp_path), "--store", str(bad)]) == 0  # rebuilt


# ---- the surrogate and expected improvement ----------------------------------------------
def _features(i: int) -> dict:
    return {"tasks": "bandit", "kind": "rl", "measure": "return", "higher_is_better": True,
            "obs_dim": 1 + i, "actions": 3 + 2 * i, "discrete": True, "horizon": 10 * (i + 1),
            "random_mean": 0.0, "random_spread": 0.2 + 0.05 * i, "has_optimum": True,
            "optimum": 1.0, "reward_density": 0.5}


def test_reward_density_tells_sparse_from_dense_and_an_old_cache_is_measured_again(
        tmp_path):
    """The share of a random policy's steps that are rewarded: every step of point-nav
    (minus the distance), about 1% of point-nav-sparse's (1 within 0.1 of the goal). A
    store's cached features without it (an older version's) are measured again."""
    opts = cfg.to_dict(make_family("point-nav-sparse", {}))
    with Store(tmp_path / "s.sqlite") as s:
        s.set_features(family_key("point-nav-sparse", opts), "point-nav-sparse", opts,
                       {"kind": "rl", "obs_dim": 2})  # incomplete: re-measured
        sparse = family_features(s, "point-nav-sparse", opts)
        assert F.complete(sparse) and 0.0 < sparse["reward_density"] < 0.05
        assert s.features(family_key("point-nav-sparse", opts)) == sparse
    dense = F.measure_family("point-nav", make_family("point-nav", {}))
    assert dense["reward_density"] == 1.0


def _row(i: int, lr: float, score: float) -> Row:
    return Row("bandit", {"arms": 3 + 2 * i}, _features(i), "maml-vpg",
               {"inner_lr": lr, "hidden": [16], "outer_lr": 1e-3}, 10, (score,))


def test_gp_predicts_the_known_best_strategy_on_a_new_family():
    lrs = [0.01, 0.03, 0.1, 0.3, 1.0]
    truth = {lr: 0.9 - 0.3 * abs(np.log10(lr) - np.log10(0.1)) for lr in lrs}  # best: 0.1
    rows = [_row(i, lr, truth[lr] + 0.01 * i) for i in range(4) for lr in lrs]
    model = Surrogate(rows)
    new = [F.family_vector(_features(4)) + F.strategy_vector(
        "maml-vpg", {"inner_lr": lr, "hidden": [16], "outer_lr": 1e-3}, 10) for lr in lrs]
    mean, std = model.predict(new)
    assert lrs[int(np.argmax(mean))] == 0.1
    assert np.corrcoef(mean, [truth[lr] for lr in lrs])[0, 1] > 0.9
    assert np.all(std > 0) and np.all(np.abs(mean - [truth[lr] for lr in lrs]) < 0.15)


def test_columns_kernel_is_its_kernel_on_those_columns_with_exact_gradients():
    from sklearn.gaussian_process.kernels import RBF

    from adaptrl.advisor.kernels import Columns, kernel

    X = np.random.default_rng(0).normal(size=(6, 5))
    k = Columns(RBF(np.array([0.7, 2.0])), (1, 3))
    np.testing.assert_allclose(k(X), RBF(np.array([0.7, 2.0]))(X[:, [1, 3]]))
    np.testing.assert_allclose(k.diag(X), np.ones(6))
    full = kernel(2, 3)
    K, grad = full(X, eval_gradient=True)
    assert grad.shape == (6, 6, len(full.theta))
    eps = 1e-6
    for i in range(len(full.theta)):  # d K / d log-hyperparameter, by central differences
        up, down = full.theta.copy(), full.theta.copy()
        up[i] += eps
        down[i] -= eps
        fd = (full.clone_with_theta(up)(X) - full.clone_with_theta(down)(X)) / (2 * eps)
        np.testing.assert_allclose(grad[:, :, i], fd, atol=1e-6)


def _family(i: int, discrete: bool) -> dict:
    return {**_features(i), "discrete": discrete, "horizon": 10 if discrete else 100,
            "obs_dim": 1 + i if discrete else 2, "actions": 3 + i if discrete else 2}


#: (algo, options, iterations) of three strategies, and their true score on discrete and
#: on continuous families: memory wins on the discrete ones, gradient steps on the others
_STRATEGIES = {"rl2": ("rl2", {"hidden": 32, "trial_episodes": 2, "lr": 1e-3}, 60),
               "trpo": ("maml-trpo", {"inner_lr": 0.1, "hidden": [16]}, 15),
               "trpo-big-step": ("maml-trpo", {"inner_lr": 1.0, "hidden": [16]}, 15)}
_TRUTH = {True: {"rl2": 0.7, "trpo": 0.2, "trpo-big-step": 0.05},
          False: {"rl2": 0.3, "trpo": 0.6, "trpo-big-step": 0.4}}


def test_gp_carries_a_family_dependent_ranking_to_a_held_out_family():
    """Leave-one-family-out on a synthetic store whose best strategy depends on the family
    (the kernel's strategy x family term): every held-out family gets the right ranking."""
    fams = [(i, d) for i in range(3) for d in (True, False)]
    rows = [Row("bandit", {"arms": 10 * i + d}, _family(i, d), *_STRATEGIES[n],
                (_TRUTH[d][n] + 0.02 * i,)) for i, d in fams for n in _STRATEGIES]
    for i, d in [(1, True), (1, False)]:  # a discrete and a continuous family held out
        held = [r for r in rows if r.family == {"arms": 10 * i + d}]
        model = Surrogate([r for r in rows if r.family != {"arms": 10 * i + d}])
        mean, std = model.predict([r.x() for r in held])
        truth = [_TRUTH[d][n] for n in _STRATEGIES]
        assert list(np.argsort(mean)) == list(np.argsort(truth)), (i, d, mean)
        assert np.all(std > 0) and np.all(np.abs(mean - np.array(truth)) < 0.15)


def test_expected_improvement_matches_monte_carlo_and_prefers_the_uncertain_option():
    rng = np.random.default_rng(0)
    mean, std, best = np.array([0.5, 0.45, 0.2]), np.array([0.01, 0.3, 0.05]), 0.55
    ei = expected_improvement(mean, std, best, xi=0.0)
    draws = rng.normal(mean, std, size=(400_000, 3))
    mc = np.maximum(draws - best, 0).mean(0)
    np.testing.assert_allclose(ei, mc, atol=2e-3)
    assert int(np.argmax(ei)) == 1  # lower mean, but a real chance of beating the best
    assert expected_improvement(np.array([0.7]), np.array([0.0]), 0.5, xi=0.0)[0] == \
        pytest.approx(0.2)


def test_store_rows_group_seeds_and_skip_out_of_distribution_meta_tests(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        opts = {"arms": 5, "pulls": 10, "split_seed": 0, "train_pool": 0}
        key = family_key("bandit", opts)
        s.set_features(key, "bandit", opts, _features(1))
        for seed, score in ((0, 0.3), (1, 0.5)):
            config = {"algo": "maml-vpg", "tasks": "bandit", "task_options": opts,
                      "algo_options": {"inner_lr": 0.1}}
            s.add_run({"run_dir": f"/r/{seed}", "algo": "maml-vpg", "tasks": "bandit",
                       "config": config, "seed": seed, "iterations": 3, "env_steps": 1,
                       "wall_s": 1.0, "final_metrics": {}})
            result = {"algo": "maml-vpg", "tasks": "bandit", "num_tasks": 4, "measure": "return",
                      "checkpoints": [{"run": f"/r/{seed}", "iteration": 3}],
                      "curve": [{"seen": 0, "mean": 0.0}, {"seen": 1, "mean": score}]}
            s.add_eval(result, opts)
            s.add_eval({**result, "curve": [{"seen": 1, "mean": 9.0}]}, {**opts, "arms": 7})
        rows = store_rows(s)
    assert len(rows) == 1 and rows[0].scores == (0.3, 0.5)


# ---- advise end to end -------------------------------------------------------------------
def test_advise_end_to_end_with_a_budget(trained, tmp_path, capsys, monkeypatch):
    from adaptrl.advisor import advise as advise_module

    # a small prior (the shipped one has its own test): the GP's fit is most of advise's time
    monkeypatch.setattr(advise_module, "prior_rows",
                        lambda: [_row(i, lr, 0.5 + 0.1 * i) for i in range(2)
                                 for lr in (0.01, 0.1)])
    _, path, _ = trained
    store = tmp_path / "store.sqlite"
    store.write_bytes(path.read_bytes())
    cands = tmp_path / "c.yaml"
    cands.write_text(CANDIDATES)
    argv = ["advise", "--tasks", "sinusoid", "--candidates", str(cands), "--store", str(store),
            "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["comparable_runs"] == 2 and "note" not in report
    names = [c["name"] for c in report["candidates"]]
    assert sorted(names) == ["small-step", "usual-step"]
    assert all("measured" in c and np.isfinite(c["std"]) for c in report["candidates"])
    # a family variant with no runs: said so, predicted from the rest, then one BO run
    argv = ["advise", "--tasks", "sinusoid", "--set", "tasks.amplitude_high=2.0",
            "--candidates", str(cands), "--store", str(store), "--budget", "1",
            "--out", str(tmp_path / "bo"), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["comparable_runs"] == 0 and "no comparable runs" in report["note"]
    assert len(report["bo"]) == 1 and np.isfinite(report["bo"][0]["measured"])
    assert (tmp_path / "bo" / f"{report['bo'][0]['name']}-seed0" / "summary.json").is_file()
    ranked = {c["name"]: c for c in report["candidates"]}
    assert "measured" in ranked[report["bo"][0]["name"]]  # recorded and refit


@pytest.mark.parametrize("text, needle", [
    ("candidates: []\n", "non-empty list"),
    ("candidates:\n  - {name: a}\n", "needs 'algo'"),
    ("candidates:\n  - {algo: maml-vpg, set: {algo.nope: 1}}\n", "unknown config key"),
    ("candidates: [\n", "malformed YAML"),
    ("candidates:\n  - {algo: maml-vpg}\n  - {algo: maml-vpg, name: maml-vpg-1}\n",
     "duplicate name"),
])
def test_a_malformed_candidates_file_is_one_line(text, needle, tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    store = tmp_path / "s.sqlite"
    assert main(["advise", "--tasks", "sinusoid", "--candidates", str(f), "--store",
                 str(store)]) == 2
    assert needle in one_line(capsys)
    assert not store.exists()  # refused before the store is opened


def test_the_shipped_prior_holds_the_features_and_candidates_of_this_version():
    """The prior (benchmarks/advisor_holdout.py --export-prior) must be regenerated when
    the family features or the default candidates change; this fails until it is."""
    from adaptrl.advisor.strategies import load_candidates, resolve_strategy
    from adaptrl.advisor.surrogate import prior_rows

    rows = prior_rows()
    assert rows and all(F.complete(r.features) for r in rows)
    for r in rows:
        assert len(r.x()) == len(F.FAMILY_FEATURES) + len(F.STRATEGY_FEATURES)
    shipped = {json.dumps([c.algo, c.to_json()["algo_options"], c.run.iterations],
                          sort_keys=True)
               for s in load_candidates(None)[0]
               for c in [resolve_strategy(s, "point-nav", seed=0)]}
    assert shipped <= {r.strategy_key for r in rows if r.tasks == "point-nav"}


def test_an_empty_store_falls_back_to_the_prior(tmp_path, capsys, monkeypatch):
    from adaptrl.advisor import advise as advise_module

    monkeypatch.setattr(advise_module, "prior_rows", lambda: [])
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    cands = tmp_path / "c.yaml"
    cands.write_text(CANDIDATES)
    assert main(["advise", "--tasks", "sinusoid", "--candidates", str(cands), "--store",
                 str(empty)]) == 2  # nothing at all to fit on: one line
    assert "no measured runs" in one_line(capsys)
    # with a prior (here: synthetic bandit results), a prediction before any run
    prior = [_row(i, lr, 0.5 + 0.1 * i) for i in range(3) for lr in (0.01, 0.1)]
    monkeypatch.setattr(advise_module, "prior_rows", lambda: prior)
    assert main(["advise", "--tasks", "sinusoid", "--candidates", str(cands), "--store",
                 str(empty), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["comparable_runs"] == 0 and "no comparable runs" in report["note"]
    assert all(c["std"] > 0.05 for c in report["candidates"])  # wide: far from any data


def test_unreachable_ray_address_is_one_line(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("algo: maml-vpg\nset: {iterations: 1}\ngrid: {algo.inner_lr: [0.1]}\n")
    assert main(["sweep", "--tasks", "sinusoid", "--grid", str(grid), "--ray", "127.0.0.1:1",
                 "--out", str(tmp_path / "sw"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in one_line(capsys)
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("text, needle", [
    ("algo: maml-vpg\ngrid: {algo.inner_lr: 0.1}\n", "'grid' a mapping of KEY: [values]"),
    ("algo: [1]\n", "'algo' names an algorithm"),
    ("algo: maml-vpg\nbogus: 1\n", "unknown key 'bogus'"),
])
def test_a_malformed_grid_is_one_line(text, needle, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(text)
    assert main(["sweep", "--tasks", "sinusoid", "--grid", str(grid), "--out",
                 str(tmp_path / "sw"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert needle in one_line(capsys)


# ---- compare -----------------------------------------------------------------------------
def test_compare_two_strategies_table_json_and_plot(trained, tmp_path, capsys):
    _, _, dirs = trained
    png = tmp_path / "cmp.png"
    assert main(["compare", *map(str, dirs), "--num-tasks", "6", "--adapt-steps", "1",
                 "--plot", str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    labels = [s["label"] for s in report["strategies"]]
    assert labels == ["maml-vpg inner_lr=0.001", "maml-vpg inner_lr=0.01"]
    pairs = {(i["x"], i["y"]): i["p"] for i in report["improvement"]}
    a, b = labels
    assert pairs[a, b] + pairs[b, a] == pytest.approx(1.0)
    assert all(i["ci_low"] <= i["p"] <= i["ci_high"] for i in report["improvement"])
    assert len(report["training"][a][0]["rows"]) == 2
    assert png.stat().st_size > 10_000


def test_probability_of_improvement_is_mann_whitney():
    from scipy.stats import mannwhitneyu

    from adaptrl.advisor.compare import probability_of_improvement

    x = [np.array([1.0, 2.0, 3.0]), np.array([2.5, 0.5])]
    y = [np.array([1.5, 1.5, 0.0, 4.0])]
    res = probability_of_improvement(x, y, resamples=200)
    u = mannwhitneyu(np.concatenate(x), y[0]).statistic
    assert res["p"] == pytest.approx(u / 20)
    # by hand: pairs where x > y, plus half the ties
    wins = sum((a > b) + 0.5 * (a == b) for a in np.concatenate(x) for b in y[0])
    assert res["p"] == pytest.approx(wins / 20)


def test_the_store_is_wal_with_a_busy_timeout(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    assert isinstance(sqlite3.sqlite_version, str)


def test_candidates_that_cannot_run_on_the_family_are_skipped_with_a_note(tmp_path, capsys):
    """The packaged candidates include RL², which refuses a bandit of 5 pulls per episode:
    advise names each skipped candidate and ranks the others (on the packaged prior)."""
    empty = tmp_path / "empty.sqlite"
    assert main(["advise", "--tasks", "bandit", "--set", "tasks.pulls=5", "--store",
                 str(empty), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] and all("\n" not in line for line in report["skipped"])
    names = {c["name"] for c in report["candidates"]}
    assert names and not any(n.startswith("rl2") for n in names)
