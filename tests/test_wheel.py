"""The installed kit works whole: a wheel of this checkout, installed non-editable in a fresh
virtual environment outside the checkout, trains, samples, evaluates and finds its reference runs.

A non-editable install is what Colab's ``%pip install git+...`` and a course's wheel both do; an
editable install (``make setup``) hides a file left out of the package, because the checkout is
still there. The fresh environment borrows this interpreter's installed packages (TensorFlow
takes over a gigabyte installed) through a ``.pth`` line, which puts them after its own site-packages, so the wheel's
``gan_lib`` is the one imported. Commands run from a temporary folder, without ``PYTHONPATH``.

The wheel is built without build isolation when this environment has setuptools >= 77 (as
``requirements.txt`` pins it, so CI needs no network), else with pip's isolated build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL_BUDGET_BYTES = 40 * 1024 * 1024  # the size budget of the wheel (docs/reliability.md, "The installed kit")
PACKAGE_DATA = (
    "gan_lib/assets/classifiers/mnist.keras",
    "gan_lib/assets/classifiers/fashion_mnist.keras",
    "gan_lib/assets/classifiers/cifar10.keras",
    "gan_lib/assets/reference/mnist/generator.keras",
    "gan_lib/assets/reference/mnist/history.json",
    "gan_lib/assets/reference/fashion-cgan/generator.keras",
    "gan_lib/assets/reference/cifar10/generator.keras",
    "gan_lib/sample_data/mnist.npz",
    "gan_lib/sample_data/fashion_mnist.npz",
    "gan_lib/sample_data/cifar10.npz",
    "gan_lib/grading/assignment_rubric.json",
)


def _setuptools_major() -> int:
    try:
        return int(version("setuptools").split(".")[0])
    except Exception:  # not installed, or an odd version string
        return 0


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300, stream: str = "stdout") -> str:
    """Run a command; fail the test with its output unless it exits 0. Returns its stdout (or stderr)."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return getattr(done, stream)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet", "-w", str(out), str(ROOT)]
    _run(args, cwd=out, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    (built,) = out.glob("gan_kit-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """``(python, env, workdir)``: a fresh venv holding the wheel, and a folder outside the checkout."""
    work = tmp_path_factory.mktemp("installed")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # No PYTHONPATH anywhere below: with the checkout on it, pip would take gan-kit as installed already.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GAN_LIB_SMOKE", "GAN_LIB_REFERENCE_DIR")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(work / "keras-home"), "MPLBACKEND": "Agg"})
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
         str(wheel)],
        work, {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    # Only now borrow this interpreter's packages: before the install, pip would see this checkout's gan-kit there.
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, {}).strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "zz_borrowed_packages.pth").write_text("\n".join(sorted(parents)) + "\n")
    return python, env, work


def test_wheel_carries_the_package_data_within_budget(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing, f"the wheel lacks {missing}: list them in pyproject.toml's package-data"
    assert wheel.stat().st_size <= WHEEL_BUDGET_BYTES, (
        f"the wheel is {wheel.stat().st_size / 2**20:.1f} MiB, over its {WHEEL_BUDGET_BYTES / 2**20:.0f} MiB budget"
    )


def test_installed_kit_trains_samples_evaluates_and_finds_its_references(installed):
    python, env, work = installed
    gan_lib_cli = [str(python), "-m", "gan_lib.cli"]
    where = _run(
        [str(python), "-c", "import gan_lib, gan_lib.runs as r, gan_lib.data as d; "
         "print(gan_lib.__file__); print(r.reference_run('mnist')); print(d.load_sample('mnist').source)"],
        work, env,
    ).split()  # fmt: skip
    site = str(python.parent.parent)
    assert all(path.startswith(site) for path in where), f"not the installed copy: {where} (venv {site})"
    for name in ("mnist", "fashion-cgan", "cifar10"):
        folder = Path(where[1]).parent / name
        assert (folder / "generator.keras").is_file() and (folder / "history.json").is_file(), folder

    # With no dataset anywhere, the bundled sample is used, and the banner names every place looked in.
    empty = work / "no-data"
    empty.mkdir()
    banner = _run(
        [str(python), "-c", "import gan_lib.data as d; "
         f"print(d.load_dataset('mnist', {str(empty)!r}, download=False, allow_sample=True).is_sample)"],
        work, env, stream="stderr",
    )  # fmt: skip
    assert "USING THE BUNDLED SAMPLE OF MNIST" in banner
    assert f"{empty / 'mnist.npz'}" in banner and "system folder: /usr/share/datasets/mnist.npz" in banner, banner

    # A budget of 15 steps on 640 images at batch 64 (10 steps an epoch) is two whole epochs.
    run_dir = work / "run"
    _run(gan_lib_cli + ["train", "mnist", "--steps", "15", "--limit", "640", "--batch-size", "64",
                        "--metrics-every", "1", "--quiet", "--out", str(run_dir)], work, env)  # fmt: skip
    history = json.loads((run_dir / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text())["steps_budget"] == 15
    for record in history:  # the classifier travelled with the wheel and was used
        assert np.isfinite(record["fcd"]) and 0 <= record["score"] <= 10, record
    assert (run_dir / "progress.gif").is_file() and (run_dir / "generator.keras").is_file()

    _run(gan_lib_cli + ["sample", str(run_dir), "--n", "8", "--out", str(work / "x.npz")], work, env)
    with np.load(work / "x.npz") as f:
        x = f["x"]
    assert x.shape == (8, 28, 28, 1) and x.min() >= -1 and x.max() <= 1

    printed = _run(gan_lib_cli + ["evaluate", str(run_dir), "--n", "500"], work, env)
    report = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(report["metrics"]["fcd"]) and report["real_floor"]["fcd"] >= 0, report
    assert "real-data floor" in printed
