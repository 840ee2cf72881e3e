"""What machine this is, and which precision trains fastest on it.

bfloat16 keeps float32's exponent range, so GAN training needs no loss scaling
in it. Whether it is *faster* depends on the CPU, and the flags alone do not
tell: AMD Zen 4/5 run AVX512-BF16 dot products on two pipes and train about
1.4x faster in bf16, but an Intel Xeon whose hypervisor hides AMX (flags
``avx512_bf16`` without ``amx_bf16``) has one bf16 port against two fp32 FMA
ports, and trained 0.6x as fast in bf16 as in fp32 (measured, see docs/speed.md).
So on a CPU with a bf16 ISA, ``auto`` *measures*: it times a convolution's
forward and backward pass in both precisions, interleaved, and keeps bf16 only
when it wins by 10% or more. The answer is cached per CPU and TensorFlow
version (``~/.cache/gan-kit/precision.json``, or ``$GAN_LIB_CACHE_DIR``), so
the probe's few seconds are paid once. CPUs without a bf16 ISA get fp32, and so
does a run whose ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below one (``AVX2``, say).
On a GPU ``auto`` picks bf16 where the GPU supports it (compute capability
8.0+), else fp16 with loss scaling.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from gan_lib.io import atomic_write_json

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
POLICIES = {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# oneDNN's own switch for the newest instructions it may use (``ONEDNN_MAX_CPU_ISA=AVX2`` makes a server run
# a laptop's kernels); DNNL_ is its older name.
ONEDNN_ISA_CAP_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# The caps oneDNN knows, by whether they allow bf16 dot products; any cap naming AMX allows AMX.
_ISA_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
_ISA_CAPS_WITH_BF16 = ("AVX512_CORE_BF16", "AVX512_CORE_FP16")  # and every AVX10 level


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is capped at by ``ONEDNN_MAX_CPU_ISA`` (upper case), or None when it is not capped.

    oneDNN ignores a value it does not know, and so does the kit, with a warning naming the values it knows.
    """
    name = next((name for name in ONEDNN_ISA_CAP_ENV if name in os.environ), None)  # oneDNN reads the first set
    value = os.environ[name].strip().upper() if name else ""
    if not value or value in ("ALL", "DEFAULT"):
        return None
    if value in _ISA_CAPS_WITHOUT_BF16 + _ISA_CAPS_WITH_BF16 or value.startswith("AVX10") or "AMX" in value:
        return value
    _warn_unknown_cap(name, value)
    return None


_WARNED_CAPS: set[str] = set()  # unknown caps already warned about: once per process is enough


def _warn_unknown_cap(name: str, value: str) -> None:
    if value in _WARNED_CAPS:
        return
    _WARNED_CAPS.add(value)
    warnings.warn(
        f"{name}={value} is not an instruction set oneDNN knows, so it uses all of this CPU's and so does "
        f"gan-kit; use one of {', '.join(_ISA_CAPS_WITHOUT_BF16 + _ISA_CAPS_WITH_BF16)}, AVX10_1_512, "
        "AVX512_CORE_AMX or ALL",
        stacklevel=2,
    )


def cpu_isa() -> str:
    """``"amx"``, ``"avx512_bf16"`` or ``"none"``: the fastest bf16 matrix instructions oneDNN will use here.

    The CPU's flags say what it has; a cap in ``ONEDNN_MAX_CPU_ISA`` lowers that to what oneDNN
    may use (``AVX2`` or ``AVX512_CORE``: none; ``AVX512_CORE_BF16``: no AMX).
    """
    flags = cpu_flags()
    rank = 2 if "amx_bf16" in flags else 1 if "avx512_bf16" in flags else 0
    cap = onednn_isa_cap()
    if cap is not None:
        rank = min(rank, 2 if "AMX" in cap else 1 if cap in _ISA_CAPS_WITH_BF16 or cap.startswith("AVX10") else 0)
    return ("none", "avx512_bf16", "amx")[rank]


def gpu_names() -> list[str]:
    """The visible GPUs' names; asked of TensorFlow once per process, as its device list is fixed by then."""
    return list(_gpu_names())


@lru_cache(maxsize=1)
def _gpu_names() -> tuple[str, ...]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return tuple(names)


def resolve_precision(precision: str = "auto") -> str:
    """Turn ``auto`` into ``fp32``, ``bf16`` or ``fp16`` for this machine; check explicit choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "bf16" if capability >= (8, 0) else "fp16"
    if cpu_isa() not in ("amx", "avx512_bf16"):
        return "fp32"
    return "bf16" if measured_bf16_speedup() >= BF16_MIN_SPEEDUP else "fp32"


BF16_MIN_SPEEDUP = 1.1
CACHE_ENV = "GAN_LIB_CACHE_DIR"


def _cache_file() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "gan-kit")
    return Path(base) / "precision.json"


def _machine_key() -> str:
    import tensorflow as tf

    flags = ",".join(sorted(cpu_flags()))
    cap = onednn_isa_cap()
    suffix = f"|onednn<={cap}" if cap is not None else ""
    return f"{cpu_name()}|{hashlib.sha256(flags.encode()).hexdigest()[:16]}|tf{tf.__version__}|{os.cpu_count()}{suffix}"


def probe_bf16_speedup(batch_size: int = 64, repeats: int = 4) -> float:
    """Time fp32 over bf16 for one convolution's forward + backward pass (> 1: bf16 is faster).

    The probe is the MNIST generator's largest layer (a 5×5 transposed
    convolution, 256 -> 128 channels on 7×7), whose shape is typical of the
    kit's models. The two precisions are timed in turn, ``repeats`` times, and
    the medians compared, so a busy second core disturbs both alike.
    """
    import keras
    import tensorflow as tf

    def make(policy: str | None):
        layer = keras.layers.Conv2DTranspose(128, 5, padding="same", use_bias=False, dtype=policy)
        x = tf.random.stateless_normal([batch_size, 7, 7, 256], seed=[0, 1])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.cast(layer(x), tf.float32)
                loss = tf.reduce_mean(tf.square(y))
            grads = tape.gradient(loss, [x, layer.kernel])
            return loss + tf.reduce_sum(tf.cast(grads[0][0, 0, 0], tf.float32)) + tf.reduce_sum(grads[1][0, 0, 0])

        float(step())  # build and trace
        return step

    steps = {"fp32": make(None), "bf16": make("mixed_bfloat16")}
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(3):
                out = step()
            float(out)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["fp32"]) / statistics.median(times["bf16"])


def measured_bf16_speedup() -> float:
    """:func:`probe_bf16_speedup` for this machine, measured once and then read from the cache."""
    return cached_measurement("bf16_speedup", probe_bf16_speedup)


def cached_measurement(name: str, probe: Callable[[], float]) -> float:
    """``probe()`` for this machine (CPU, flags, TensorFlow, oneDNN cap), measured once and then read from the cache.

    The cache is ``precision.json`` in ``$GAN_LIB_CACHE_DIR`` or ``~/.cache/gan-kit``, one entry per machine
    holding each measurement by ``name``. A read-only home measures again next time rather than fail.
    """
    path, key = _cache_file(), _machine_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    entry = cached.get(key) if isinstance(cached.get(key), dict) else {}
    if isinstance(entry.get(name), (int, float)):
        return float(entry[name])
    value = probe()
    cached[key] = {**entry, name: round(value, 3), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    except OSError:
        pass
    return value


def dtype_policy(precision: str) -> str | None:
    """The Keras dtype policy for a resolved precision (None for plain float32)."""
    return POLICIES[resolve_precision(precision)]


def describe() -> str:
    """One line naming the machine: CPU, ISA and GPUs."""
    gpus = gpu_names()
    cap = onednn_isa_cap()
    capped = f", oneDNN capped at {cap}" if cap is not None else ""
    return f"{cpu_name()} (isa={cpu_isa()}{capped})" + (f", GPU: {', '.join(gpus)}" if gpus else ", no GPU")
