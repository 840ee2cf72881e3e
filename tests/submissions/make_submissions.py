"""Write the hand-made test submissions of tests/test_grading.py into this folder.

Each notebook is small: a few cells, and the ones that train run 2 steps of one epoch on the
bundled sample (the grader runs them with GAN_LIB_SMOKE=1). Their expected verdicts are in
expected.json, and the short time limits of the endless ones in limits.json.

    .venv/bin/python tests/submissions/make_submissions.py

The attack notebooks (attack_*) are written to do no harm even unsandboxed: they write only test-owned names
(/tmp/gan-kit-grading-test-*, a canary the test creates) and the --out folders of running graders. Still, grade
this folder only where bubblewrap works: tests/test_grading.py leaves the attacks out where it does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

CIFAR_SETUP = """\
import keras
from keras import layers

import gan_lib
from gan_lib.runs import default_run_dir, load_training_data
from gan_lib.specs import get_spec

LATENT_DIM = {latent}
RUN_DIR = default_run_dir("submission")
data = load_training_data(get_spec("cifar10"), limit=256)"""

CIFAR_GENERATOR = """\
def make_generator(latent_dim=LATENT_DIM):
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense({start} * {start} * 64, use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Reshape(({start}, {start}, 64)),
            layers.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),{extra}
            layers.Conv2DTranspose({channels}, 4, strides=2, padding="same"{activation}),
        ]
    )"""

EXTRA_UPSAMPLING = """
            layers.Conv2DTranspose(16, 4, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),"""

CIFAR_DISCRIMINATOR = """\
def make_discriminator():
    return keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(32, 4, strides=2, padding="same"),
            layers.LeakyReLU(),
            layers.Conv2D(64, 4, strides=2, padding="same"),
            layers.LeakyReLU(),
            layers.Flatten(),
            layers.Dense({head}),
        ]
    )"""

CIFAR_TRAIN = """\
trainer = gan_lib.GANTrainer(make_generator(), make_discriminator(), recipe="tutorial", latent_dim=LATENT_DIM)
history = gan_lib.train(
    trainer, data.x_train, epochs=1, run_dir=RUN_DIR, batch_size=32, steps_per_epoch=2, grid=(7, 7), verbose=0
)
print(history)"""

CGAN_SETUP = """\
import keras
from keras import layers

import gan_lib
from gan_lib.runs import default_run_dir, load_training_data
from gan_lib.specs import get_spec

LATENT_DIM = 100
NUM_CLASSES = 10
RUN_DIR = default_run_dir("submission")
data = load_training_data(get_spec("fashion-cgan"), limit=256)"""

CGAN_GENERATOR = """\
def make_conditional_generator(latent_dim=LATENT_DIM, num_classes=NUM_CLASSES):
    noise = keras.Input(shape=(latent_dim,))
    label = keras.Input(shape=(), dtype="int32")
    x = layers.Dense(7 * 7 * 32, use_bias=False)(noise)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((7, 7, 32))(x)
    y = layers.Embedding(num_classes, 16)(label)
    y = layers.Dense(7 * 7)(y)
    y = layers.Reshape((7, 7, 1))(y)
    x = layers.Concatenate()([x, y])
    x = layers.Conv2DTranspose(16, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU()(x)
    image = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")(x)
    return keras.Model([noise, label], image)"""

CGAN_DISCRIMINATOR = """\
def make_conditional_discriminator(num_classes=NUM_CLASSES):
    image = keras.Input(shape=(28, 28, 1))
    label = keras.Input(shape=(), dtype="int32")
    y = layers.Embedding(num_classes, 16)(label)
    y = layers.Dense(28 * 28)(y)
    y = layers.Reshape((28, 28, 1))(y)
    x = layers.Concatenate()([image, y])
    x = layers.Conv2D(32, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU()(x)
    x = layers.Flatten()(x)
    return keras.Model([image, label], layers.Dense(1)(x))"""

CGAN_DISCRIMINATOR_NO_LABEL = """\
def make_conditional_discriminator(num_classes=NUM_CLASSES):
    image = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 4, strides=2, padding="same")(image)
    x = layers.LeakyReLU()(x)
    x = layers.Flatten()(x)
    return keras.Model(image, layers.Dense(1)(x))"""

CGAN_TRAIN = """\
trainer = gan_lib.GANTrainer(
    make_conditional_generator(),
    make_conditional_discriminator(),
    recipe="tutorial",
    latent_dim=LATENT_DIM,
    num_classes=NUM_CLASSES,
)
history = gan_lib.train(
    trainer,
    data.x_train,
    data.y_train,
    epochs=1,
    run_dir=RUN_DIR,
    batch_size=32,
    steps_per_epoch=2,
    grid=(10, 10),
    class_names=data.class_names,
    verbose=0,
)
print(history)"""

STUB_BUILDERS = """\
def make_generator(latent_dim=100):
    raise NotImplementedError("make_generator() is yours to write")


def make_discriminator():
    raise NotImplementedError("make_discriminator() is yours to write")"""


# Builders that return no model: calling them needs no TensorFlow, so the endless-loop and crash cases stay
# fast, and their reasons ("returned str") show that the builders were still called after the cell was stopped.
LAZY_BUILDERS = """\
def make_generator(latent_dim=100):
    return "a string, not a model"


def make_discriminator():
    return 42"""

# The assignment's names, the functional API, UpSampling2D + Conv2D, extra keyword arguments, a final
# keras.ops.tanh, no training cell, and a cell whose display is larger than the grader keeps.
VALID_VARIANTS = """\
import keras
from keras import layers


def make_generator_model(latent_dim=100, base_filters=32, use_dropout=False):
    noise = keras.Input(shape=(latent_dim,))
    x = layers.Dense(4 * 4 * base_filters * 2)(noise)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((4, 4, base_filters * 2))(x)
    for filters in (base_filters * 2, base_filters, base_filters // 2):
        x = layers.UpSampling2D()(x)
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.LeakyReLU()(x)
    x = layers.Conv2D(3, 3, padding="same")(x)
    return keras.Model(noise, keras.ops.tanh(x), name="my_generator")


def make_discriminator_model(filters=(32, 64), dropout=0.3):
    image = keras.Input(shape=(32, 32, 3))
    x = image
    for width in filters:
        x = layers.Conv2D(width, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU()(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    return keras.Model(image, layers.Dense(1)(x), name="my_discriminator")"""

BIG_DISPLAY = """\
from IPython.display import HTML, display

display(HTML("<p>" + "reference comparison " * 70_000 + "</p>"))"""

IGNORES_NOISE = """\
def make_generator(latent_dim=LATENT_DIM):
    noise = keras.Input(shape=(latent_dim,))
    silenced = layers.Dense(1, use_bias=False, kernel_initializer="zeros", trainable=False)(noise)
    x = layers.Dense(4 * 4 * 64, bias_initializer="random_normal")(silenced)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((4, 4, 64))(x)
    x = layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(16, 4, strides=2, padding="same", activation="relu")(x)
    image = layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh")(x)
    return keras.Model(noise, image)"""

CGAN_DISCRIMINATOR_LATE_LABEL = """\
def make_conditional_discriminator(num_classes=NUM_CLASSES):
    image = keras.Input(shape=(28, 28, 1))
    label = keras.Input(shape=(), dtype="int32")
    x = layers.Conv2D(32, 4, strides=2, padding="same")(image)
    x = layers.LeakyReLU()(x)
    x = layers.Flatten()(x)
    y = layers.Embedding(num_classes, 8)(label)
    x = layers.Concatenate()([x, y])
    return keras.Model([image, label], layers.Dense(1)(x))"""

CGAN_GENERATOR_SWAPPED = """\
def make_conditional_generator(latent_dim=LATENT_DIM, num_classes=NUM_CLASSES):
    label = keras.Input(shape=(), dtype="int32")
    noise = keras.Input(shape=(latent_dim,))
    y = layers.Embedding(num_classes, 16)(label)
    x = layers.Concatenate()([noise, y])
    x = layers.Dense(7 * 7 * 32)(x)
    x = layers.LeakyReLU()(x)
    x = layers.Reshape((7, 7, 32))(x)
    x = layers.Conv2DTranspose(16, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU()(x)
    image = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh")(x)
    return keras.Model([label, noise], image)"""

KIT_NETWORKS = """\
from gan_lib.specs import get_spec


def make_generator_model():
    return get_spec("cifar10").build_generator()


def make_discriminator_model():
    spec = get_spec("cifar10")
    return spec.build_discriminator()"""

# The kit's networks again, reached without naming a kit builder in the builder's own body.
KIT_NETWORKS_HIDDEN = """\
import importlib

_where = importlib.import_module("gan_lib." + "specs")


def make_generator_model():
    return getattr(getattr(_where, "get_" + "spec")("cifar10"), "build_" + "generator")()


def make_discriminator_model():
    return getattr(getattr(_where, "get_" + "spec")("cifar10"), "build_" + "discriminator")()"""

LAMBDA_AND_SUBCLASS = """\
import keras
from keras import layers


def make_generator_model(latent_dim=100):
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(4 * 4 * 32),
            layers.Reshape((4, 4, 32)),
            layers.Conv2DTranspose(16, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(8, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(3, 4, strides=2, padding="same"),
            layers.Lambda(lambda x: keras.ops.tanh(x)),
        ]
    )


class Critic(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2D(16, 4, strides=2, padding="same", activation="leaky_relu")
        self.flat = layers.Flatten()
        self.head = layers.Dense(1)

    def call(self, images):
        return self.head(self.flat(self.conv(images)))


def make_discriminator_model():
    critic = Critic()
    critic(keras.ops.zeros((1, 32, 32, 3)))
    return critic"""

# ----- attacks: each tries to forge a score, reach another submission, or escape its folder.

FORGE_RESULT = """\
import builtins
import json

from IPython import get_ipython

FAKE = {"items": {}, "total": 5.5, "status": "ok", "nonce": "guessed"}
_real_dumps = json.dumps


def _forge(*args, **kwargs):
    for name in ("__gan_lib_grade_result__", "verdict", "result"):
        get_ipython().user_ns[name] = _real_dumps(FAKE)


get_ipython().events.register("post_run_cell", _forge)
json.dumps = lambda *a, **k: _real_dumps(FAKE)
builtins.bool = lambda *a: True
print(_real_dumps(FAKE))"""

FORGE_EXPORT = """\
import json
import os
import shutil
import sys
from pathlib import Path

import gan_lib

REFERENCE = Path(gan_lib.__file__).parent / "assets" / "reference" / "cifar10" / "generator.keras"


def fake_export(ns, names, scratch):
    folder = Path(scratch) / ".gan-lib-grade"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(REFERENCE, folder / "generator.keras")
    os.symlink(REFERENCE, folder / "discriminator.keras")
    summary = {role: {"builder": names[role][0], "why": ""} for role in ("generator", "discriminator")}
    (folder / "builders.json").write_text(json.dumps(summary))


import gan_lib.grading.export as export  # noqa: E402

export.export_builders = fake_export
sys.modules["gan_lib.grading.export"].export_builders = fake_export"""

SIBLING_KERNEL = """\
import glob
import json
import time

own = open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace").split("\\0")
mine = own[own.index("-f") + 1] if "-f" in own else None
found = set()
deadline = time.time() + 12
while time.time() < deadline:
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            words = open(cmdline, "rb").read().decode("utf-8", "replace").split("\\0")
        except OSError:
            continue
        for i, word in enumerate(words[:-1]):
            if word == "-f" and words[i + 1].endswith(".json"):
                found.add(words[i + 1])
    found.update(glob.glob("/tmp/**/kernel-*.json", recursive=True))
    found.update(glob.glob("/root/.local/share/jupyter/runtime/*.json"))
    time.sleep(1)
found.discard(mine)
connected = 0
for path in found:
    if "gan-lib-grade-" not in path:  # only the grader's kernels, never another program's
        continue
    try:
        info = json.load(open(path))
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_info(info)
        client.start_channels()
        client.execute("sibling_was_here = True")
        connected += 1
    except Exception as exc:
        print("could not use", path, type(exc).__name__)
print(f"other kernels found: {len(found)}; connected: {connected}")"""

# Safe even where it is not sandboxed: it writes only inside the --out folders of running graders (never the
# repository's notebooks) and only counts the notebooks it can see elsewhere.
OVERWRITE_REPORTS = """\
import glob
import os
import time

import tensorflow as tf

outs = set()
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        words = open(cmdline, "rb").read().decode("utf-8", "replace").split("\\0")
    except OSError:
        continue
    if "gan_lib.grading" in words and "--out" in words[:-1]:
        outs.add(words[words.index("--out") + 1])
targets = [os.path.join(out, "gan-kit-grading-test-pwned.txt") for out in outs]
for out in outs:
    targets += glob.glob(os.path.join(out, "*", "report.md"))
written = 0
for path in targets:
    try:
        tf.io.write_file(path, "pwned")
        written += 1
    except Exception:
        pass
visible = 0
started = time.time()
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/usr", "/dev", os.getcwd())]
    if time.time() - started > 15:
        break
    visible += sum(name in ("report.md", "gradebook.csv") or name.endswith(".ipynb") for name in files)
print(f"grader outputs found: {len(outs)}; overwritten: {written}; reports and notebooks visible: {visible}")"""

ESCAPE = """\
import ctypes
import glob
import multiprocessing
import os
import subprocess
import sys
import threading

import tensorflow as tf

for module in list(sys.modules.values()):
    hook = getattr(module, "SandboxHook", None)
    if hook is not None:
        hook.__call__ = lambda self, event, args: None
TAG = "/tmp/gan-kit-grading-test-escape"
open(TAG + "-open.txt", "w").write("escaped")
subprocess.run(["sh", "-c", f"echo escaped > {TAG}-shell.txt"], check=False)
ctypes.CDLL(None).system(f"touch {TAG}-libc.txt".encode())
tf.io.write_file(TAG + "-tf.txt", "escaped")
thread = threading.Thread(target=lambda: open(TAG + "-thread.txt", "w").write("escaped"))
thread.start()
thread.join()
context = multiprocessing.get_context("spawn")
child = context.Process(target=os.system, args=(f"touch {TAG}-spawn.txt",))
child.start()
child.join()
os.chdir("/")
for path in ("gan-kit-grading-test-escape-root.txt", "usr/gan-kit-grading-test-escape.txt"):
    try:
        tf.io.write_file(path, "escaped")
    except Exception as exc:
        print(path, type(exc).__name__)
for canary in ["/root/.gan-kit-grading-canary", *glob.glob("/home/*/.gan-kit-grading-canary")]:
    try:
        tf.io.gfile.remove(canary)
    except Exception as exc:
        print(canary, type(exc).__name__)
print("escape attempts done:", sorted(glob.glob(TAG + "*")))"""

READ_SECRETS = """\
import glob
import os
import socket

passwd = open("/etc/passwd").read()
print("host accounts visible:", "root:" in passwd)
commands = []
for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        commands.append(open(cmdline, "rb").read().replace(b"\\0", b" ").decode("utf-8", "replace"))
    except OSError:
        pass
print("processes mentioning the grader:", sum("gan_lib.grading.runner" in c or "--out" in c for c in commands))
notebooks = []
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/usr", "/dev", os.getcwd())]
    notebooks += [name for name in files if name.endswith(".ipynb") and "site-packages" not in root]
print("other notebooks visible:", len(notebooks))
print("environment:", sorted(os.environ))
print("secret in environment:", any("gan-kit-test-secret" in value for value in os.environ.values()))
print("network interfaces:", [name for _, name in socket.if_nameindex()])
try:
    socket.create_connection(("127.0.0.1", 47391), timeout=3)
    print("reached the host's port 47391")
except OSError as exc:
    print("network: no connection", type(exc).__name__)"""


def cifar_generator(start=4, extra=True, channels=3, activation=', activation="tanh"'):
    return CIFAR_GENERATOR.format(
        start=start, extra=EXTRA_UPSAMPLING if extra else "", channels=channels, activation=activation
    )


CORRECT_G = cifar_generator()
CORRECT_D = CIFAR_DISCRIMINATOR.format(head="1")


def md(text: str):
    return nbformat.v4.new_markdown_cell(text)


def code(text: str):
    return nbformat.v4.new_code_cell(text)


SUBMISSIONS = {
    # ----- correct ones
    "correct_cifar.ipynb": [
        md("# A correct CIFAR-10 DCGAN (small)"),
        code(CIFAR_SETUP.format(latent=100)),
        code(CORRECT_G),
        code(CORRECT_D),
        code(CIFAR_TRAIN),
    ],
    "correct_cgan.ipynb": [
        md("# A correct conditional DCGAN on Fashion-MNIST (small)"),
        code(CGAN_SETUP),
        code(CGAN_GENERATOR),
        code(CGAN_DISCRIMINATOR),
        code(CGAN_TRAIN),
    ],
    # ----- the classic mistakes
    "mistake_mnist_shape.ipynb": [
        md("The generator makes 28x28x1 images (MNIST's), not CIFAR-10's 32x32x3."),
        code(CIFAR_SETUP.format(latent=100)),
        code(cifar_generator(start=7, extra=False, channels=1)),
        code(CORRECT_D),
        code(CIFAR_TRAIN),
    ],
    "mistake_dense3.ipynb": [
        md("The discriminator ends in Dense(3): three numbers per image."),
        code(CIFAR_SETUP.format(latent=100)),
        code(CORRECT_G),
        code(CIFAR_DISCRIMINATOR.format(head="3")),
    ],
    "mistake_sigmoid.ipynb": [
        md("The discriminator ends in a sigmoid while the loss uses from_logits=True."),
        code(CIFAR_SETUP.format(latent=100)),
        code(CORRECT_G),
        code(CIFAR_DISCRIMINATOR.format(head='1, activation="sigmoid"')),
        code(CIFAR_TRAIN),
    ],
    "mistake_no_tanh.ipynb": [
        md("The generator's last layer has no tanh."),
        code(CIFAR_SETUP.format(latent=100)),
        code(cifar_generator(activation="")),
        code(CORRECT_D),
    ],
    "mistake_latent_128.ipynb": [
        md("The noise vector has 128 numbers, not 100 (the notebook itself trains with 128)."),
        code(CIFAR_SETUP.format(latent=128)),
        code(CORRECT_G),
        code(CORRECT_D),
    ],
    "mistake_cgan_no_label_in_d.ipynb": [
        md("A cGAN whose discriminator never sees the label."),
        code(CGAN_SETUP),
        code(CGAN_GENERATOR),
        code(CGAN_DISCRIMINATOR_NO_LABEL),
    ],
    "template_untouched.ipynb": [
        md("The student template, submitted as it was handed out."),
        code("LATENT_DIM = 100\nRUN_DIR = None"),
        code(STUB_BUILDERS),
        code("generator = make_generator()"),
    ],
    # ----- hostile ones
    "hostile_infinite_loop.ipynb": [
        md("Builders, then a cell that never ends (the grader interrupts it; the builders are still called)."),
        code(LAZY_BUILDERS),
        code("step = 0\nwhile True:\n    step += 1"),
        code('print("the next cell still runs")'),
    ],
    "hostile_stubborn_loop.ipynb": [
        md("A loop that swallows the interrupt: the grader has to kill the kernel."),
        code(STUB_BUILDERS),
        code(
            "import time\n\nwhile True:\n    try:\n        time.sleep(0.2)\n    except BaseException:\n"
            '        print("not stopping")'
        ),
    ],
    "hostile_os_exit.ipynb": [
        md("Builders, then os._exit() kills the kernel; the grader restarts it and still calls the builders."),
        code(LAZY_BUILDERS),
        code("import os\n\nos._exit(3)"),
        code('print("the next cell still runs")'),
    ],
    "hostile_sys_exit.ipynb": [
        md("sys.exit() in a cell."),
        code(STUB_BUILDERS),
        code('import sys\n\nsys.exit("bye")'),
        code('print("the next cell still runs")'),
    ],
    "hostile_raise.ipynb": [
        md("A cell raises."),
        code(STUB_BUILDERS),
        code('raise RuntimeError("something went wrong on purpose")'),
    ],
    "hostile_missing_import.ipynb": [
        md("Imports a module the grader does not have."),
        code("import gan_kit_no_such_module_for_tests"),
        code(STUB_BUILDERS),
    ],
    "hostile_print_megabytes.ipynb": [
        md("Prints about 11 MB."),
        code(STUB_BUILDERS),
        code('for step in range(100_000):\n    print(f"step {step:6d}: " + "x" * 100)'),
    ],
    "hostile_huge_allocation.ipynb": [
        md("Asks for 12 GiB (np.empty does not touch the pages, so this is harmless without a limit)."),
        code(STUB_BUILDERS),
        code("import numpy as np\n\nhuge = np.empty(12 * 2**30, dtype=np.uint8)\nprint(huge.nbytes)"),
    ],
    "hostile_write_outside.ipynb": [
        md("Tries to write outside its folder: the audit hook refuses Python writes, the read-only system the rest."),
        code(STUB_BUILDERS),
        code('with open("../escape.txt", "w") as handle:\n    handle.write("escaped")'),
        code('with open("/tmp/gan-kit-grading-test-escape.txt", "w") as handle:\n    handle.write("private /tmp")'),
        code(
            "import tensorflow as tf\n\n"
            'with tf.io.gfile.GFile("/gan-kit-grading-escape-from-tensorflow.txt", "w") as handle:\n'
            '    handle.write("escaped through C++")'
        ),
    ],
    "hostile_delete_outside.ipynb": [
        md("Tries to delete files outside its folder, to start a shell and to fork."),
        code(STUB_BUILDERS),
        code('import os\n\nos.remove("/etc/gan-kit-grading-test-victim.txt")'),
        code('import shutil\n\nshutil.rmtree("/etc/gan-kit-grading-test-victim")'),
        code('import os\n\nos.rename("/etc/gan-kit-grading-test-victim.txt", "stolen.txt")'),
        code('import os\n\nos.system("ls /")'),
        code("import os\n\nos.fork()"),
    ],
    # ----- valid variants and further mistakes
    "valid_variants.ipynb": [
        md(
            "Valid variants: the assignment's names, functional API, UpSampling2D + Conv2D, extra keyword arguments, "
            "a final keras.ops.tanh, no training cell, and a display larger than the grader keeps."
        ),
        code(VALID_VARIANTS),
        code(BIG_DISPLAY),
    ],
    "mistake_ignores_noise.ipynb": [
        md("The generator's output does not depend on its noise."),
        code("import keras\nfrom keras import layers\n\nLATENT_DIM = 100"),
        code(IGNORES_NOISE),
        code(CORRECT_D),
    ],
    "mistake_cgan_label_after_hidden.ipynb": [
        md("The cGAN's discriminator joins the label after its last hidden layer: it only shifts the score."),
        code("import keras\nfrom keras import layers\n\nLATENT_DIM = 100\nNUM_CLASSES = 10"),
        code(CGAN_GENERATOR),
        code(CGAN_DISCRIMINATOR_LATE_LABEL),
    ],
    "mistake_cgan_swapped_inputs.ipynb": [
        md("The cGAN's generator takes (label, noise) instead of (noise, label)."),
        code("import keras\nfrom keras import layers\n\nLATENT_DIM = 100\nNUM_CLASSES = 10"),
        code(CGAN_GENERATOR_SWAPPED),
        code(CGAN_DISCRIMINATOR),
    ],
    "kit_networks.ipynb": [
        md("The builders hand back the kit's own networks."),
        code(KIT_NETWORKS),
    ],
    "kit_networks_hidden.ipynb": [
        md("The kit's own networks, reached without naming a kit builder in the builders' bodies."),
        code(KIT_NETWORKS_HIDDEN),
    ],
    "unsafe_lambda_and_subclass.ipynb": [
        md("A generator with a Lambda layer and a subclassed discriminator: neither loads in safe mode."),
        code(LAMBDA_AND_SUBCLASS),
    ],
    # ----- attacks
    "attack_forge_result.ipynb": [
        md("Stub builders, and hooks that rewrite a grading result and patch json.dumps and bool."),
        code(STUB_BUILDERS),
        code(FORGE_RESULT),
    ],
    "attack_forge_export.ipynb": [
        md("Stub builders; replaces the export step with one that saves the kit's reference generator and a link."),
        code(STUB_BUILDERS),
        code(FORGE_EXPORT),
    ],
    "attack_sibling_kernel.ipynb": [
        md("Looks for the other grader kernels for 12 s and tries to run code in them."),
        code(STUB_BUILDERS),
        code(SIBLING_KERNEL),
    ],
    "attack_overwrite_reports.ipynb": [
        md("Looks for the grader's --out and tries to overwrite its reports from C++; counts the notebooks it sees."),
        code(STUB_BUILDERS),
        code(OVERWRITE_REPORTS),
    ],
    "attack_escape.ipynb": [
        md("Switches off the audit hook, then writes and deletes outside its folder every way it knows."),
        code(STUB_BUILDERS),
        code(ESCAPE),
    ],
    "attack_read_secrets.ipynb": [
        md("Reads what it should not see: host accounts, processes, other notebooks, the environment, the network."),
        code(STUB_BUILDERS),
        code(READ_SECRETS),
    ],
}


def main() -> int:
    for name, cells in SUBMISSIONS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        nb.metadata["language_info"] = {"name": "python"}
        for number, cell in enumerate(cells):
            cell["id"] = f"cell-{number:02d}"
        nb.cells = cells
        nbformat.validate(nb)
        (HERE / name).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
