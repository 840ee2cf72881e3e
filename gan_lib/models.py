"""Generator and discriminator builders, one pair for every model in the kit.

The builders are parameterised (latent size, image shape, number of classes,
filter widths), so MNIST, CIFAR-10 and the conditional Fashion-MNIST model
are three calls, not three copies:

>>> g = build_generator(latent_dim=100, image_shape=(28, 28, 1))          # MNIST, the TF tutorial's net
>>> d = build_discriminator(image_shape=(28, 28, 1))
>>> g_c = build_generator(100, (28, 28, 1), num_classes=10)               # cGAN: takes [noise, label]
>>> d_c = build_discriminator((28, 28, 1), num_classes=10)                # cGAN: takes [image, label]

Generators map noise (B, latent_dim) [and labels (B,)] to images
(B, H, W, C) in [-1, 1] (tanh). Discriminators map images (B, H, W, C)
[and labels (B,)] to one raw logit per image, (B, 1): no sigmoid, because the
losses use ``from_logits=True``.

A conditional network embeds the label (``Embedding(num_classes, 50)``),
projects it with a Dense layer to one H×W plane and concatenates that plane
as an extra channel: to the generator's first feature map, and to the
discriminator's input image.
"""

from __future__ import annotations

import contextlib
import math

import keras
from keras import layers


@contextlib.contextmanager
def dtype_policy_scope(policy: str | None):
    """Build layers under a Keras dtype policy (e.g. "mixed_bfloat16"), restoring the old one after."""
    if policy is None:
        yield
        return
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def _upsampling_plan(image_size: int, num_layers: int) -> tuple[int, list[int]]:
    """Start size and per-layer strides that grow a feature map to ``image_size``.

    Uses as many stride-2 layers as possible (at most ``num_layers``) while the
    starting map stays at least 4 pixels wide; the remaining layers have stride 1.
    28 with 3 layers gives start 7 and strides [1, 2, 2] (the TF tutorial);
    32 gives start 4 and [2, 2, 2]; 64 with 4 layers gives start 4 and [2, 2, 2, 2].
    """
    doublings = 0
    for k in range(num_layers, -1, -1):
        if image_size % (2**k) == 0 and image_size // (2**k) >= 4:
            doublings = k
            break
    start = image_size // (2**doublings)
    strides = [1] * (num_layers - doublings) + [2] * doublings
    return start, strides


def _activation(kind: str) -> layers.Layer:
    if kind == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.3)
    if kind == "leaky_relu_0.2":
        return layers.LeakyReLU(negative_slope=0.2)
    if kind == "relu":
        return layers.ReLU()
    raise ValueError(f"unknown activation {kind!r}; use 'leaky_relu', 'leaky_relu_0.2' or 'relu'")


def _label_plane(labels, num_classes: int, height: int, width: int, embedding_dim: int, prefix: str):
    """Embed integer labels (B,) and project them to one (B, height, width, 1) plane."""
    x = layers.Embedding(num_classes, embedding_dim, name=f"{prefix}_label_embedding")(labels)
    x = layers.Dense(height * width, name=f"{prefix}_label_projection")(x)
    return layers.Reshape((height, width, 1), name=f"{prefix}_label_plane")(x)


@keras.saving.register_keras_serializable(package="gan_lib")
class CategoricalCode(layers.Layer):
    """Reads a categorical latent code off the noise: its first ``num_categories`` entries become a one-hot.

    (B, latent_dim) -> (B, latent_dim): ``z[:, :K]`` is replaced by ``one_hot(argmax(z[:, :K]))``; the rest
    passes through. For z ~ N(0, 1) the argmax is uniform over the K categories, so the generator still
    takes plain Gaussian noise and every sampler (grids, ``gan-lib sample``, the metrics) works unchanged,
    while the generator sees a discrete choice it cannot blend. InfoGAN (Chen et al., 2016) draws such a code
    apart and makes it recoverable from the fakes (:func:`gan_lib.losses.code_loss`); here it is part of the noise.
    Computed in float32 whatever the dtype policy, so the code is the one :func:`categorical_code` reads.
    """

    def __init__(self, num_categories: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_categories = int(num_categories)

    def call(self, noise):
        k = self.num_categories
        code = keras.ops.one_hot(keras.ops.argmax(noise[:, :k], axis=-1), k, dtype=noise.dtype)
        return keras.ops.concatenate([code, noise[:, k:]], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_categories": self.num_categories}


def categorical_code(noise, num_categories: int):
    """The category (B,) int32 that :class:`CategoricalCode` reads off noise (B, latent_dim)."""
    return keras.ops.cast(keras.ops.argmax(noise[:, :num_categories], axis=-1), "int32")


def find_categorical_code(generator: keras.Model) -> int:
    """The number of categories of ``generator``'s :class:`CategoricalCode` layer; 0 if it has none."""
    for layer in generator.layers:
        if isinstance(layer, CategoricalCode):
            return layer.num_categories
    return 0


def build_generator(
    latent_dim: int = 100,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int | None = None,
    *,
    project_filters: int = 256,
    hidden_filters: tuple[int, ...] = (128, 64),
    kernel_size: int = 5,
    activation: str = "leaky_relu",
    batchnorm_momentum: float = 0.99,
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
    embedding_dim: int = 50,
    categorical_code: int = 0,
    dtype_policy: str | None = None,
    synchronized_batchnorm: bool = False,
    name: str | None = None,
) -> keras.Model:
    """A DCGAN generator: noise (B, latent_dim) [, labels (B,)] -> images (B, *image_shape) in [-1, 1].

    Dense projection to ``start×start×project_filters``, BatchNorm, activation,
    reshape; then one Conv2DTranspose + BatchNorm + activation per entry of
    ``hidden_filters``; then a tanh Conv2DTranspose to the image's channels.
    With the defaults and a 28×28×1 image this is the TF DCGAN tutorial's
    generator exactly: Dense 7·7·256, then 128 (stride 1), 64 (stride 2),
    1 (stride 2, tanh).

    ``dtype_policy``: e.g. ``"mixed_bfloat16"`` to compute in bfloat16 with
    float32 weights; the output layer always returns float32.

    ``synchronized_batchnorm``: for training under a ``tf.distribute``
    strategy (:mod:`gan_lib.distribute`). Each replica sees only its share of
    the global batch, so by default its BatchNorm normalises with that share's
    statistics; with ``True`` the mean and variance are all-reduced over every
    replica, so N replicas normalise exactly as one device would on the whole
    batch. Without a strategy it changes nothing.

    ``categorical_code``: if K > 0, the first K noise entries are read as a K-way
    categorical code (:class:`CategoricalCode`) before the projection; the input
    is still noise (B, latent_dim) ~ N(0, 1). For recipes with ``info_categories``.
    """
    if categorical_code and not 1 < categorical_code < latent_dim:
        raise ValueError(
            f"categorical_code must be between 2 and latent_dim - 1 = {latent_dim - 1}; got {categorical_code}"
        )
    with dtype_policy_scope(dtype_policy):
        height, width, channels = image_shape
        if height != width:
            raise ValueError(f"square images only; got {image_shape}")
        start, strides = _upsampling_plan(height, len(hidden_filters) + 1)
        init = keras.initializers.get(kernel_initializer)
        noise = keras.Input(shape=(latent_dim,), name="noise")
        x = CategoricalCode(categorical_code, name="categorical_code")(noise) if categorical_code else noise
        x = layers.Dense(start * start * project_filters, use_bias=False, kernel_initializer=init, name="project")(x)
        x = layers.BatchNormalization(momentum=batchnorm_momentum, synchronized=synchronized_batchnorm)(x)
        x = _activation(activation)(x)
        x = layers.Reshape((start, start, project_filters))(x)
        inputs = [noise]
        if num_classes is not None:
            label = keras.Input(shape=(), dtype="int32", name="label")
            inputs.append(label)
            x = layers.Concatenate(name="noise_and_label")(
                [x, _label_plane(label, num_classes, start, start, embedding_dim, "g")]
            )
        for filters, stride in zip(hidden_filters, strides[:-1]):
            x = layers.Conv2DTranspose(
                filters, kernel_size, strides=stride, padding="same", use_bias=False, kernel_initializer=init
            )(x)
            x = layers.BatchNormalization(momentum=batchnorm_momentum, synchronized=synchronized_batchnorm)(x)
            x = _activation(activation)(x)
        x = layers.Conv2DTranspose(
            channels, kernel_size, strides=strides[-1], padding="same", use_bias=False, kernel_initializer=init
        )(x)
        images = layers.Activation("tanh", dtype="float32", name="tanh")(x)
        default = "conditional_generator" if num_classes is not None else "generator"
        return _kit_built(keras.Model(inputs if num_classes is not None else noise, images, name=name or default))


def build_discriminator(
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int | None = None,
    *,
    filters: tuple[int, ...] = (64, 128),
    kernel_size: int = 5,
    dropout: float = 0.3,
    activation: str = "leaky_relu",
    batchnorm: bool = False,
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
    embedding_dim: int = 50,
    dtype_policy: str | None = None,
    synchronized_batchnorm: bool = False,
    name: str | None = None,
) -> keras.Model:
    """A DCGAN discriminator: images (B, *image_shape) [, labels (B,)] -> logits (B, 1).

    One stride-2 Conv2D + activation (+ Dropout) per entry of ``filters``, then
    Flatten and Dense(1) with no activation. With the defaults this is the TF
    DCGAN tutorial's discriminator. ``batchnorm=True`` adds BatchNorm after
    every convolution but the first (Radford et al., 2016).
    ``dtype_policy`` and ``synchronized_batchnorm`` (used only with
    ``batchnorm=True``) as for :func:`build_generator`; the logits are float32.
    """
    with dtype_policy_scope(dtype_policy):
        height, width, _ = image_shape
        init = keras.initializers.get(kernel_initializer)
        image = keras.Input(shape=image_shape, name="image")
        x = image
        inputs = [image]
        if num_classes is not None:
            label = keras.Input(shape=(), dtype="int32", name="label")
            inputs.append(label)
            x = layers.Concatenate(name="image_and_label")(
                [x, _label_plane(label, num_classes, height, width, embedding_dim, "d")]
            )
        for i, f in enumerate(filters):
            normalised = batchnorm and i > 0  # BatchNorm subtracts the batch mean, so a bias before it does nothing
            x = layers.Conv2D(
                f, kernel_size, strides=2, padding="same", use_bias=not normalised, kernel_initializer=init
            )(x)
            if normalised:
                x = layers.BatchNormalization(synchronized=synchronized_batchnorm)(x)
            x = _activation(activation)(x)
            if dropout:
                x = layers.Dropout(dropout)(x)
        x = layers.Flatten()(x)
        logits = layers.Dense(1, dtype="float32", kernel_initializer=init, name="logit")(x)
        default = "conditional_discriminator" if num_classes is not None else "discriminator"
        return _kit_built(keras.Model(inputs if num_classes is not None else image, logits, name=name or default))


# The attribute that marks a network made by this module's builders. A plain Python attribute on the model object:
# Keras does not save it, and ``clone_model`` or a loaded ``.keras`` file is an unmarked network.
_KIT_BUILT = "_gan_kit_built"


def _kit_built(model: keras.Model) -> keras.Model:
    setattr(model, _KIT_BUILT, True)
    return model


def built_by_kit(model: keras.Model) -> bool:
    """Whether ``model`` came from :func:`build_generator` or :func:`build_discriminator` (not a network of one's own).

    The trainers switch the layers of the kit's own networks to the fast path
    (:mod:`gan_lib.training.fast`) and leave every other network's layers as written, unless asked.
    """
    return bool(getattr(model, _KIT_BUILT, False))


def count_params(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return int(sum(math.prod(v.shape) for v in model.trainable_variables))
