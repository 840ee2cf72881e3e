import numpy as np
import pytest

from gan_lib import metrics


def test_frechet_distance_golden_values():
    d = 4
    eye = np.eye(d)
    assert metrics.frechet_distance(np.zeros(d), eye, np.zeros(d), eye) == pytest.approx(0, abs=1e-9)
    # Means apart by (1, 2, 0, 0): distance is the squared norm, 5.
    assert metrics.frechet_distance(np.zeros(d), eye, np.array([1.0, 2, 0, 0]), eye) == pytest.approx(5)
    # Same mean, covariances I and 4I: tr(I + 4I - 2*sqrt(4I)) = d * (1 + 4 - 4) = d.
    assert metrics.frechet_distance(np.zeros(d), eye, np.zeros(d), 4 * eye) == pytest.approx(d)


def test_frechet_distance_non_diagonal_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    s1 = a @ a.T + np.eye(6)
    s2 = 2.5 * s1  # then sqrt(s1 s2) = sqrt(2.5) s1
    expected = np.trace(s1) * (1 + 2.5 - 2 * np.sqrt(2.5))
    assert metrics.frechet_distance(np.zeros(6), s1, np.zeros(6), s2) == pytest.approx(expected, rel=1e-6)


def test_frechet_from_activations_grows_with_shift():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4000, 8))
    near = metrics.frechet_distance_from_activations(a, rng.standard_normal((4000, 8)))
    far = metrics.frechet_distance_from_activations(a, rng.standard_normal((4000, 8)) + 1.0)
    assert near < 0.05 and far == pytest.approx(8, rel=0.1)


def test_classifier_score_golden_values():
    confident_all_classes = np.eye(10)[np.arange(1000) % 10]
    assert metrics.classifier_score_from_probs(confident_all_classes) == pytest.approx(10, rel=1e-6)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert metrics.classifier_score_from_probs(one_class) == pytest.approx(1, rel=1e-6)
    uniform = np.full((100, 10), 0.1)
    assert metrics.classifier_score_from_probs(uniform) == pytest.approx(1, rel=1e-6)
    five_classes = np.eye(10)[np.arange(1000) % 5]
    assert metrics.classifier_score_from_probs(five_classes) == pytest.approx(5, rel=1e-6)


def test_conditional_accuracy_overall_and_per_class():
    labels = np.repeat(np.arange(10), 10)
    pred = labels.copy()
    pred[labels == 3] = 4  # class 3 always wrong
    pred[:5] = 9  # half of class 0 wrong
    acc = metrics.conditional_accuracy_from_probs(np.eye(10)[pred], labels)
    assert acc["overall"] == pytest.approx(0.85)
    assert acc["per_class"][0] == pytest.approx(0.5) and acc["per_class"][3] == 0 and acc["per_class"][5] == 1


def test_quantise_rounds_to_256_levels():
    x = np.array([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2], np.float32)
    q = metrics.quantise(x)
    assert np.all(np.isclose((q + 1) * 127.5, np.round((q + 1) * 127.5), atol=1e-4))
    assert q[0] == -1 and q[-1] == 1


ACCURACY_FLOORS = {"mnist": 0.99, "fashion_mnist": 0.91, "cifar10": 0.85}


@pytest.mark.parametrize("name", sorted(ACCURACY_FLOORS))
def test_shipped_classifier_is_small_and_accurate_on_real_test_images(name):
    from gan_lib.data import DatasetNotFoundError, load_dataset, load_sample

    path = metrics.classifier_path(name)
    assert path.stat().st_size < 3_000_000, "ship the weights alone (no optimizer state), under 3 MB"
    info = metrics.classifier_info(name)
    assert info["test_accuracy"] >= ACCURACY_FLOORS[name]
    try:  # the full test split (CI has all three): the recorded accuracy must be the real one
        data, full = load_dataset(name, download=False), True
    except DatasetNotFoundError:  # the bundled real sample: a looser check of the same thing
        data, full = load_sample(name), False
    probs = metrics.extract(name, data.x_test).probs
    accuracy = float((probs.argmax(1) == data.y_test).mean())
    if full:
        assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-3)
    else:
        assert accuracy >= ACCURACY_FLOORS[name] - 0.03


@pytest.mark.parametrize("recipe", ["dcgan", "tutorial"])
def test_epoch_metrics_record_the_raw_generator_beside_an_ema_sampler(recipe, mnist_sample):
    from gan_lib.specs import get_spec
    from gan_lib.training import GANTrainer

    spec = get_spec("mnist")
    trainer = GANTrainer(spec.build_generator(), spec.build_discriminator(), recipe=recipe)
    trainer.train_step((mnist_sample.x_train[:64].astype(np.float32) - 127.5) / 127.5)
    callback = metrics.epoch_metrics_callback(trainer, "mnist", mnist_sample.x_test, every=5, n=200)
    record = {}
    callback(2, record)  # not a metrics epoch
    assert record == {}
    callback(5, record)
    assert record["metrics_n"] == 200 and record["fcd"] > 0 and 1 <= record["score"] <= 10
    if recipe == "dcgan":  # EMA sampler after one step differs from G itself, and both are on record
        assert record["fcd_raw"] > 0 and record["fcd_raw"] != record["fcd"]
    else:
        assert "fcd_raw" not in record


def test_real_floor_slices_script_prints_each_slice_and_random_draws(monkeypatch, capsys, load_script):
    """scripts/real_floor_slices.py: one line per N-image slice of the held-out images, one per random draw."""
    import re
    import sys

    script = load_script("real_floor_slices")
    monkeypatch.setattr(sys, "argv", ["real_floor_slices.py", "--n", "1000", "--random", "2"])
    script.main()
    lines = capsys.readouterr().out.strip().splitlines()
    slices = [line for line in lines if line.startswith("held-out images")]
    draws = [line for line in lines if "random training images" in line]
    assert len(draws) == 2 and 1 <= len(slices) <= 10 and len(lines) == len(slices) + 2
    for line in lines:
        fcd, score = map(float, re.search(r"FCD ([\d.]+), score ([\d.]+)", line).groups())
        assert fcd >= 0 and 1 <= score <= 10
