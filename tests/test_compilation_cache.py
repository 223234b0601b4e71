"""The CLI's persistent compilation cache: where it lives, how to turn it off, and that
train fills it."""

import os
import subprocess
import sys

TINY = ["--set", "algo.meta_batch_size=2", "--set", "algo.episodes_per_task=2",
        "--set", "tasks.horizon=5", "--set", "algo.hidden=[8]"]


def test_compilation_cache_location_and_switch(monkeypatch, tmp_path):
    from adaptrl import compilation_cache

    monkeypatch.setenv("ADAPTRL_CACHE_DIR", str(tmp_path / "c"))
    assert compilation_cache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("ADAPTRL_CACHE_DIR", "off")
    assert compilation_cache.cache_dir() is None and compilation_cache.enable() is None
    monkeypatch.delenv("ADAPTRL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.cache_dir() == tmp_path / "xdg" / "adaptrl" / "jax"


def test_train_fills_the_compilation_cache(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "ADAPTRL_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "adaptrl.cli", "train", "maml-vpg", "--tasks", "point-nav",
           "--iterations", "1", "--out", str(tmp_path / "run"), *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert any(cache.iterdir())  # compiled executables were written
