"""Shared fixtures. Tests run on real data: the full datasets when GAN_LIB_DATA_DIR
points at them (as in CI), otherwise the real sample bundled with the package."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gan_lib.data import load_sample  # noqa: E402


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
