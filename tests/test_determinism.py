"""The train step is deterministic: the same steps from the same saved state end with the same bytes.

Issue 34's probe (``benchmarks/determinism/probe.py``) in small: one pair of runs of the cGAN's default
bf16 path (fast path on, eight steps per compiled call) from one state, compared in every variable the step
writes. A fault like the NaN the README's reliability section records would show here as a pair that differs.
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

PROBE_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "determinism" / "probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("determinism_probe", PROBE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_args(**overrides):
    args = dict(
        model="fashion-cgan", precision="bf16", steps_per_call=8, off=[], no_fast_ops=False, seed=0, batch_size=64
    )
    return SimpleNamespace(**{**args, **overrides})


def run_pair(probe, trainer, batches, steps_per_call):
    """Runs A and B of the same batches from the same state; returns (start, A's end, B's end, comparison)."""
    variables = probe.state_variables(trainer)
    saved = trainer.checkpoint.write("ram://test-determinism/state")
    start = probe.snapshot_arrays(variables)
    a_values = probe.run_steps(trainer, batches, steps_per_call)
    a_end = probe.snapshot_arrays(variables)
    trainer.checkpoint.read(saved).assert_consumed()
    restored = probe.snapshot_arrays(variables)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(start, restored)), "the restore is not exact"
    b_values = probe.run_steps(trainer, batches, steps_per_call)
    b_end = probe.snapshot_arrays(variables)
    return start, a_end, b_end, probe.compare(a_end, b_end, variables, a_values, b_values)


def test_default_bf16_cgan_steps_repeat_bit_for_bit(probe, fashion_sample):
    trainer, _, parts = probe.build_trainer(probe_args())
    assert parts["batchnorm"] and parts["fused_updates"] and parts["shared_backward"], parts  # the default path
    x, y = fashion_sample.x_train[:512], fashion_sample.y_train[:512]
    batches = probe.make_batches(trainer, x, y, 64, 8, 8, seed=0, epoch=1)
    assert len(batches) == 1 and tuple(batches[0][0].shape) == (8, 64, 28, 28, 1)
    start, a_end, _, result = run_pair(probe, trainer, batches, 8)
    moved = sum(a.tobytes() != s.tobytes() for a, s in zip(a_end, start))
    assert moved > 50, "the steps should change most variables; a pair that trains nothing proves nothing"
    assert result["equal"], result
    assert result["nonfinite_values"] == {"a": 0, "b": 0}


def test_the_comparison_catches_one_bit_in_one_variable(probe):
    variables = [SimpleNamespace(path="generator/dense/kernel"), SimpleNamespace(path="discriminator/dense/bias")]
    rng = np.random.default_rng(0)
    a = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    b = [array.copy() for array in a]
    b[1].view(np.uint32)[2] ^= 1  # one ulp in one weight: invisible in any printed loss
    values = {"d_loss": np.array([0.5, 0.25], np.float32), "g_loss": np.array([1.0, 2.0], np.float32)}
    assert probe.compare(a, a, variables, values, values)["equal"]
    result = probe.compare(a, b, variables, values, values)
    assert not result["equal"]
    assert result["differing_variables"] == 1 and result["worst"][0]["name"] == "discriminator/dense/bias"
    assert result["worst"][0]["count"] == 1
    later = {"d_loss": np.array([0.5, np.nan], np.float32), "g_loss": values["g_loss"]}
    result = probe.compare(a, a, variables, values, later)
    assert result["first_differing_step"] == 1 and result["nonfinite_values"] == {"a": 0, "b": 1}
