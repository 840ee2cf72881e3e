"""The fast paths and the benchmark's arithmetic. Timing itself is never asserted here."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import hardware
from gan_lib.lab import bench
from gan_lib.models import build_discriminator, build_generator
from gan_lib.specs import get_spec
from gan_lib.training import GANTrainer


def test_flop_count_of_the_tutorial_mnist_step():
    spec = get_spec("mnist").with_nets("tutorial")
    g, d = spec.build_generator(), spec.build_discriminator()
    g_macs = 100 * 7 * 7 * 256 + 7 * 7 * 25 * 256 * 128 + 7 * 7 * 25 * 128 * 64 + 14 * 14 * 25 * 64 * 1
    d_macs = 14 * 14 * 25 * 1 * 64 + 7 * 7 * 25 * 64 * 128 + 7 * 7 * 128
    assert sum(m for _, m in bench.layer_macs(g)) == g_macs
    assert sum(m for _, m in bench.layer_macs(d)) == d_macs
    assert bench.train_flops_per_image(g, d) == pytest.approx(6 * (g_macs + 2 * d_macs))


def test_precision_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(hardware.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    key = hardware._machine_key()
    cases = (("amx", 1.6, "bf16"), ("avx512_bf16", 1.4, "bf16"), ("avx512_bf16", 0.6, "fp32"), ("none", 2.0, "fp32"))
    for isa, speedup, expected in cases:
        # The cached measurement decides on a bf16-capable CPU; a CPU without a bf16 ISA never measures.
        (tmp_path / "precision.json").write_text(json.dumps({key: {"bf16_speedup": speedup}}))
        monkeypatch.setattr(hardware, "cpu_isa", lambda isa=isa: isa)
        assert hardware.resolve_precision("auto") == expected
    assert hardware.resolve_precision("fp16") == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        hardware.resolve_precision("int8")


@pytest.mark.parametrize(
    ("flags", "cap", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, None, "avx512_bf16"),
        ({"avx512f", "avx512_bf16"}, "AVX2", "none"),
        ({"avx512f", "avx512_bf16"}, "avx512_core", "none"),
        ({"avx512f", "avx512_bf16"}, "ALL", "avx512_bf16"),
        ({"avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", "avx512_bf16"),
        ({"avx512_bf16", "amx_bf16"}, "AVX512_CORE_AMX", "amx"),
        ({"avx2"}, "AVX512_CORE_AMX", "none"),  # a cap never adds what the CPU lacks
        ({"avx512_bf16", "amx_bf16"}, "AVX10_1_512", "avx512_bf16"),
        ({"avx512_bf16", "amx_bf16"}, "avx2_vnni_2", "none"),  # bf16 conversions only, no fast dot products
    ],
)
def test_isa_follows_a_onednn_cap(monkeypatch, tmp_path, flags, cap, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.cpu_isa() == expected
    if expected == "none":  # auto then picks fp32 without probing, whatever a cached probe says
        monkeypatch.setenv(hardware.CACHE_ENV, str(tmp_path))
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
        monkeypatch.setattr(hardware, "measured_bf16_speedup", lambda: 2.0)
        assert hardware.resolve_precision("auto") == "fp32"
    assert ("oneDNN capped at" in hardware.describe()) == (cap not in (None, "ALL"))


def test_an_unknown_onednn_cap_is_ignored_with_a_warning(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX3")  # a typo: oneDNN itself ignores it
    monkeypatch.setattr(hardware, "_WARNED_CAPS", set())
    with pytest.warns(UserWarning, match="ONEDNN_MAX_CPU_ISA=AVX3 is not an instruction set oneDNN knows") as caught:
        assert hardware.cpu_isa() == "avx512_bf16"
        assert hardware.onednn_isa_cap() is None
    assert len(caught) == 1  # once, however often the ISA is asked


def test_a_onednn_cap_has_its_own_probe_cache_entry(monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    uncapped = hardware._machine_key()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert hardware._machine_key() != uncapped


def test_bf16_probe_measures_and_caches_per_machine(monkeypatch, tmp_path):
    monkeypatch.setenv(hardware.CACHE_ENV, str(tmp_path))
    speedup = hardware.measured_bf16_speedup()  # a real measurement on this CPU
    assert np.isfinite(speedup) and 0.05 < speedup < 20
    cache = json.loads((tmp_path / "precision.json").read_text())
    assert cache[hardware._machine_key()]["bf16_speedup"] == pytest.approx(speedup, abs=1e-3)
    # The second call reads the cache instead of measuring again.
    cache[hardware._machine_key()]["bf16_speedup"] = 123.0
    (tmp_path / "precision.json").write_text(json.dumps(cache))
    assert hardware.measured_bf16_speedup() == 123.0


def test_filter_gradient_probe_measures_caches_and_decides_the_default_parts(monkeypatch, tmp_path):
    from gan_lib.training.fast import kernels as fastpath

    monkeypatch.setenv(hardware.CACHE_ENV, str(tmp_path))
    speedup = hardware.cached_measurement("filter_gradient_speedup", fastpath.probe_filter_gradient_speedup)
    assert np.isfinite(speedup) and 0.05 < speedup < 20  # a real measurement on this CPU
    path = tmp_path / "precision.json"
    cache = json.loads(path.read_text())
    assert cache[hardware._machine_key()]["filter_gradient_speedup"] == pytest.approx(speedup, abs=1e-3)
    for cached, expected in ((0.8, False), (1.3, True)):  # what the probe said decides, read from the cache
        cache[hardware._machine_key()]["filter_gradient_speedup"] = cached
        path.write_text(json.dumps(cache))
        assert fastpath.default_parts("bfloat16", on_cpu=True)["filter_gradients"] is expected
    cache[hardware._machine_key()]["bf16_speedup"] = 2.5  # one machine's entry holds both probes
    path.write_text(json.dumps(cache))
    assert hardware.measured_bf16_speedup() == 2.5 and fastpath.fast_filter_gradients_pay()
    path.unlink()  # fp32, or a GPU: no fast weight gradients, and no probe
    assert not fastpath.default_parts("float32", on_cpu=True)["filter_gradients"]
    assert not fastpath.default_parts("bfloat16", on_cpu=False)["filter_gradients"]
    assert not path.exists()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_models_train_and_return_float32(precision, mnist_sample):
    keras.utils.set_random_seed(0)
    policy = hardware.dtype_policy(precision)
    # Small networks: CPUs emulate fp16 convolutions slowly.
    g = build_generator(100, (28, 28, 1), project_filters=16, hidden_filters=(8, 8), dtype_policy=policy)
    d = build_discriminator((28, 28, 1), filters=(8, 16), dtype_policy=policy)
    assert g.get_layer("project").compute_dtype in ("bfloat16", "float16")
    assert g.get_layer("project").kernel.dtype == "float32"  # weights stay float32
    trainer = GANTrainer(g, d, latent_dim=100)
    if precision == "fp16":
        assert isinstance(trainer.g_optimizer, keras.optimizers.LossScaleOptimizer)
    batch = tf.cast(mnist_sample.x_train[:32], tf.float32) / 127.5 - 1
    losses = [trainer.train_step(batch) for _ in range(3)]
    assert all(np.isfinite(float(out["d_loss"])) for out in losses)
    images = trainer.generate(np.random.default_rng(0).standard_normal((4, 100)).astype("float32"))
    assert images.dtype == np.float32 and np.abs(images).max() <= 1


def test_bench_reports_the_machine_readable_line():
    result = bench.run_bench("mnist", precision="fp32", batch_size=16, steps=1, repeats=3)
    line = bench.format_report(result).splitlines()[-1]
    fields = dict(item.split("=") for item in line.split())
    assert set(fields) == {"images_per_second", "baseline_images_per_second", "ratio", "efficiency", "isa"}
    assert float(fields["ratio"]) > 0 and 0 < float(fields["efficiency"])
    assert fields["isa"] in ("amx", "avx512_bf16", "none")
    assert 0 < result["overhead_share"] < 1
    # fp32 is held to the fp32 target whatever the CPU has; the report says whether this run met it.
    assert result["target_ratio"] == 1.15
    verdict = "met" if result["ratio"] >= 1.15 else "not met"
    assert f"(target for fp32: at least 1.15x; {verdict})" in bench.format_report(result)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 1.8),
        ({"isa": "amx"}, 3.0),
        ({"precision": "fp32"}, 1.15),
        ({"isa": "amx", "precision": "fp32"}, 1.15),  # AMX hidden or slow: the probe chose fp32
        ({"model": "cifar10"}, None),  # the targets are the MNIST step's
        ({"nets": "tutorial"}, 1.8),  # the architecture the targets were set on
        ({"nets": "tutorial", "precision": "fp32"}, 1.15),
        ({"nets": "large"}, None),
        ({"fast_ops": False}, None),
        ({"gpus": ["NVIDIA H100 80GB HBM3"]}, None),
    ],
)
def test_bench_target_follows_isa_and_precision(changes, expected):
    report = {"model": "mnist", "nets": "default", "fast_ops": True, "gpus": [], "isa": "avx512_bf16",
              "precision": "bf16", **changes}  # fmt: skip
    assert bench.target_ratio(report) == expected
