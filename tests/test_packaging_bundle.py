"""The standalone bundle: packaging/build-bundle.sh makes a one-folder PyInstaller build
with the GUI, the CLI and the engine but not torch; its `cardfit` runs --version, detect
--json and gui --screenshot offscreen, and its fit test runs the child scripts (shipped as
plain files) under an interpreter the user names, or says how to name one.

Slow (the build takes about half a minute on 2 CPUs); CI runs it too."""

from __future__ import annotations

import json
import sys

import pytest

from cardfit import __version__
from packaging_support import REPO, clean_env, png_size, run

pytest.importorskip("PyInstaller", reason="PyInstaller is installed by setup.sh (the dist extra)")

pytestmark = pytest.mark.slow

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "torch_dtype": "float32"}
FAST = ["--device", "cpu", "--task", "infer", "--dtype", "fp32", "--prompt", "16", "--new", "2",
        "--steps", "1", "--warmup", "0", "--builder", "builtin"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    proc = run(["bash", REPO / "packaging" / "build-bundle.sh"],
               env=dict(clean_env(out), OUT=str(out), PYTHON=sys.executable), cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    folder = out / "cardfit"
    assert (folder / "cardfit").is_file()
    return folder


@pytest.fixture
def home(tmp_path):
    return clean_env(tmp_path)


def _snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_version_detect_and_screenshot(bundle, home, tmp_path):
    before = _snapshot(bundle)
    exe = bundle / "cardfit"
    v = run([exe, "--version"], home, tmp_path)
    assert v.returncode == 0 and v.stdout.strip() == f"cardfit {__version__}", v.stdout + v.stderr

    d = run([exe, "detect", "--json"], home, tmp_path)
    assert d.returncode == 0, d.stderr
    doc = json.loads(d.stdout)
    assert doc["schema"] == "cardfit.detect/1" and doc["cardfit_version"] == __version__

    e = run([exe, "estimate", "llama-3.1-8b", "--task", "lora", "--vram", "24", "--json"], home, tmp_path)
    assert e.returncode == 0 and json.loads(e.stdout)["total_bytes"] > 0, e.stderr

    shot = tmp_path / "bundle.png"
    g = run([exe, "gui", "--screenshot", shot, "--size", "1200x800"], home, tmp_path)
    assert g.returncode == 0, g.stdout + g.stderr
    assert png_size(shot) == (1200, 800)
    # Settings and caches went to the user's folders, not into the bundle.
    assert _snapshot(bundle) == before


def test_no_torch_inside(bundle):
    internal = bundle / "_internal"
    assert not [p for p in internal.iterdir() if p.name.lower().startswith(("torch", "transformers", "triton"))]
    assert not list(internal.rglob("libtorch*"))


def test_child_scripts_and_data_ship_as_files(bundle):
    internal = bundle / "_internal" / "cardfit"
    for name in ("child.py", "workload_step.py", "hf_build.py", "builtin_model.py"):
        shipped = internal / "core" / "fittest" / name
        assert shipped.read_bytes() == (REPO / "core" / "fittest" / name).read_bytes(), name
    for rel in ("resources/models.json", "resources/gpus.json", "resources/icons/cardfit.svg",
                "packaging/linux/io.github.cardfit.Cardfit.desktop"):
        assert (internal / rel).read_bytes() == (REPO / rel).read_bytes(), rel


def test_fit_test_asks_for_an_interpreter(bundle, home, tmp_path):
    cfg = tmp_path / "tiny" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(TINY))
    proc = run([bundle / "cardfit", "test", cfg, *FAST], home, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--python" in proc.stderr and "Preferences" in proc.stderr


def test_fit_test_runs_under_the_users_interpreter(bundle, home, tmp_path):
    pytest.importorskip("torch")
    cfg = tmp_path / "tiny" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(TINY))
    proc = run([bundle / "cardfit", "test", cfg, *FAST, "--python", sys.executable, "--json"],
               home, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "fits" and doc["peak_rss_bytes"] > 0


def test_desktop_entry_from_the_bundle(bundle, home, tmp_path):
    env = dict(home, XDG_DATA_HOME=str(tmp_path / "share"))
    proc = run([bundle / "cardfit", "desktop", "install"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = (tmp_path / "share" / "applications" / "io.github.cardfit.Cardfit.desktop").read_text()
    assert f"Exec={bundle / 'cardfit'} gui\n" in entry


def test_bundle_can_be_moved(bundle, home, tmp_path):
    """A user unpacks the folder anywhere: nothing in it names the build machine's paths."""
    moved = bundle.with_name("cardfit moved elsewhere")
    bundle.rename(moved)
    try:
        v = run([moved / "cardfit", "--version"], home, tmp_path)
        assert v.returncode == 0 and v.stdout.strip() == f"cardfit {__version__}", v.stderr
        e = run([moved / "cardfit", "models", "--json"], home, tmp_path)
        assert e.returncode == 0 and "meta-llama/Llama-3.1-8B" in e.stdout, e.stderr[-2000:]
    finally:
        moved.rename(bundle)
