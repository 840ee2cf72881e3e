"""The theory of the original GAN paper (Goodfellow et al., 2014), checked with numbers on toy data.

The paper studies the two-player game

    V(D, G) = E_{x~p_data}[log σ(D(x))] + E_{z~p_z}[log(1 - σ(D(G(z))))]

where D(x) is the discriminator's logit and σ(D(x)) its probability that x is real (the paper writes D(x)
for that probability; the course writes σ(D(x)) everywhere, as :mod:`gan_lib.losses` does)

and this module holds what the notebook ``00_gan_theory.ipynb`` needs to watch its claims happen:

1. for a fixed G the best discriminator says ``σ(D*(x)) = p_data(x) / (p_data(x) + p_g(x))``
   (:func:`optimal_discriminator`, :func:`fit_discriminator`, :func:`discriminator_error`);
2. with D* plugged in, ``C(G) = max_D V(D, G) = -log 4 + 2 JSD(p_data || p_g)``, whose minimum
   -log 4 is reached exactly when p_g = p_data (:func:`value_on_grid`, :func:`jsd_on_grid`,
   :func:`jsd_histogram`, :func:`estimate_c_of_g`, :func:`track_1d_gan`);
3. in practice the game can go wrong: G can collapse onto a small part of the data
   (:class:`Ring2D`, :func:`mode_coverage`, :func:`train_ring_gan`, :class:`MinibatchStd`);
4. G is better trained with ``-log σ(D(G(z)))`` than with ``log(1 - σ(D(G(z))))``
   (:func:`generator_loss_curves`).

Everything is small on purpose (MLPs of a few thousand to a few tens of thousands of weights, 1-D
and 2-D data), so that a CPU trains each model in seconds. Discriminators return *logits* (no
sigmoid at the end); σ(logit) is the probability σ(D(x)). Logarithms are natural, so a JSD lies between
0 and log 2 ≈ 0.693.

The default arguments (steps, recipes, distributions) are the notebook's full settings, which the
tests check; the notebook's smoke mode only passes fewer steps.

Reproducibility: every function that trains takes a ``seed``. It calls
``keras.utils.set_random_seed(seed)`` before building networks (their initial weights) and draws
all training data and noise from a ``tf.random.Generator`` seeded with it. Evaluation samples come
from generators with their own seeds, so they are held out from training and identical between runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

LOG_4 = math.log(4.0)
"""The value of the game at its equilibrium is ``-LOG_4`` ≈ -1.386."""


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------


class Sampler(Protocol):
    """Anything that draws ``n`` points as a float32 tensor (n, dim) from a ``tf.random.Generator``."""

    def sample(self, rng: tf.random.Generator, n: int) -> tf.Tensor: ...


@dataclass(frozen=True)
class GaussianMixture1D:
    """A mixture of 1-D Gaussians. Its density is known, so D* and the JSD can be computed exactly.

    ``means``, ``stds``, ``weights``: one entry per component (weights are normalised; default equal).
    """

    means: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        weights = self.weights or (1.0,) * len(self.means)
        if not (len(self.means) == len(self.stds) == len(weights)) or not self.means:
            raise ValueError("means, stds and weights need one entry per component")
        if min(self.stds) <= 0 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("stds must be positive, weights non-negative and not all zero")
        total = float(sum(weights))
        object.__setattr__(self, "weights", tuple(float(w) / total for w in weights))

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """The density at ``x`` (any shape); float64 of the same shape."""
        x = np.asarray(x, np.float64)[..., None]
        m, s, w = (np.asarray(v, np.float64) for v in (self.means, self.stds, self.weights))
        return np.sum(w * np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)), axis=-1)

    def sample(self, rng: tf.random.Generator, n: int) -> tf.Tensor:
        """``n`` draws, float32 (n, 1): a component chosen by weight, plus that component's Gaussian noise."""
        cumulative = tf.constant(np.cumsum(self.weights)[:-1], tf.float32)
        u = rng.uniform([n])
        component = tf.reduce_sum(tf.cast(u[:, None] >= cumulative[None, :], tf.int32), axis=1)
        mean = tf.gather(tf.constant(self.means, tf.float32), component)
        std = tf.gather(tf.constant(self.stds, tf.float32), component)
        return (mean + std * rng.normal([n]))[:, None]


@dataclass(frozen=True)
class Ring2D:
    """``n_modes`` equally likely 2-D Gaussians (standard deviation ``std``) on a circle of ``radius``.

    The usual test bed for mode collapse (Metz et al., 2017): the modes are far apart compared with
    their width, so a generator that misses one is easy to see and to count.
    """

    n_modes: int = 8
    radius: float = 2.0
    std: float = 0.02

    @property
    def centres(self) -> np.ndarray:
        """The centres, float64 (n_modes, 2); the first lies on the positive x axis."""
        angles = 2 * np.pi * np.arange(self.n_modes) / self.n_modes
        return self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def sample(self, rng: tf.random.Generator, n: int) -> tf.Tensor:
        """``n`` draws, float32 (n, 2): a uniformly chosen centre plus isotropic Gaussian noise."""
        mode = tf.cast(rng.uniform([n], 0, self.n_modes, dtype=tf.int32), tf.float32)
        angle = mode * (2 * math.pi / self.n_modes)
        centre = self.radius * tf.stack([tf.cos(angle), tf.sin(angle)], axis=1)
        return centre + self.std * rng.normal([n, 2])


def held_out_sample(p: Sampler, n: int, seed: int = 99) -> tf.Tensor:
    """``n`` points (n, dim) of ``p`` from a generator of their own (``seed``), apart from any training stream."""
    return p.sample(tf.random.Generator.from_seed(seed), n)


P_DATA_1D = GaussianMixture1D(means=(-2.0, 1.0), stds=(0.5, 0.8), weights=(0.4, 0.6))
"""The 1-D data of parts 1 and 2: two bumps of different width and weight."""

P_G_FIXED = GaussianMixture1D(means=(0.0,), stds=(1.5,))
"""Part 1's frozen "generator": a wide Gaussian that overlaps both bumps of :data:`P_DATA_1D`."""

GRID_1D = np.linspace(-6.0, 6.0, 1201)
"""Where 1-D functions are drawn and integrated (step 0.01; both densities are ~0 at the ends)."""

RING = Ring2D(n_modes=8, radius=2.0, std=0.02)
"""Part 3's data: 8 modes of std 0.02 on a circle of radius 2."""


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


class MinibatchStd(keras.layers.Layer):
    """Appends one feature to every row: how spread out the whole batch is.

    (B, F) in, (B, F + 1) out; the new column is the standard deviation across the batch of each
    feature, averaged over the F features (one number, repeated on every row). A discriminator
    normally judges each point on its own, so a generator that puts all its points in one
    plausible place is hard to punish; with this feature D sees that a *batch* of fakes is too
    narrow, and G's gradient through it pushes the points apart (Karras et al., 2018, a simple form
    of the minibatch discrimination of Salimans et al., 2016). Real and fake batches must go
    through D separately, never mixed.
    """

    def call(self, x):
        spread = tf.reduce_mean(tf.math.reduce_std(x, axis=0))
        return tf.concat([x, tf.fill([tf.shape(x)[0], 1], spread)], axis=1)


def build_mlp(
    input_dim: int,
    hidden: Sequence[int],
    output_dim: int,
    *,
    activation: str = "leaky_relu",
    minibatch_std: bool = False,
    name: str | None = None,
) -> keras.Model:
    """A plain multilayer perceptron, the kind of G and D of the 2014 paper's experiments.

    (B, input_dim) in, (B, output_dim) out; ``hidden`` gives the width of each hidden Dense layer.
    The output layer is linear: a generator's output is a point, a discriminator's a logit.
    ``minibatch_std`` puts a :class:`MinibatchStd` feature next to the inputs.
    """
    inputs = keras.Input((input_dim,))
    x = MinibatchStd(name="minibatch_std")(inputs) if minibatch_std else inputs
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(x)
    outputs = keras.layers.Dense(output_dim, name="out")(x)
    return keras.Model(inputs, outputs, name=name)


class GeneratorSampler:
    """A generator G as a :class:`Sampler`: draws z ~ N(0, I), (n, latent_dim), returns G(z), (n, data_dim)."""

    def __init__(self, generator: keras.Model, latent_dim: int):
        self.generator = generator
        self.latent_dim = latent_dim

    def sample(self, rng: tf.random.Generator, n: int) -> tf.Tensor:
        return self.generator(rng.normal([n, self.latent_dim]), training=False)


def probability(discriminator: keras.Model, x: np.ndarray | tf.Tensor) -> np.ndarray:
    """σ(D(x)), float64 (B,), for points ``x`` (B, dim), or (B,) for 1-D data."""
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank == 1:
        x = x[:, None]
    return tf.sigmoid(discriminator(x, training=False))[:, 0].numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Part 1: the optimal discriminator
# ---------------------------------------------------------------------------------------------


def _integrate(y: np.ndarray, x: np.ndarray) -> float:
    """∫ y dx by the trapezoid rule over the points ``x`` (G,); ``y`` (G,). (np.trapezoid needs NumPy 2.)"""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def optimal_discriminator(x: np.ndarray, p_data: GaussianMixture1D, p_g: GaussianMixture1D) -> np.ndarray:
    """The paper's Proposition 1, ``σ(D*(x)) = p_data(x) / (p_data(x) + p_g(x))``, same shape as ``x``.

    Where both densities vanish any D is optimal; there we return 1/2.
    """
    a, b = p_data.pdf(x), p_g.pdf(x)
    total = a + b
    return np.where(total > 0, a / np.where(total > 0, total, 1.0), 0.5)


def _discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """-V(D, G) on a batch: binary cross-entropy, real → 1, fake → 0. Logits (B, 1) in, scalar out.

    ``-log σ(l) = softplus(-l)`` and ``-log(1 - σ(l)) = softplus(l)``, which stay finite for any l.
    """
    return tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))


@dataclass
class DiscriminatorFit:
    """What :func:`fit_discriminator` returns: the trained D and its mean loss every ``log_every`` steps."""

    discriminator: keras.Model
    steps: np.ndarray
    losses: np.ndarray


def fit_discriminator(
    p_data: Sampler,
    p_g: Sampler,
    *,
    data_dim: int = 1,
    hidden: Sequence[int] = (64, 64),
    steps: int = 3000,
    batch_size: int = 512,
    learning_rate: float = 3e-3,
    log_every: int = 100,
    seed: int = 0,
) -> DiscriminatorFit:
    """Train only a discriminator, with the generator's distribution ``p_g`` held fixed.

    Each step draws fresh real and fake batches (batch_size, data_dim) and takes an Adam step on the
    binary cross-entropy, which is -V(D, G). Fresh samples every step make this stochastic gradient
    descent on the *expected* loss, whose minimiser is D*. The learning rate decays to zero along a
    cosine, so the last steps average the sampling noise away, and ``tanh`` units make D a smooth
    function, as D* is. ``p_g`` can be a fixed distribution or a frozen :class:`GeneratorSampler`.
    """
    keras.utils.set_random_seed(seed)
    rng = tf.random.Generator.from_seed(seed)
    discriminator = build_mlp(data_dim, hidden, 1, activation="tanh", name="discriminator")
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps))
    optimizer.build(discriminator.trainable_variables)

    @tf.function
    def run(n: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(n):
            real, fake = p_data.sample(rng, batch_size), tf.stop_gradient(p_g.sample(rng, batch_size))
            with tf.GradientTape() as tape:
                loss = _discriminator_loss(discriminator(real, training=True), discriminator(fake, training=True))
            grads = tape.gradient(loss, discriminator.trainable_variables)
            optimizer.apply_gradients(zip(grads, discriminator.trainable_variables))
            total += loss
        return total / tf.cast(n, tf.float32)

    logged_steps, losses, done = [], [], 0
    while done < steps:
        n = min(log_every, steps - done)
        losses.append(float(run(tf.constant(n))))
        done += n
        logged_steps.append(done)
    return DiscriminatorFit(discriminator, np.asarray(logged_steps), np.asarray(losses))


def discriminator_error(
    discriminator: keras.Model,
    p_data: GaussianMixture1D,
    p_g: GaussianMixture1D,
    grid: np.ndarray = GRID_1D,
    *,
    min_density: float = 0.01,
) -> dict[str, float]:
    """How far a trained D is from D* on a 1-D ``grid`` (G,).

    Only where there are samples does D* constrain D, so the errors are taken where the average
    density ``(p_data + p_g) / 2`` is at least ``min_density``. Returns ``max_abs`` and ``mean_abs``
    of |σ(D) - σ(D*)| over those grid points, ``weighted_mean_abs`` = E_{x ~ (p_data + p_g)/2} |σ(D) - σ(D*)|,
    and ``region_low`` / ``region_high``, the ends of that region.
    """
    grid = np.asarray(grid, np.float64)
    error = np.abs(probability(discriminator, grid) - optimal_discriminator(grid, p_data, p_g))
    mixture = 0.5 * (p_data.pdf(grid) + p_g.pdf(grid))
    mask = mixture >= min_density
    return {
        "max_abs": float(error[mask].max()),
        "mean_abs": float(error[mask].mean()),
        "weighted_mean_abs": float(_integrate(error * mixture, grid) / _integrate(mixture, grid)),
        "region_low": float(grid[mask].min()),
        "region_high": float(grid[mask].max()),
    }


# ---------------------------------------------------------------------------------------------
# Part 2: the value of the game and the Jensen-Shannon divergence
# ---------------------------------------------------------------------------------------------


def value_estimate(discriminator: keras.Model, real: np.ndarray | tf.Tensor, fake: np.ndarray | tf.Tensor) -> float:
    """Monte Carlo V(D, G) = mean log σ(D(x)) + mean log(1 - σ(D(G(z)))).

    ``real``: (N, dim) points from p_data; ``fake``: (M, dim) points from p_g (already G(z)).
    Use samples not seen in training, or the estimate is biased upwards.
    """
    real_logits = discriminator(tf.convert_to_tensor(real, tf.float32), training=False)
    fake_logits = discriminator(tf.convert_to_tensor(fake, tf.float32), training=False)
    return -float(_discriminator_loss(real_logits, fake_logits))


def value_on_grid(d: np.ndarray, p_data: np.ndarray, p_g: np.ndarray, grid: np.ndarray = GRID_1D) -> float:
    """V(D, G) by numerical integration over a 1-D ``grid``: ∫ p_data log D + p_g log(1 - D) dx.

    ``d``, ``p_data``, ``p_g``: the discriminator's probability and the two densities at the grid
    points, each (G,). With ``d`` = σ(D*) this is C(G).
    """
    d = np.clip(np.asarray(d, np.float64), 1e-12, 1 - 1e-12)
    return float(_integrate(p_data * np.log(d) + p_g * np.log1p(-d), grid))


def _p_log_p_over_m(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """p log(p / m) elementwise, with 0 log 0 = 0."""
    safe_p, safe_m = np.where(p > 0, p, 1.0), np.where(m > 0, m, 1.0)
    return np.where(p > 0, p * np.log(safe_p / safe_m), 0.0)


def jsd_on_grid(p: np.ndarray, q: np.ndarray, grid: np.ndarray = GRID_1D) -> float:
    """Jensen-Shannon divergence of two 1-D densities given at the points of ``grid`` (all (G,)).

    JSD(p || q) = ½ KL(p || m) + ½ KL(q || m) with m = (p + q) / 2; in nats, between 0 and log 2.
    """
    m = 0.5 * (p + q)
    return float(0.5 * _integrate(_p_log_p_over_m(p, m), grid) + 0.5 * _integrate(_p_log_p_over_m(q, m), grid))


def jsd_histogram(
    a: np.ndarray, b: np.ndarray, *, bins: int = 80, value_range: tuple[float, float] = (-5.0, 5.0)
) -> float:
    """JSD between the distributions behind two 1-D samples ``a`` (N,) and ``b`` (M,), from histograms.

    Both samples are counted in ``bins`` equal bins over ``value_range`` (points outside are put in
    the end bins) and the JSD of the two bin-probability vectors is returned, in nats. Two finite
    samples of the *same* distribution still score a little above 0: :func:`jsd_noise_floor`.
    """
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    pa = np.histogram(np.clip(np.ravel(a), *value_range), edges)[0].astype(np.float64)
    pb = np.histogram(np.clip(np.ravel(b), *value_range), edges)[0].astype(np.float64)
    pa, pb = pa / pa.sum(), pb / pb.sum()
    m = 0.5 * (pa + pb)
    return float(0.5 * _p_log_p_over_m(pa, m).sum() + 0.5 * _p_log_p_over_m(pb, m).sum())


def jsd_noise_floor(p: Sampler, n: int = 20000, *, seed: int = 12345, **histogram_kwargs) -> float:
    """:func:`jsd_histogram` between two independent ``n``-point samples of the same ``p``: what "0" reads as."""
    rng = tf.random.Generator.from_seed(seed)
    return jsd_histogram(p.sample(rng, n).numpy(), p.sample(rng, n).numpy(), **histogram_kwargs)


def estimate_c_of_g(
    p_data: Sampler, p_g: Sampler, *, data_dim: int = 1, n_eval: int = 100000, eval_seed: int = 99, **fit_kwargs
) -> tuple[float, DiscriminatorFit]:
    """C(G) = max_D V(D, G), estimated: fit a fresh D against the frozen ``p_g`` (:func:`fit_discriminator`,
    ``fit_kwargs`` go there), then evaluate V on ``n_eval`` held-out points of each. Returns (C, fit).

    A trained D is only nearly optimal, so this slightly underestimates C(G).
    """
    fit = fit_discriminator(p_data, p_g, data_dim=data_dim, **fit_kwargs)
    rng = tf.random.Generator.from_seed(eval_seed)
    return value_estimate(fit.discriminator, p_data.sample(rng, n_eval), p_g.sample(rng, n_eval)), fit


# ---------------------------------------------------------------------------------------------
# A small GAN: MLP generator and discriminator, Algorithm 1 of the paper (with Adam)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GANRecipe:
    """Everything that defines a toy GAN run except the data and the number of steps."""

    latent_dim: int = 4
    g_hidden: tuple[int, ...] = (64, 64)
    d_hidden: tuple[int, ...] = (64, 64)
    activation: str = "leaky_relu"
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    batch_size: int = 256
    d_minibatch_std: bool = False
    generator_loss: str = "non_saturating"  # or "minimax": G minimises log(1 - σ(D(G(z))))


GAN_1D_RECIPE = GANRecipe()
"""Part 2: G and D with two hidden layers of 64, Adam(2e-4, β1 = 0.5), 4-D noise."""

COLLAPSE_RECIPE = GANRecipe(
    latent_dim=64,
    g_hidden=(128, 128),
    d_hidden=(128,),
    activation="relu",
    g_learning_rate=1e-3,
    d_learning_rate=1e-3,
)
"""Part 3's plain run: ReLU MLPs (G 2x128, D 1x128), 64-D noise, Adam(1e-3, β1 = 0.5). It collapses."""

MINIBATCH_STD_RECIPE = replace(COLLAPSE_RECIPE, d_minibatch_std=True)
"""Part 3's fix: the same run, with D also seeing the batch's spread (:class:`MinibatchStd`)."""


class ToyGAN:
    """An MLP generator and discriminator that learn a :class:`Sampler`'s data.

    One training step is Algorithm 1 of the paper with k = 1 and Adam instead of plain SGD: one
    discriminator update on a fresh real batch (B, data_dim) and a batch of fakes, then one
    generator update on fresh noise z ~ N(0, I), (B, latent_dim). Many steps run inside one
    compiled ``tf.function`` loop, so a step of these tiny networks costs 1-2 milliseconds on a CPU.
    """

    def __init__(self, data: Sampler, data_dim: int, recipe: GANRecipe = GAN_1D_RECIPE, *, seed: int = 0):
        if recipe.generator_loss not in ("non_saturating", "minimax"):
            raise ValueError(f"unknown generator loss {recipe.generator_loss!r}")
        keras.utils.set_random_seed(seed)
        self.data, self.data_dim, self.recipe, self.seed = data, data_dim, recipe, seed
        self.rng = tf.random.Generator.from_seed(seed)
        r = recipe
        self.generator = build_mlp(r.latent_dim, r.g_hidden, data_dim, activation=r.activation, name="generator")
        self.discriminator = build_mlp(
            data_dim, r.d_hidden, 1, activation=r.activation, minibatch_std=r.d_minibatch_std, name="discriminator"
        )
        self.g_optimizer = keras.optimizers.Adam(r.g_learning_rate, beta_1=r.beta_1, beta_2=r.beta_2)
        self.d_optimizer = keras.optimizers.Adam(r.d_learning_rate, beta_1=r.beta_1, beta_2=r.beta_2)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.steps_done = 0
        self._run = tf.function(self._run_steps)

    def _step(self) -> tuple[tf.Tensor, tf.Tensor]:
        r, G, D = self.recipe, self.generator, self.discriminator
        real = self.data.sample(self.rng, r.batch_size)
        fake = G(self.rng.normal([r.batch_size, r.latent_dim]), training=True)
        with tf.GradientTape() as tape:
            d_loss = _discriminator_loss(D(real, training=True), D(fake, training=True))
        grads = tape.gradient(d_loss, D.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, D.trainable_variables))
        with tf.GradientTape() as tape:
            fake_logits = D(G(self.rng.normal([r.batch_size, r.latent_dim]), training=True), training=True)
            if r.generator_loss == "minimax":
                g_loss = -tf.reduce_mean(tf.nn.softplus(fake_logits))  # mean log(1 - σ(l))
            else:
                g_loss = tf.reduce_mean(tf.nn.softplus(-fake_logits))  # mean -log σ(l)
        grads = tape.gradient(g_loss, G.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, G.trainable_variables))
        return d_loss, g_loss

    def _run_steps(self, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        d_total, g_total = tf.constant(0.0), tf.constant(0.0)
        for _ in tf.range(n):
            d_loss, g_loss = self._step()
            d_total += d_loss
            g_total += g_loss
        return d_total / tf.cast(n, tf.float32), g_total / tf.cast(n, tf.float32)

    def train(self, steps: int) -> dict[str, float]:
        """Run ``steps`` training steps; returns the mean ``d_loss`` and ``g_loss`` over them."""
        d_loss, g_loss = self._run(tf.constant(int(steps)))
        self.steps_done += int(steps)
        return {"d_loss": float(d_loss), "g_loss": float(g_loss)}

    def noise(self, n: int, seed: int) -> tf.Tensor:
        """A reproducible noise batch (n, latent_dim) with its own seed, apart from the training stream."""
        return tf.random.Generator.from_seed(seed).normal([n, self.recipe.latent_dim])

    def sample(self, z: np.ndarray | tf.Tensor) -> np.ndarray:
        """G(z) as float32 (N, data_dim) for noise ``z`` (N, latent_dim)."""
        return self.generator(tf.convert_to_tensor(z, tf.float32), training=False).numpy()

    def frozen_generator(self) -> GeneratorSampler:
        """A :class:`GeneratorSampler` over a *copy* of G as it is now (later training leaves it alone)."""
        copy = keras.models.clone_model(self.generator)
        copy.set_weights(self.generator.get_weights())
        return GeneratorSampler(copy, self.recipe.latent_dim)


def track_1d_gan(
    gan: ToyGAN,
    *,
    steps: int = 5000,
    eval_every: int = 250,
    n_eval: int = 20000,
    eval_seed: int = 2014,
    **histogram_kwargs,
) -> dict[str, np.ndarray]:
    """Train a 1-D GAN up to ``steps`` and measure the game on held-out samples as it goes.

    A fixed held-out set of ``n_eval`` real points and ``n_eval`` noise vectors (from ``eval_seed``)
    is scored before training and after every ``eval_every`` steps: ``value`` = V(D, G) with the
    current D (:func:`value_estimate`), ``jsd`` = :func:`jsd_histogram` of real against generated
    points (``histogram_kwargs`` go there), and ``c_from_jsd`` = -log 4 + 2 ``jsd``, the C(G) that
    the JSD implies. Returns arrays (T,) of those, of ``step``, and of the chunk's mean ``d_loss``
    and ``g_loss`` (NaN before training).
    """
    rng = tf.random.Generator.from_seed(eval_seed)
    real = gan.data.sample(rng, n_eval)
    z = rng.normal([n_eval, gan.recipe.latent_dim])
    history: dict[str, list[float]] = {k: [] for k in ("step", "value", "jsd", "c_from_jsd", "d_loss", "g_loss")}

    def record(losses: dict[str, float]) -> None:
        fake = gan.generator(z, training=False)
        jsd = jsd_histogram(real.numpy(), fake.numpy(), **histogram_kwargs)
        history["step"].append(gan.steps_done)
        history["value"].append(value_estimate(gan.discriminator, real, fake))
        history["jsd"].append(jsd)
        history["c_from_jsd"].append(-LOG_4 + 2 * jsd)
        history["d_loss"].append(losses.get("d_loss", math.nan))
        history["g_loss"].append(losses.get("g_loss", math.nan))

    record({})
    while gan.steps_done < steps:
        record(gan.train(min(eval_every, steps - gan.steps_done)))
    return {k: np.asarray(v) for k, v in history.items()}


# ---------------------------------------------------------------------------------------------
# Part 3: modes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeCoverage:
    """How a 2-D sample covers a ring; see :func:`mode_coverage`."""

    modes_covered: int
    high_quality_share: float
    counts: np.ndarray = field(repr=False)  # (n_modes,) high-quality points of each mode
    nearest_share: np.ndarray = field(repr=False)  # (n_modes,) share of all points nearest to each mode

    def __str__(self) -> str:
        return f"{self.modes_covered}/{len(self.counts)} modes covered, {self.high_quality_share:.1%} high-quality"


def mode_coverage(
    samples: np.ndarray, ring: Ring2D = RING, *, n_std: float = 3.0, min_share: float = 0.02
) -> ModeCoverage:
    """Count the modes of ``ring`` that a sample (N, 2) covers.

    A point is *high quality* if it lies within ``n_std`` standard deviations of its nearest centre
    (98.9 % of a real sample does, for n_std = 3 in 2-D). A mode is *covered* if at least
    ``min_share`` of all N points are high-quality points of that mode. A fair share is 1/8 = 12.5 %,
    so the default 2 % only asks that the mode be clearly there.
    """
    samples = np.asarray(samples, np.float64)
    distance = np.linalg.norm(samples[:, None, :] - ring.centres[None, :, :], axis=2)  # (N, n_modes)
    nearest = distance.argmin(axis=1)
    good = distance.min(axis=1) <= n_std * ring.std
    counts = np.bincount(nearest[good], minlength=ring.n_modes)
    nearest_share = np.bincount(nearest, minlength=ring.n_modes) / len(samples)
    return ModeCoverage(int((counts >= min_share * len(samples)).sum()), float(good.mean()), counts, nearest_share)


@dataclass
class RingRun:
    """What :func:`train_ring_gan` returns: the GAN, G's samples at a few steps and the final coverage."""

    gan: ToyGAN
    snapshot_steps: list[int]
    snapshots: list[np.ndarray]  # each (n_eval, 2), G(z) for the same held-out z
    coverage: ModeCoverage


def train_ring_gan(
    recipe: GANRecipe,
    ring: Ring2D = RING,
    *,
    steps: int = 8000,
    n_snapshots: int = 4,
    n_eval: int = 10000,
    seed: int = 0,
    eval_seed: int = 2017,
) -> RingRun:
    """Train a 2-D GAN on ``ring`` for ``steps`` steps and count the modes it covers at the end.

    G's samples for one fixed batch of ``n_eval`` held-out noise vectors are kept at
    ``n_snapshots`` evenly spaced steps (the last is the end of training), so the plots show the
    generator moving. The final coverage uses those same samples.
    """
    gan = ToyGAN(ring, 2, recipe, seed=seed)
    z = gan.noise(n_eval, eval_seed)
    marks = sorted({round(steps * (i + 1) / n_snapshots) for i in range(n_snapshots)})
    snapshots = []
    for mark in marks:
        gan.train(mark - gan.steps_done)
        snapshots.append(gan.sample(z))
    return RingRun(gan, marks, snapshots, mode_coverage(snapshots[-1], ring))


# ---------------------------------------------------------------------------------------------
# Part 4: the two generator losses
# ---------------------------------------------------------------------------------------------


def logit(p: float | np.ndarray) -> np.ndarray:
    """The logit log(p / (1 - p)) whose sigmoid is the probability ``p`` (float64, shape of ``p``)."""
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


def generator_loss_curves(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Both generator losses and their gradients with respect to D's logit l, at each of ``logits`` (N,).

    With the logit l = D(G(z)):

    - ``minimax`` = log(1 - σ(l)), what G minimises in the paper's game; d/dl = -σ(l);
    - ``non_saturating`` = -log σ(l), the paper's practical replacement; d/dl = σ(l) - 1.

    The gradients come from ``tf.GradientTape``, not from the formulas above, so they check them.
    Returns float64 arrays (N,): ``logit``, ``d`` (= σ(l)), ``minimax``, ``non_saturating``,
    ``minimax_grad``, ``non_saturating_grad``.
    """
    logit_var = tf.Variable(np.asarray(logits, np.float64).reshape(-1))
    with tf.GradientTape(persistent=True) as tape:
        minimax = -tf.nn.softplus(logit_var)
        non_saturating = tf.nn.softplus(-logit_var)
    out = {
        "logit": logit_var.numpy(),
        "d": tf.sigmoid(logit_var).numpy(),
        "minimax": minimax.numpy(),
        "non_saturating": non_saturating.numpy(),
        "minimax_grad": tape.gradient(minimax, logit_var).numpy(),
        "non_saturating_grad": tape.gradient(non_saturating, logit_var).numpy(),
    }
    del tape
    return out


# ---------------------------------------------------------------------------------------------
# Pictures (each returns its matplotlib Figure)
# ---------------------------------------------------------------------------------------------


def plot_optimal_discriminator(
    discriminator: keras.Model, p_data: GaussianMixture1D, p_g: GaussianMixture1D, grid: np.ndarray = GRID_1D
):
    """Top: the two densities. Bottom: the trained σ(D(x)) over the analytic σ(D*(x)) on ``grid`` (G,)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    top.plot(grid, p_data.pdf(grid), label="p_data")
    top.plot(grid, p_g.pdf(grid), label="p_g (fixed)")
    top.set_ylabel("density")
    top.legend()
    bottom.plot(
        grid, optimal_discriminator(grid, p_data, p_g), "k", lw=3, alpha=0.35, label="σ(D*) = p_data/(p_data+p_g)"
    )
    bottom.plot(grid, probability(discriminator, grid), "C3", lw=1.2, label="trained σ(D(x))")
    bottom.axhline(0.5, color="gray", lw=0.5, ls=":")
    bottom.set_xlabel("x")
    bottom.set_ylabel("probability 'real'")
    bottom.legend()
    fig.tight_layout()
    return fig


def plot_value_history(history: dict[str, np.ndarray], noise_floor: float | None = None):
    """Left: V(D, G) and -log 4 + 2 JSD over training, with the line -log 4. Right: the JSD estimate."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(history["step"], history["c_from_jsd"], "o-", ms=3, label="-log 4 + 2 JSD  (= C(G))")
    left.plot(history["step"], history["value"], "o-", ms=3, label="V(D, G), current D")
    left.axhline(-LOG_4, color="k", ls="--", lw=1, label="-log 4")
    left.set_ylim(-1.45, -1.0)
    left.set_xlabel("training step")
    left.set_ylabel("nats")
    left.legend()
    right.semilogy(history["step"], history["jsd"], "o-", ms=3, color="C2", label="JSD(p_data, p_g), histogram")
    if noise_floor is not None:
        right.axhline(noise_floor, color="gray", ls=":", label="same-distribution noise floor")
    right.set_xlabel("training step")
    right.legend()
    fig.tight_layout()
    return fig


def plot_1d_fit(gan: ToyGAN, p_data: GaussianMixture1D, grid: np.ndarray = GRID_1D, n: int = 50000, seed: int = 7):
    """A histogram of G's samples over p_data's density, and σ(D(x)) after training."""
    fake = gan.sample(gan.noise(n, seed))[:, 0]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(fake, bins=120, range=(grid[0], grid[-1]), density=True, alpha=0.45, color="C1", label="G(z), histogram")
    ax.plot(grid, p_data.pdf(grid), "C0", label="p_data")
    ax.plot(grid, probability(gan.discriminator, grid), "C3", label="σ(D(x))")
    ax.axhline(0.5, color="gray", lw=0.5, ls=":")
    ax.set_xlabel("x")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_ring_runs(runs: dict[str, RingRun], ring: Ring2D = RING):
    """One row per run: G's samples at each snapshot, the ring's centres as red crosses."""
    n_cols = max(len(r.snapshots) for r in runs.values())
    fig, axes = plt.subplots(len(runs), n_cols, figsize=(2.6 * n_cols, 2.7 * len(runs)), squeeze=False)
    lim = ring.radius * 1.6
    for row, (name, run) in zip(axes, runs.items()):
        for ax, step, points in zip(row, run.snapshot_steps, run.snapshots):
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.25)
            ax.scatter(ring.centres[:, 0], ring.centres[:, 1], marker="x", color="red", s=30)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
            ax.set_title(f"step {step}", fontsize=9)
        row[0].set_ylabel(name, fontsize=9)
        row[-1].set_title(
            f"step {run.snapshot_steps[-1]}: {run.coverage.modes_covered}/{ring.n_modes} modes", fontsize=9
        )
    fig.tight_layout()
    return fig


def plot_generator_losses(curves: dict[str, np.ndarray]):
    """Left: both generator losses against σ(D(G(z))). Right: their gradients with respect to the logit."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(curves["d"], curves["minimax"], label="minimax: log(1 - σ(D(G(z))))")
    left.plot(curves["d"], curves["non_saturating"], label="non-saturating: -log σ(D(G(z)))")
    left.set_xlabel("σ(D(G(z)))")
    left.set_ylabel("generator loss (minimised)")
    left.legend()
    right.plot(curves["d"], curves["minimax_grad"], label="d/dl of minimax loss = -D")
    right.plot(curves["d"], curves["non_saturating_grad"], label="d/dl of non-saturating loss = D - 1")
    right.axvspan(0, 0.05, color="gray", alpha=0.15, label="D rejects the fakes")
    right.set_xlabel("σ(D(G(z)))")
    right.set_ylabel("gradient w.r.t. the logit l")
    right.legend()
    fig.tight_layout()
    return fig
