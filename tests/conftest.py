"""Shared fixtures. Tests run on real data: the full datasets when GAN_LIB_DATA_DIR
points at them (as in CI), otherwise the real sample bundled with the package."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gan_lib.data import load_sample  # noqa: E402

# `make test` runs the tests in two pytest-xdist workers with `--dist loadgroup`. A module's tests stay in one
# worker (its module- and session-scoped fixtures, such as the graded submissions folder or the built wheel, then
# run once), and modules that build a wheel from this checkout (into its build/ folder) share one worker.
SAME_WORKER = {"test_wheel": "wheel-build", "test_gradescope": "wheel-build"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):  # e.g. scripts/check_oldest_tf.sh's environment
        return
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group(SAME_WORKER.get(module, module)))


@pytest.fixture(scope="session")
def mnist_sample():
    return load_sample("mnist")


@pytest.fixture(scope="session")
def fashion_sample():
    return load_sample("fashion_mnist")


@pytest.fixture(scope="session")
def cifar_sample():
    return load_sample("cifar10")


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture()
def load_script():
    """A loader for the modules in ``scripts/`` (not a package): ``load_script("code_classes")``."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
