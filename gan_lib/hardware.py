"""What machine this is, and which precision trains fastest on it.

bfloat16 keeps float32's exponent range, so GAN training needs no loss scaling
in it; CPUs with AMX-BF16 (Intel Sapphire Rapids and later) or AVX512-BF16
(AMD Zen 4/5, Intel Cooper Lake) run bf16 convolutions markedly faster than
fp32. Elsewhere bf16 is emulated and slower, so ``auto`` picks fp32 there.
On a GPU ``auto`` picks bf16 where the GPU supports it (compute capability
8.0+), else fp16 with loss scaling.
"""

from __future__ import annotations

import platform
from functools import lru_cache

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


def cpu_isa() -> str:
    """``"amx"``, ``"avx512_bf16"`` or ``"none"``: the CPU's fastest bf16 matrix instructions."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return "none"


def gpu_names() -> list[str]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


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
    return "bf16" if cpu_isa() in ("amx", "avx512_bf16") else "fp32"


def dtype_policy(precision: str) -> str | None:
    """The Keras dtype policy for a resolved precision (None for plain float32)."""
    return POLICIES[resolve_precision(precision)]


def describe() -> str:
    """One line naming the machine: CPU, ISA and GPUs."""
    gpus = gpu_names()
    return f"{cpu_name()} (isa={cpu_isa()})" + (f", GPU: {', '.join(gpus)}" if gpus else ", no GPU")
