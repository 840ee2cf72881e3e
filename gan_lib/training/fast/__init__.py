"""The fast path's one door: what the trainers (and the speed lab) call, and nothing else.

The kernels live in two modules behind it. :mod:`~gan_lib.training.fast.kernels`
replaces what Keras runs inside a layer's training step (fused BatchNorm, Dropout
masks from 16 random bits, conv weight gradients and few-channel transposed
convolutions on faster kernels, fused Adam); :mod:`~gan_lib.training.fast.shared_backward`
runs D's backward pass on the fakes once for both players. Neither imports any
other part of ``gan_lib`` but :mod:`gan_lib.hardware` (the cached speed probe), so
the arrows run one way: the trainers use the fast path, never the other way round.

The course modules (:mod:`gan_lib.training`, :mod:`gan_lib.keras_gan`) import this
package only; tests and the measuring tools (:mod:`gan_lib.lab`, ``scripts/``) may
read the kernels themselves.
"""

from gan_lib.training.fast.kernels import (
    FILTER_GRADIENT_MIN_SPEEDUP,
    LAYER_PARTS,
    apply_gradients,
    default_parts,
    measured_filter_gradient_speedup,
    prepare_for_training,
    same_padding,
    use_fast_ops,
)
from gan_lib.training.fast.shared_backward import FakeTaps, fake_taps
from gan_lib.training.fast.shared_backward import gradients as shared_gradients

__all__ = [
    "FILTER_GRADIENT_MIN_SPEEDUP",
    "LAYER_PARTS",
    "FakeTaps",
    "apply_gradients",
    "default_parts",
    "fake_taps",
    "measured_filter_gradient_speedup",
    "prepare_for_training",
    "same_padding",
    "shared_gradients",
    "use_fast_ops",
]
