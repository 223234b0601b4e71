"""The README's two commands install a tested set: constraints.txt pins every dependency
(within pyproject's lower bounds), the Makefile installs with it, CI runs through it, and
the package metadata builds without setuptools' deprecation warning."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_constraints_pin_every_dependency_within_its_bounds():
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    makefile = (ROOT / "Makefile").read_text()
    extras = re.search(r"^EXTRAS \?= (.+)$", makefile, re.MULTILINE).group(1).split(",")
    pins = _pins()
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra.strip()]
    for spec in wanted:
        req = requirements.Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"constraints.txt pins no version of {req.name}: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])


def test_make_installs_the_pinned_set_and_ci_uses_it():
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    assert "$(CONSTRAINTS)" in install.splitlines()[0]  # reinstall when the pins change
    assert '-c $(CONSTRAINTS) -e ".[$(EXTRAS)]"' in install
    for target in ("demo", "test"):
        assert re.search(rf"^{target}: \$\(VENV\)/\.installed$", makefile, re.MULTILINE)
    lock = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert '".[$(EXTRAS)]"' in lock and "pip freeze" in lock and "-c $(CONSTRAINTS)" not in lock
    latest = makefile.split("\ntest-latest:", 1)[1].split("\n\n", 1)[0]
    assert "CONSTRAINTS" not in latest and "pytest" in latest
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_license_is_an_spdx_string():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in data["build-system"]["requires"]
