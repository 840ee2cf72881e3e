"""Write the hand-made test submissions of tests/test_grading.py into this folder.

Each notebook is small: a few cells, and the ones that train run 2 steps of one epoch on the
bundled sample (the grader runs them with GAN_LIB_SMOKE=1). Their expected verdicts are in
expected.json, and the short time limits of the endless ones in limits.json.

    .venv/bin/python tests/submissions/make_submissions.py
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


# Builders that import Keras only when called: the notebook's own cells then run in a blink (no
# TensorFlow import), which keeps the endless-loop cases fast under their short time limits.
LAZY_BUILDERS = """\
def make_generator(latent_dim=100):
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(4 * 4 * 32),
            layers.LeakyReLU(),
            layers.Reshape((4, 4, 32)),
            layers.Conv2DTranspose(16, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(8, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh"),
        ]
    )


def make_discriminator():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(16, 4, strides=2, padding="same", activation="leaky_relu"),
            layers.Flatten(),
            layers.Dense(1),
        ]
    )"""


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
        code(CIFAR_TRAIN),
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
        code(CIFAR_TRAIN),
    ],
    "mistake_latent_128.ipynb": [
        md("The noise vector has 128 numbers, not 100 (the notebook itself trains with 128)."),
        code(CIFAR_SETUP.format(latent=128)),
        code(CORRECT_G),
        code(CORRECT_D),
        code(CIFAR_TRAIN),
    ],
    "mistake_cgan_no_label_in_d.ipynb": [
        md("A cGAN whose discriminator never sees the label."),
        code(CGAN_SETUP),
        code(CGAN_GENERATOR),
        code(CGAN_DISCRIMINATOR_NO_LABEL),
        code(CGAN_TRAIN),
    ],
    "template_untouched.ipynb": [
        md("The student template, submitted as it was handed out."),
        code("LATENT_DIM = 100\nRUN_DIR = None"),
        code(STUB_BUILDERS),
        code("generator = make_generator()"),
    ],
    # ----- hostile ones
    "hostile_infinite_loop.ipynb": [
        md("Correct networks, then a cell that never ends (the grader interrupts it)."),
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
        md("Correct networks, then os._exit() kills the kernel; the grader restarts it and still grades."),
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
        md("Tries to write outside its folder: Python writes are blocked; TensorFlow's C++ writes are only detected."),
        code(STUB_BUILDERS),
        code('with open("../canary/escape.txt", "w") as handle:\n    handle.write("escaped")'),
        code('with open("/tmp/gan-kit-grading-test-escape.txt", "w") as handle:\n    handle.write("escaped")'),
        code(
            "import tensorflow as tf\n\n"
            'with tf.io.gfile.GFile("../canary/escape-from-tensorflow.txt", "w") as handle:\n'
            '    handle.write("escaped through C++")'
        ),
    ],
    "hostile_delete_outside.ipynb": [
        md("Tries to delete files outside its folder, and to start a shell."),
        code(STUB_BUILDERS),
        code('import os\n\nos.remove("../canary/CANARY.txt")'),
        code('import shutil\n\nshutil.rmtree("../canary")'),
        code('import os\n\nos.rename("../canary/CANARY.txt", "stolen.txt")'),
        code('import os\n\nos.system("rm -rf ../canary")'),
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
