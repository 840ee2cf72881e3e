"""``gan-lib similarity``: near-copies are paired, independent work is not, and template code matches nothing.

Three hand-written submissions of notebook 02's builders: ``alice`` and ``bob`` are the same code with
other names, other comments and another layout; ``carol`` wrote her own (the functional API,
UpSampling2D, other widths). A fourth and fifth share only code that their template gave them.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gan_lib.grading import similarity

ROOT = Path(__file__).resolve().parents[1]
SETUP = "import keras\nfrom keras import layers\n\nLATENT_DIM = 100"

ALICE = """\
def make_generator_model(latent_dim=LATENT_DIM):
    # project the noise to a 4x4 map, then upsample three times
    model = keras.Sequential()
    model.add(keras.Input(shape=(latent_dim,)))
    model.add(layers.Dense(4 * 4 * 256, use_bias=False))
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU(0.2))
    model.add(layers.Reshape((4, 4, 256)))
    model.add(layers.Conv2DTranspose(128, 5, strides=2, padding="same", use_bias=False))  # 8x8
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU(0.2))
    model.add(layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False))  # 16x16
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU(0.2))
    model.add(layers.Conv2DTranspose(3, 5, strides=2, padding="same", activation="tanh"))  # 32x32x3
    return model


def make_discriminator_model():
    # two strided convolutions and one logit
    model = keras.Sequential()
    model.add(keras.Input(shape=(32, 32, 3)))
    model.add(layers.Conv2D(64, 5, strides=2, padding="same"))
    model.add(layers.LeakyReLU(0.2))
    model.add(layers.Dropout(0.3))
    model.add(layers.Conv2D(128, 5, strides=2, padding="same"))
    model.add(layers.LeakyReLU(0.2))
    model.add(layers.Dropout(0.3))
    model.add(layers.Flatten())
    model.add(layers.Dense(1))
    return model
"""

BOB = '''\
def make_generator_model(noise_size=LATENT_DIM):
    """My generator."""
    g = keras.Sequential()
    g.add(keras.Input(shape=(noise_size,)))
    g.add(layers.Dense(4 * 4 * 256,
                       use_bias=False))
    g.add(layers.BatchNormalization())
    g.add(layers.LeakyReLU(0.2))
    g.add(layers.Reshape((4, 4, 256)))
    # upsampling path
    g.add(layers.Conv2DTranspose(128, 5, strides=2,
                                 padding="same", use_bias=False))
    g.add(layers.BatchNormalization())
    g.add(layers.LeakyReLU(0.2))
    g.add(layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False))
    g.add(layers.BatchNormalization())
    g.add(layers.LeakyReLU(0.2))
    g.add(layers.Conv2DTranspose(3, 5, strides=2, padding="same", activation="tanh"))
    return g


def make_discriminator_model():
    d = keras.Sequential()  # the critic
    d.add(keras.Input(shape=(32, 32, 3)))
    d.add(layers.Conv2D(64, 5, strides=2, padding="same"))
    d.add(layers.LeakyReLU(0.2))
    d.add(layers.Dropout(0.3))

    d.add(layers.Conv2D(128, 5, strides=2, padding="same"))
    d.add(layers.LeakyReLU(0.2))
    d.add(layers.Dropout(0.3))
    d.add(layers.Flatten())
    d.add(layers.Dense(1))
    return d
'''

CAROL = """\
def up_block(x, filters):
    x = layers.UpSampling2D()(x)
    x = layers.Conv2D(filters, kernel_size=3, padding="same")(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def make_generator_model(latent_dim=LATENT_DIM):
    noise = keras.Input((latent_dim,))
    x = layers.Dense(4 * 4 * 512)(noise)
    x = layers.Reshape((4, 4, 512))(x)
    for filters in (256, 128, 64):
        x = up_block(x, filters)
    image = layers.Conv2D(3, kernel_size=3, padding="same", activation="tanh")(x)
    return keras.Model(noise, image, name="carols_generator")


def make_discriminator_model():
    image = keras.Input((32, 32, 3))
    h = image
    for width in (32, 64, 128):
        h = layers.Conv2D(width, 3, strides=2, padding="same")(h)
        h = layers.LeakyReLU(negative_slope=0.1)(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(image, layers.Dense(1)(h))
"""

# A template that hands the students a whole discriminator; they write the generator.
GIVEN = ALICE.replace("    model.add(layers.Conv2D(128", "    model.add(layers.Conv2D(256")  # not alice's exactly
TEMPLATE_CODE = GIVEN[GIVEN.index("def make_discriminator_model") :]
TEMPLATE_GENERATOR = (
    "def make_generator_model(latent_dim=LATENT_DIM):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
)
DAN = CAROL[: CAROL.index("def make_discriminator_model")] + TEMPLATE_CODE
ERIN = ALICE[: ALICE.index("def make_discriminator_model")] + TEMPLATE_CODE


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# DCGAN on CIFAR-10")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def split_cells(code: str) -> list[str]:
    """One function per cell, with a call after it, as students' notebooks have them."""
    return [part.strip() + "\n" for part in code.split("\n\n\n")] + ["generator = make_generator_model()"]


@pytest.fixture
def folder(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name, code in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        write_notebook(submissions / f"{name}.ipynb", SETUP, *split_cells(code), "%matplotlib inline\nprint('done')")
    return submissions


def pair_names(report: dict) -> set[frozenset]:
    return {frozenset((p["a"], p["b"])) for p in report["pairs"]}


def test_extract_builders_takes_builders_and_their_helpers_only(folder):
    nb = json.loads((folder / "carol.ipynb").read_text())
    code = similarity.extract_builders(nb, "carol.ipynb")
    assert code.functions == ["up_block", "make_generator_model", "make_discriminator_model"]
    assert "LATENT_DIM = 100" not in code.text and "print('done')" not in code.text
    function, cell, line = code.origin[0]
    assert (function, line) == ("up_block", 1) and "".join(nb["cells"][cell - 1]["source"]).startswith("def up_block")


def test_near_copies_are_paired_with_their_lines_and_independent_work_is_not(folder, tmp_path):
    out = tmp_path / "report"
    report = similarity.similarity_report(folder, out)
    assert pair_names(report) == {frozenset(("alice.ipynb", "bob.ipynb"))}
    pair = report["pairs"][0]
    assert pair["share_a"] > 0.9 and pair["share_b"] > 0.9
    alice_text = "\n".join(block["text"] for block in pair["matches_a"])
    bob_text = "\n".join(block["text"] for block in pair["matches_b"])
    assert "model.add(layers.Conv2DTranspose(64, 5" in alice_text and "g.add(layers.Conv2DTranspose(64, 5" in bob_text
    assert {b["function"] for b in pair["matches_b"]} == {"make_generator_model", "make_discriminator_model"}

    # Carol is below the threshold against both, even when the threshold is far lower.
    low = similarity.similarity_report(folder, tmp_path / "low", threshold=0.3)
    assert not any("carol.ipynb" in names for names in pair_names(low))

    # The three files: Markdown for reading, CSV and JSON for tools.
    markdown = (out / "similarity.md").read_text()
    assert "never a penalty" in markdown and "`alice.ipynb` and `bob.ipynb`" in markdown
    assert 'g.add(layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False))' in markdown
    rows = list(csv.DictReader((out / "similarity.csv").open()))
    assert [(r["a"], r["b"]) for r in rows] == [("alice.ipynb", "bob.ipynb")]
    assert json.loads((out / "similarity.json").read_text())["pairs"] == report["pairs"]


def test_code_the_template_gave_creates_no_match(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    write_notebook(submissions / "dan.ipynb", SETUP, *split_cells(DAN))
    write_notebook(submissions / "erin.ipynb", SETUP, *split_cells(ERIN))
    template = write_notebook(tmp_path / "template.ipynb", SETUP, TEMPLATE_GENERATOR, TEMPLATE_CODE)

    without = similarity.similarity_report(submissions, tmp_path / "without", templates=[], threshold=0.3)
    assert pair_names(without) == {frozenset(("dan.ipynb", "erin.ipynb"))}  # the given discriminator matches
    assert {b["function"] for b in without["pairs"][0]["matches_a"]} == {"make_discriminator_model"}

    with_template = similarity.similarity_report(submissions, tmp_path / "with", templates=[template], threshold=0.3)
    assert with_template["pairs"] == []


def test_the_kits_own_templates_are_discounted_by_default(tmp_path):
    """Two notebooks that are the kit's 02 template, untouched: the same code, and no pair."""
    template = ROOT / "notebooks" / "student" / "02_dcgan_cifar10.ipynb"
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name in ("one.ipynb", "two.ipynb"):
        (submissions / name).write_bytes(template.read_bytes())
    assert similarity.similarity_report(submissions, tmp_path / "default")["pairs"] == []
    raw = similarity.similarity_report(submissions, tmp_path / "raw", templates=[], threshold=0.3, min_tokens=1)
    assert pair_names(raw) == {frozenset(("one.ipynb", "two.ipynb"))}


def test_command_line_writes_the_report_and_refuses_bad_input(folder, tmp_path):
    out = tmp_path / "cli"
    run = [sys.executable, "-m", "gan_lib.cli", "similarity"]
    done = subprocess.run([*run, str(folder), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "1 pair(s) of 3 submissions" in done.stdout and (out / "similarity.md").is_file()
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    write_notebook(lonely / "only.ipynb", SETUP)
    refused = subprocess.run([*run, str(lonely), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "at least 2 are needed" in refused.stderr
