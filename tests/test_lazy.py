"""The registries list families and algorithms as data: the CLI's listings import no JAX,
and every entry's declared kind agrees with the class it names."""

import dataclasses
import subprocess
import sys

import pytest

from adaptrl import lazy
from adaptrl.algos import REGISTRY as ALGOS
from adaptrl.errors import UserError
from adaptrl.tasks import REGISTRY as FAMILIES
from adaptrl.tasks import make_family

HEAVY = ("jax", "jaxlib", "flax", "optax", "gymnasium", "numpy", "scipy", "matplotlib")


def test_listing_imports_no_jax():
    code = (
        "import sys, contextlib, io\n"
        "import adaptrl.cli as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert cli.main(['tasks']) == 0 and cli.main(['algos']) == 0\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_family_entries_name_their_classes():
    for name, entry in FAMILIES.items():
        cls = entry.factory
        assert isinstance(entry.target, str) and entry.target.startswith("adaptrl.tasks.")
        assert entry.kind == cls.kind, name
        assert set(entry.defaults) <= {f.name for f in dataclasses.fields(cls)}, name
        assert type(make_family(name)) is cls
    assert make_family("point-nav-sparse").sparse and not make_family("point-nav").sparse


def test_algorithm_entries_name_their_classes():
    for name, entry in ALGOS.items():
        cls = entry.cls
        assert entry.kinds == tuple(cls.kinds), name
        assert set(entry.defaults) <= {f.name for f in dataclasses.fields(cls.Config)}, name


def test_distribution_options_move_only_the_tasks():
    """Changing a family's DISTRIBUTION_OPTIONS changes which tasks are drawn, never the
    spaces or the horizon that a trained learner depends on."""
    for name in FAMILIES:
        base = make_family(name)
        fields = {f.name: f for f in dataclasses.fields(base)}
        assert "split_seed" in type(base).DISTRIBUTION_OPTIONS
        for option in type(base).DISTRIBUTION_OPTIONS:
            assert option in fields, (name, option)
            value = getattr(base, option)
            if isinstance(value, tuple):  # a (low, high) range: widen it
                moved = (value[0], value[1] + 0.05)
            else:
                moved = value + 1 if isinstance(value, int) else (
                    value - 0.05 if option.endswith("_low") else value + 0.05)
            fam = make_family(name, {option: moved})
            if base.kind == "rl":
                assert fam.observation_space == base.observation_space, (name, option)
                assert fam.action_space == base.action_space, (name, option)
                assert fam.horizon == base.horizon, (name, option)
            else:
                assert (fam.input_dim, fam.output_dim) == (base.input_dim, base.output_dim)


def test_load_names_what_is_wrong():
    assert lazy.load("adaptrl.errors:UserError") is UserError
    assert lazy.load(UserError) is UserError
    for target, needle in [("no_such_module_x:thing", "cannot import no_such_module_x"),
                           ("adaptrl.errors:Nope", "has no attribute 'Nope'"),
                           ("no-colon", "not of the form module:attr")]:
        with pytest.raises(UserError, match=needle):
            lazy.load(target)
