"""Screen MNIST DCGAN variants quickly on a GPU, with Keras 3 on JAX.

Why this exists: on the 2-core CPU one 50-epoch MNIST run takes about 1.6 h,
so only one candidate recipe fits a session. A lent GPU machine has JAX but no
TensorFlow (and TensorFlow's GPU wheels are too large to carry there), so this
script trains the kit's own networks (``gan_lib.models`` and ``gan_lib.specs``
are pure Keras) with a JAX train step that does what
``gan_lib.training.gan_train_step`` does: one forward pass, D and G updated
simultaneously from it with Adam, an EMA of G's weights with the same warm-up,
and BatchNorm statistics re-estimated before sampling in inference mode. The
metrics are the kit's own (``gan_lib.metrics`` with the shipped classifier),
on N=2,000 samples at the listed epochs and N=10,000 at the end.

It is a screen, not the reference: the figures it prints pick which recipe to
train for real with ``gan-lib train`` on the CPU. The anchors ("default", and
"tutorial" for the tutorial's recipe) are variants that the kit's TensorFlow
runs also trained, so their metrics check the port.

    KERAS_BACKEND=jax python benchmarks/recipes_and_networks/screen_mnist_gpu.py --data mnist.npz --out OUT VARIANT...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parents[2]

# gan_lib/__init__.py and gan_lib/data.py import TensorFlow; models, specs and metrics need only Keras.
# Load those three without the package's __init__, and give metrics the one helper it takes from data.
_package = types.ModuleType("gan_lib")
_package.__path__ = [str(ROOT / "gan_lib")]
sys.modules["gan_lib"] = _package
_data = types.ModuleType("gan_lib.data")


def _to_uint8(images):
    import numpy as np

    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


_data.to_uint8 = _to_uint8
sys.modules["gan_lib.data"] = _data

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from gan_lib import metrics, models, specs  # noqa: E402

LATENT = 100
SHAPE = (28, 28, 1)

# name -> (generator kwargs, discriminator kwargs, recipe fields). Empty kwargs: the builders' defaults, the TF
# tutorial's networks. "default" is the kit's MNIST default before this screen (the anchor); "paper" became it.
DCGAN = {"g_lr": 2e-4, "d_lr": 2e-4, "beta_1": 0.5, "ema": 0.999, "smoothing": 0.0}
PAPER = (specs.PAPER_NETS["generator_kwargs"], specs.PAPER_NETS["discriminator_kwargs"])
VARIANTS = {
    "default": ({}, {}, DCGAN),
    "tutorial": ({}, {}, {"g_lr": 1e-4, "d_lr": 1e-4, "beta_1": 0.9, "ema": None, "smoothing": 0.0}),
    "d-no-dropout": ({}, {"dropout": 0.0}, DCGAN),
    "d-bn": ({}, {"dropout": 0.0, "batchnorm": True}, DCGAN),
    "d-wide": ({}, {"filters": (128, 256)}, DCGAN),
    "ttur": ({}, {}, {**DCGAN, "g_lr": 1e-4, "d_lr": 4e-4}),
    "paper": (*PAPER, DCGAN),
    "paper-d": ({}, PAPER[1], DCGAN),
    "paper-d2": ({}, specs.paper_discriminator((64, 128)), DCGAN),
    "smooth": ({}, {}, {**DCGAN, "smoothing": 0.1}),
}
VARIANTS.update(
    {
        "paper-bs128": (*PAPER, {**DCGAN, "batch": 128}),
        "paper-lr1e4": (*PAPER, {**DCGAN, "g_lr": 1e-4, "d_lr": 1e-4}),
        "paper-dlr1e4": (*PAPER, {**DCGAN, "d_lr": 1e-4}),
        "paper-smooth": (*PAPER, {**DCGAN, "smoothing": 0.1}),
        "paper-ema9995": (*PAPER, {**DCGAN, "ema": 0.9995}),
    }
)
# The second round (README, "MNIST networks"): what might lift the score past 9.0 at 50 epochs and batch 256.
# "decay": both learning rates fall linearly to zero over the last half of the run ("decay-all": over all of
# it); "k5": 5×5 kernels; "wide": twice the maps in G and D ("gwide": in G only); "beta2": Adam's beta_2 0.99.
_WIDE_G = specs.paper_generator(512, (256, 128))
_WIDE_D = specs.paper_discriminator((128, 256, 512))
_K5_D = {**PAPER[1], "kernel_size": 5}
_K5 = ({**PAPER[0], "kernel_size": 5}, _K5_D)
_LARGE = specs.LARGE_NETS["mnist"]
VARIANTS.update(
    {
        "paper-decay": (*PAPER, {**DCGAN, "decay_start": 0.5}),
        "paper-decay-all": (*PAPER, {**DCGAN, "decay_start": 0.0}),
        "paper-decay-smooth": (*PAPER, {**DCGAN, "decay_start": 0.5, "smoothing": 0.1}),
        "paper-k5": (*_K5, DCGAN),
        "paper-wide": (_WIDE_G, _WIDE_D, DCGAN),
        "paper-gwide": (_WIDE_G, PAPER[1], DCGAN),
        "paper-beta2": (*PAPER, {**DCGAN, "beta_2": 0.99}),
        "paper-k5-gwide": (_LARGE["generator_kwargs"], _LARGE["discriminator_kwargs"], DCGAN),  # `--nets large`
        "paper-k5-beta2": (*_K5, {**DCGAN, "beta_2": 0.99}),
    }
)


# The third round: cheap ways to more learning per epoch at the same networks and step cost ("lr3e4": both
# learning rates 3e-4; "bs64": batch 64), the hinge loss, and spectral normalisation in place of D's BatchNorm.
VARIANTS.update(
    {
        "paper-lr3e4": (*PAPER, {**DCGAN, "g_lr": 3e-4, "d_lr": 3e-4}),
        "paper-lr4e4": (*PAPER, {**DCGAN, "g_lr": 4e-4, "d_lr": 4e-4}),
        "paper-lr3e4-beta2": (*PAPER, {**DCGAN, "g_lr": 3e-4, "d_lr": 3e-4, "beta_2": 0.99}),
        "paper-bs64": (*PAPER, {**DCGAN, "batch": 64}),
        "paper-hinge": (*PAPER, {**DCGAN, "loss": "hinge"}),
        "paper-sn": (PAPER[0], {**PAPER[1], "spectral_norm": True}, DCGAN),
        "paper-k5-lr3e4": (*_K5, {**DCGAN, "g_lr": 3e-4, "d_lr": 3e-4}),
        "paper-lr5e4": (*PAPER, {**DCGAN, "g_lr": 5e-4, "d_lr": 5e-4}),
        "paper-lr6e4": (*PAPER, {**DCGAN, "g_lr": 6e-4, "d_lr": 6e-4}),
        "paper-lr4e4-bs128": (*PAPER, {**DCGAN, "g_lr": 4e-4, "d_lr": 4e-4, "batch": 128}),
    }
)


class SNConv2D(keras.layers.Conv2D):
    """Conv2D whose kernel is divided by its largest singular value (Miyato et al., 2018), one power step per
    training call; the singular vector estimate ``u`` is a non-trainable weight."""

    def build(self, input_shape):
        super().build(input_shape)
        self.u = self.add_weight(
            shape=(1, self.filters), initializer=keras.initializers.RandomNormal(), trainable=False, name="sn_u"
        )

    def _normalised_kernel(self, training):
        w = keras.ops.reshape(self.kernel, (-1, self.filters))
        u = self.u.value
        v = u @ keras.ops.transpose(w)
        v = v / (keras.ops.norm(v) + 1e-12)
        u_new = v @ w
        u_new = u_new / (keras.ops.norm(u_new) + 1e-12)
        u_new, v = keras.ops.stop_gradient(u_new), keras.ops.stop_gradient(v)
        if training:
            self.u.assign(u_new)
        sigma = keras.ops.sum((v @ w) * u_new)
        return self.kernel / sigma

    def call(self, inputs, training=False):
        out = keras.ops.conv(inputs, self._normalised_kernel(training), strides=self.strides, padding=self.padding)
        return out + self.bias if self.use_bias else out


def sn_discriminator(filters=(64, 128, 256)):
    """The paper-style D with spectral normalisation on every convolution instead of BatchNorm."""
    image = keras.Input(SHAPE)
    x = image
    for f in filters:
        x = SNConv2D(f, 4, strides=2, padding="same")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(image, keras.layers.Dense(1)(x))


class TailDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` until ``start`` of ``total`` steps, then falling linearly to zero at ``total``."""

    def __init__(self, rate, start, total):
        self.rate, self.start, self.total = rate, start, total

    def __call__(self, step):
        frac = keras.ops.clip((keras.ops.cast(step, "float32") - self.start) / (self.total - self.start), 0.0, 1.0)
        return self.rate * (1.0 - frac)


def bce(logits, target):
    """Mean sigmoid cross-entropy of logits against a constant target."""
    logits = logits.astype(jnp.float32)
    return jnp.mean(jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def make_epoch_fn(g, d, g_opt, d_opt, cfg, batch):
    ema = cfg["ema"]

    def step(state, inputs):
        g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov, ema_tv, n = state
        images, key = inputs
        noise = jax.random.normal(key, (batch, LATENT))

        def losses(g_tv, d_tv):
            fakes, g_ntv2 = g.stateless_call(g_tv, g_ntv, noise, training=True)
            real, d_ntv2 = d.stateless_call(d_tv, d_ntv, images, training=True)
            fake, d_ntv3 = d.stateless_call(d_tv, d_ntv2, fakes, training=True)
            if cfg.get("loss") == "hinge":
                d_loss = jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
                g_loss = -jnp.mean(fake)
            else:
                d_loss = bce(real, 1.0 - cfg["smoothing"]) + bce(fake, 0.0)
                g_loss = bce(fake, 1.0)
            accs = (jnp.mean(real > 0), jnp.mean(fake < 0))
            return (d_loss, g_loss), (g_ntv2, d_ntv3, accs)

        (d_loss, g_loss), vjp, (g_ntv, d_ntv, accs) = jax.vjp(losses, g_tv, d_tv, has_aux=True)
        d_grads = vjp((jnp.ones(()), jnp.zeros(())))[1]
        g_grads = vjp((jnp.zeros(()), jnp.ones(())))[0]
        g_tv, g_ov = g_opt.stateless_apply(g_ov, g_grads, g_tv)
        d_tv, d_ov = d_opt.stateless_apply(d_ov, d_grads, d_tv)
        n = n + 1
        if ema:
            decay = jnp.minimum(ema, (1.0 + n) / (10.0 + n))
            ema_tv = [e - (1.0 - decay) * (e - v) for e, v in zip(ema_tv, g_tv)]
        out = jnp.stack([d_loss, g_loss, accs[0], accs[1]])
        return (g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov, ema_tv, n), out

    @jax.jit
    def epoch(state, x, perm, key):
        steps = perm.shape[0] // batch
        batches = x[perm[: steps * batch]].reshape((steps, batch, *SHAPE))
        return jax.lax.scan(step, state, (batches, jax.random.split(key, steps)))

    return epoch


def sample(g, g_tv, g_ntv, noise, recalibrate: bool):
    """Images in inference mode; with ``recalibrate`` BatchNorm statistics come from 2,048 fresh samples first."""
    if recalibrate:  # momentum 0: a training-mode pass sets each moving statistic to its batch's statistic
        bns = [layer for layer in g.layers if isinstance(layer, keras.layers.BatchNormalization)]
        old = [layer.momentum for layer in bns]
        for layer in bns:
            layer.momentum = 0.0
        probe = np.random.default_rng([0, 104729]).standard_normal((2048, LATENT)).astype(np.float32)
        _, g_ntv = g.stateless_call(g_tv, g_ntv, probe, training=True)
        for layer, m in zip(bns, old):
            layer.momentum = m
    out = [
        np.asarray(g.stateless_call(g_tv, g_ntv, noise[i : i + 1000], training=False)[0])
        for i in range(0, len(noise), 1000)
    ]
    return np.concatenate(out)


def evaluate(images, real_test):
    result = metrics.evaluate_images("mnist", images, real_test)
    return {"fcd": round(result["fcd"], 2), "score": round(result["score"], 3)}


def run(name, x_train, real_test, epochs, eval_every, seed, log):
    g_kwargs, d_kwargs, cfg = VARIANTS[name]
    tag = f"{name}_s{seed}" if seed else name
    keras.utils.set_random_seed(seed)
    g = models.build_generator(LATENT, SHAPE, **g_kwargs)
    if d_kwargs.get("spectral_norm"):
        d = sn_discriminator(d_kwargs["filters"])
    else:
        d = models.build_discriminator(SHAPE, **d_kwargs)
    batch = cfg.get("batch", 256)

    def rate(lr):
        if cfg.get("decay_start") is None:
            return lr
        total = epochs * (len(x_train) // batch)
        return TailDecay(lr, cfg["decay_start"] * total, total)

    adam = {"beta_1": cfg["beta_1"], "beta_2": cfg.get("beta_2", 0.999)}
    g_opt = keras.optimizers.Adam(rate(cfg["g_lr"]), **adam)
    d_opt = keras.optimizers.Adam(rate(cfg["d_lr"]), **adam)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    values = lambda vs: [jnp.asarray(v.value) for v in vs]  # noqa: E731
    state = (
        values(g.trainable_variables), values(g.non_trainable_variables),
        values(d.trainable_variables), values(d.non_trainable_variables),
        values(g_opt.variables), values(d_opt.variables), values(g.trainable_variables), jnp.zeros((), jnp.float32),
    )  # fmt: skip
    epoch_fn = make_epoch_fn(g, d, g_opt, d_opt, cfg, batch)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    eval_noise = np.random.default_rng([seed, 7]).standard_normal((metrics.EVAL_N, LATENT)).astype(np.float32)
    history = []
    start = time.time()
    for epoch in range(1, epochs + 1):
        key, sub = jax.random.split(key)
        state, out = epoch_fn(state, x_train, jnp.asarray(rng.permutation(len(x_train))), sub)
        d_loss, g_loss, real_acc, fake_acc = np.asarray(out).mean(0)
        record = {"epoch": epoch, "d_loss": round(float(d_loss), 4), "g_loss": round(float(g_loss), 4),
                  "d_real_acc": round(float(real_acc), 3), "d_fake_acc": round(float(fake_acc), 3)}  # fmt: skip
        if epoch % eval_every == 0 or epoch == epochs:
            g_tv = state[6] if cfg["ema"] else state[0]
            n = metrics.EVAL_N if epoch == epochs else metrics.TRAINING_N
            images = sample(g, g_tv, state[1], eval_noise[:n], recalibrate=bool(cfg["ema"]))
            record.update(evaluate(images, real_test), n=n, seconds=round(time.time() - start, 1))
            if epoch == epochs:
                np.save(log.parent / f"{tag}_samples.npy", ((images[:100] + 1) * 127.5).round().astype(np.uint8))
        record["elapsed"] = round(time.time() - start, 1)
        history.append(record)
        print(tag, json.dumps(record), flush=True)
        (log.parent / f"{tag}.json").write_text(
            json.dumps({"variant": name, "seed": seed, "history": history}, indent=1)
        )
    return history[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help=f"any of {sorted(VARIANTS)}, each optionally NAME@SEED")
    parser.add_argument("--data", required=True, help="mnist.npz (x_train, x_test)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with np.load(args.data) as f:
        x_train, real_test = f["x_train"], f["x_test"][..., None]
    x_train = x_train[: args.limit] if args.limit else x_train
    x_train = jnp.asarray(x_train[..., None].astype(np.float32) / 127.5 - 1.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("devices:", jax.devices(), flush=True)
    for variant in args.variants:
        name, _, seed = variant.partition("@")
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
        last = run(name, x_train, real_test, args.epochs, args.eval_every, int(seed or args.seed), out / "log")
        print("FINAL", variant, json.dumps(last), flush=True)


if __name__ == "__main__":
    main()
