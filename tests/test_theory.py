"""The numbers of notebooks/00_gan_theory.ipynb, checked with the full settings (gan_lib.theory's defaults).

Each trained model is built once per module (fixtures), so the whole file runs in about a minute on two cores.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import losses, theory

SEED = 1  # the notebook's seed


# --- fixtures: the notebook's trainings, full length ----------------------------------------------------


@pytest.fixture(scope="module")
def d_fit():
    return theory.fit_discriminator(theory.P_DATA_1D, theory.P_G_FIXED, seed=SEED)


@pytest.fixture(scope="module")
def gan_1d():
    gan = theory.ToyGAN(theory.P_DATA_1D, 1, theory.GAN_1D_RECIPE, seed=SEED)
    start = gan.frozen_generator()
    history = theory.track_1d_gan(gan)
    return gan, start, history


@pytest.fixture(scope="module")
def ring_runs():
    return {
        "plain": theory.train_ring_gan(theory.COLLAPSE_RECIPE, seed=SEED),
        "minibatch_std": theory.train_ring_gan(theory.MINIBATCH_STD_RECIPE, seed=SEED),
    }


# --- distributions ----------------------------------------------------------------------------------------


def test_mixture_samples_follow_its_density():
    p = theory.P_DATA_1D
    x = theory.held_out_sample(p, 200_000, seed=3).numpy()[:, 0]
    w, m, s = (np.array(v) for v in (p.weights, p.means, p.stds))
    mean = (w * m).sum()
    std = math.sqrt((w * (s**2 + m**2)).sum() - mean**2)
    assert x.mean() == pytest.approx(mean, abs=0.01)
    assert x.std() == pytest.approx(std, abs=0.01)
    assert p.pdf(theory.GRID_1D).sum() * 0.01 == pytest.approx(1.0, abs=1e-6)  # the grid's step is 0.01
    # the share of points left of the dip at -0.75 is the first component's weight (its tail past the dip is tiny)
    assert (x < -0.75).mean() == pytest.approx(0.4, abs=0.01)


def test_ring_samples_sit_on_their_centres():
    points = theory.held_out_sample(theory.RING, 20_000).numpy()
    distance = np.linalg.norm(points[:, None] - theory.RING.centres[None], axis=2)
    assert np.bincount(distance.argmin(1), minlength=8) / len(points) == pytest.approx(np.full(8, 1 / 8), abs=0.01)
    assert distance.min(1).mean() == pytest.approx(theory.RING.std * math.sqrt(math.pi / 2), rel=0.03)  # Rayleigh


# --- part 1: D* -------------------------------------------------------------------------------------------


def test_optimal_discriminator_is_the_pointwise_maximiser():
    grid = theory.GRID_1D
    p_data, p_g = theory.P_DATA_1D.pdf(grid), theory.P_G_FIXED.pdf(grid)
    d_star = theory.optimal_discriminator(grid, theory.P_DATA_1D, theory.P_G_FIXED)
    best = theory.value_on_grid(d_star, p_data, p_g)
    for other in (np.full_like(grid, 0.5), np.clip(d_star + 0.05, 0, 1), np.clip(d_star - 0.05, 0, 1), d_star**2):
        assert theory.value_on_grid(other, p_data, p_g) < best - 1e-4
    same = theory.optimal_discriminator(grid, theory.P_DATA_1D, theory.P_DATA_1D)
    assert np.allclose(same, 0.5)


def test_trained_discriminator_matches_d_star(d_fit):
    error = theory.discriminator_error(d_fit.discriminator, theory.P_DATA_1D, theory.P_G_FIXED)
    assert error["mean_abs"] < 0.05, error
    assert error["max_abs"] < 0.1, error
    assert error["region_low"] < -3 and error["region_high"] > 3  # the region covers both bumps and p_g's bulk


# --- part 2: -log 4 and the JSD ----------------------------------------------------------------------------


def test_c_of_g_is_minus_log_4_plus_twice_the_jsd_on_a_grid(d_fit):
    grid = theory.GRID_1D
    p_data, p_g = theory.P_DATA_1D.pdf(grid), theory.P_G_FIXED.pdf(grid)
    c = theory.value_on_grid(theory.optimal_discriminator(grid, theory.P_DATA_1D, theory.P_G_FIXED), p_data, p_g)
    jsd = theory.jsd_on_grid(p_data, p_g)
    assert 0.02 < jsd < 0.5  # the two distributions really differ, so the identity is not 0 = 0
    assert c == pytest.approx(-theory.LOG_4 + 2 * jsd, abs=1e-3)
    # the trained D nearly reaches C(G) on held-out samples, and (being a D) not above it by more than noise
    v = theory.value_estimate(
        d_fit.discriminator,
        theory.held_out_sample(theory.P_DATA_1D, 100_000, seed=11),
        theory.held_out_sample(theory.P_G_FIXED, 100_000, seed=12),
    )
    assert c - 0.01 < v < c + 0.005


def test_jsd_estimators_know_their_extremes():
    grid = theory.GRID_1D
    p = theory.P_DATA_1D.pdf(grid)
    far_apart = theory.GaussianMixture1D(means=(-3.0, 3.0), stds=(0.3, 0.3))
    left, right = (theory.GaussianMixture1D(means=(m,), stds=(0.3,)).pdf(grid) for m in (-3.0, 3.0))
    assert theory.jsd_on_grid(p, p) == pytest.approx(0.0, abs=1e-12)
    assert theory.jsd_on_grid(left, right) == pytest.approx(math.log(2), abs=1e-4)
    sample = theory.held_out_sample(far_apart, 20_000).numpy()
    assert theory.jsd_histogram(sample, sample) == pytest.approx(0.0, abs=1e-12)
    assert theory.jsd_histogram(sample[sample < 0], sample[sample > 0]) == pytest.approx(math.log(2), abs=1e-9)
    assert 0 < theory.jsd_noise_floor(theory.P_DATA_1D) < 0.002


def test_gan_value_reaches_minus_log_4(gan_1d):
    _, _, history = gan_1d
    v_end = history["value"][-5:].mean()
    assert abs(v_end + theory.LOG_4) < 0.05, v_end
    # ... because G learned the data, not only because D gave up: the JSD fell from ~0.5 to near 0
    assert history["jsd"][0] > 0.3
    assert history["jsd"][-5:].mean() < 0.03
    assert history["c_from_jsd"][-5:].mean() == pytest.approx(-theory.LOG_4, abs=0.06)


def test_fresh_discriminator_against_frozen_g_measures_minus_log_4_plus_2_jsd(gan_1d):
    gan, start, history = gan_1d
    c_start, _ = theory.estimate_c_of_g(theory.P_DATA_1D, start, seed=SEED)
    assert c_start == pytest.approx(history["c_from_jsd"][0], abs=0.02)
    assert c_start > -1.0  # far from the equilibrium: the check above is not -log 4 = -log 4
    # the frozen copy did not follow the training
    assert not np.allclose(start.generator.get_weights()[0], gan.generator.get_weights()[0])


def test_generator_loss_option_picks_the_loss():
    def mean_g_loss(loss):
        gan = theory.ToyGAN(theory.P_DATA_1D, 1, theory.GANRecipe(generator_loss=loss), seed=2)
        return gan.train(50)["g_loss"]

    assert mean_g_loss("minimax") < 0 < mean_g_loss("non_saturating")  # log(1 - D) < 0 < -log D
    with pytest.raises(ValueError, match="unknown generator loss"):
        theory.ToyGAN(theory.P_DATA_1D, 1, theory.GANRecipe(generator_loss="wasserstein"))


def test_same_seed_same_run():
    def short_run():
        gan = theory.ToyGAN(theory.P_DATA_1D, 1, seed=5)
        gan.train(200)
        return gan.sample(gan.noise(100, 0))

    assert np.array_equal(short_run(), short_run())


# --- part 3: modes -----------------------------------------------------------------------------------------


def test_mode_coverage_counts_what_it_should():
    ring = theory.RING
    real = theory.held_out_sample(ring, 10_000).numpy()
    coverage = theory.mode_coverage(real, ring)
    assert coverage.modes_covered == 8 and coverage.high_quality_share > 0.97
    one_mode = ring.centres[[3]] + 0.01 * np.random.default_rng(0).normal(size=(1000, 2))
    coverage = theory.mode_coverage(one_mode, ring)
    assert coverage.modes_covered == 1 and coverage.high_quality_share == 1.0 and coverage.counts[3] == 1000
    blurred = real * 1.1  # every point pushed 0.2 outwards: right modes, poor quality
    coverage = theory.mode_coverage(blurred, ring)
    assert coverage.modes_covered == 0 and coverage.high_quality_share < 0.01
    assert coverage.nearest_share == pytest.approx(np.full(8, 1 / 8), abs=0.02)
    # a mode with fewer than 2 % of the points does not count
    mostly_one = np.concatenate([one_mode, ring.centres[[5]].repeat(15, axis=0)])
    assert theory.mode_coverage(mostly_one, ring).modes_covered == 1


def test_minibatch_std_sees_the_spread_of_the_batch():
    layer = theory.MinibatchStd()
    out = layer(tf.constant([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
    assert out.shape == (3, 3)
    # std of column 0 is sqrt(8/3), of column 1 is 0: the new column holds their mean on every row
    assert np.allclose(out[:, 2], math.sqrt(8 / 3) / 2)


def test_plain_run_collapses_and_minibatch_std_covers_all_eight_modes(ring_runs):
    plain, fixed = ring_runs["plain"].coverage, ring_runs["minibatch_std"].coverage
    assert fixed.modes_covered == 8, fixed
    assert fixed.high_quality_share > 0.4, fixed
    assert plain.modes_covered <= 4, plain
    assert plain.high_quality_share < fixed.high_quality_share / 2


# --- part 4: the two generator losses ---------------------------------------------------------------------


def test_minimax_gradient_vanishes_where_d_rejects_the_fakes():
    at = theory.generator_loss_curves(theory.logit(np.array([0.01])))
    minimax, non_saturating = at["minimax_grad"][0], at["non_saturating_grad"][0]
    assert minimax == pytest.approx(-0.01, rel=1e-6)
    assert non_saturating == pytest.approx(-0.99, rel=1e-6)
    assert abs(minimax) < abs(non_saturating) / 50


def test_loss_curves_agree_with_the_kit_losses_and_the_formulas():
    logits = np.linspace(-8, 8, 33)
    curves = theory.generator_loss_curves(logits)
    d = 1 / (1 + np.exp(-logits))
    assert curves["minimax_grad"] == pytest.approx(-d, abs=1e-9)
    assert curves["non_saturating_grad"] == pytest.approx(d - 1, abs=1e-9)
    column = logits.astype("float32")[:, None]
    # gan_lib.losses returns batch means; the curves are per logit
    assert float(losses.minimax_generator_loss(column)) == pytest.approx(curves["minimax"].mean(), rel=1e-5)
    assert float(losses.generator_loss(column)) == pytest.approx(curves["non_saturating"].mean(), rel=1e-5)
