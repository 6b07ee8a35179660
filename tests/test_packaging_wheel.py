"""pip / pipx: packaging/build-wheel.sh makes an sdist and a wheel that pass `twine check`;
the wheel carries the data files and nothing from tests/; installed into a fresh
environment (pip, then pipx) it gives working `cardfit` commands, imported from that
environment and not from this checkout."""

from __future__ import annotations

import json
import re
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from cardfit import __version__
from packaging_support import REPO, clean_env, deps_shim_wheel, png_size, run

ESTIMATE = ["estimate", "llama-3.1-8b", "--task", "lora", "--vram", "24", "--json"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(wheel, sdist) built by the repository's own script, offline (this environment's
    setuptools instead of a freshly downloaded one)."""
    out = tmp_path_factory.mktemp("dist")
    proc = run(["bash", REPO / "packaging" / "build-wheel.sh", "--no-isolation"],
               env=dict(clean_env(out), OUT=str(out), PYTHON=sys.executable), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The script ends with twine check --strict on both files.
    assert proc.stdout.count("PASSED") == 2, proc.stdout[-2000:]
    wheels = list(out.glob(f"cardfit-{__version__}-*.whl"))
    sdists = list(out.glob(f"cardfit-{__version__}.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0], sdists[0]


def test_the_version_lives_in_one_place(dist):
    wheel, sdist = dist
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(f"cardfit-{__version__}.dist-info/METADATA").decode()
    assert re.search(rf"^Version: {re.escape(__version__)}$", meta, re.M)
    assert wheel.name.startswith(f"cardfit-{__version__}-")
    with tarfile.open(sdist) as t:
        pkg_info = t.extractfile(f"cardfit-{__version__}/PKG-INFO").read().decode()
    assert f"\nVersion: {__version__}\n" in pkg_info


def test_wheel_carries_the_data_files_and_no_tests(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for needed in ["cardfit/resources/models.json", "cardfit/resources/gpus.json",
                   "cardfit/resources/icons/cardfit.svg",
                   "cardfit/packaging/linux/io.github.cardfit.Cardfit.desktop",
                   "cardfit/packaging/linux/io.github.cardfit.Cardfit.metainfo.xml",
                   "cardfit/core/fittest/child.py", "cardfit/core/fittest/workload_step.py",
                   "cardfit/core/fittest/hf_build.py", "cardfit/core/fittest/builtin_model.py",
                   "cardfit/cli/desktop_cmd.py", "cardfit/core/paths.py", "cardfit/gui/app.py"]:
        assert needed in names, needed
    # Every package in the tree is in the wheel.
    for init in REPO.glob("**/__init__.py"):
        rel = init.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "build", "dist") or rel.parts[0].startswith("."):
            continue
        assert f"cardfit/{rel.as_posix()}" in names, rel
    bad = [n for n in names if "/tests/" in f"/{n}" or n.startswith(("tests/", "cardfit/tests"))
           or "conftest" in n or "__pycache__" in n or n.endswith(".pyc") or "/docs/" in n
           or "/tools/" in n or "/.venv/" in n]
    assert not bad, bad
    assert all(n.startswith(("cardfit/", f"cardfit-{__version__}.dist-info/")) for n in names), \
        sorted(n for n in names if not n.startswith("cardfit"))


def test_sdist_builds_the_same_package(dist):
    _, sdist = dist
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "__init__.py", "resources/models.json",
            "resources/icons/cardfit.svg",
            "packaging/linux/io.github.cardfit.Cardfit.desktop"} <= names
    assert not [n for n in names if n.startswith(("tests/", ".venv/", "docs/briefs"))]


def _installed_commands_work(bin_dir: Path, python: Path, env: dict, cwd: Path, tmp: Path):
    cardfit = bin_dir / "cardfit"
    assert cardfit.is_file() and (bin_dir / "cardfit-gui").is_file()

    where = run([python, "-c", "import cardfit, sys; print(cardfit.__file__)"], env, cwd)
    assert where.returncode == 0, where.stderr
    origin = Path(where.stdout.strip()).resolve()
    assert not origin.is_relative_to(REPO), f"cardfit came from the checkout: {origin}"
    assert "site-packages" in origin.parts, origin

    v = run([cardfit, "--version"], env, cwd)
    assert v.returncode == 0 and v.stdout.strip() == f"cardfit {__version__}", v.stdout + v.stderr

    d = run([cardfit, "detect", "--json"], env, cwd)
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["schema"] == "cardfit.detect/1"

    e = run([cardfit, *ESTIMATE], env, cwd)
    assert e.returncode == 0, e.stderr
    got = json.loads(e.stdout)
    here = run([sys.executable, "-m", "cardfit", *ESTIMATE], env, cwd)  # this checkout's answer
    assert got["model"]["id"] == "meta-llama/Llama-3.1-8B"
    assert got["total_bytes"] == json.loads(here.stdout)["total_bytes"] > 0

    shot = tmp / "installed.png"
    g = run([cardfit, "gui", "--screenshot", shot, "--size", "1200x800"], env, cwd)
    assert g.returncode == 0, g.stdout + g.stderr
    assert png_size(shot) == (1200, 800)

    # The packaged desktop entry and icon are found from the installed copy.
    data_home = tmp / "xdg data"
    i = run([cardfit, "desktop", "install", "--json"], dict(env, XDG_DATA_HOME=str(data_home)), cwd)
    assert i.returncode == 0, i.stderr
    entry = data_home / "applications" / "io.github.cardfit.Cardfit.desktop"
    exec_line = [x for x in entry.read_text().splitlines() if x.startswith("Exec=")]
    assert [Path(x[5:]).resolve() for x in exec_line] == [(bin_dir / "cardfit-gui").resolve()]


def test_pip_install_into_a_fresh_venv(dist, tmp_path):
    wheel, _ = dist
    venv = tmp_path / "venv"
    mk = run([sys.executable, "-m", "venv", "--without-pip", venv], clean_env(tmp_path), tmp_path)
    assert mk.returncode == 0, mk.stderr
    python = venv / "bin" / "python"
    shim = deps_shim_wheel(tmp_path)
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    inst = run([*pip, "install", "--no-deps", "--no-index", wheel, shim], clean_env(tmp_path), tmp_path)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    # Every requirement the wheel declares is met (here by the shim's folder).
    chk = run([*pip, "check"], clean_env(tmp_path), tmp_path)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    _installed_commands_work(venv / "bin", python, clean_env(tmp_path), tmp_path, tmp_path)


def test_pipx_install(dist, tmp_path):
    pytest.importorskip("pipx", reason="pipx is installed by setup.sh (the dist extra)")
    wheel, _ = dist
    home = tmp_path / "pipx"
    env = clean_env(tmp_path, PIPX_HOME=str(home), PIPX_BIN_DIR=str(tmp_path / "bin"),
                    PIPX_MAN_DIR=str(tmp_path / "man"))
    shim = deps_shim_wheel(tmp_path)
    proc = run([sys.executable, "-m", "pipx", "install", "--python", sys.executable,
                "--preinstall", shim, "--pip-args=--no-deps", wheel], env, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cardfit-gui" in proc.stdout + proc.stderr
    venv = home / "venvs" / "cardfit"
    _installed_commands_work(tmp_path / "bin", venv / "bin" / "python", env, tmp_path, tmp_path)
