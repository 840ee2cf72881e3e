import keras
import numpy as np
import pytest

from gan_lib.models import _upsampling_plan, build_discriminator, build_generator
from gan_lib.specs import MODEL_SPECS, NETS, get_spec


@pytest.mark.parametrize(
    "size,layers,start,strides", [(28, 3, 7, [1, 2, 2]), (32, 3, 4, [2, 2, 2]), (64, 4, 4, [2, 2, 2, 2])]
)
def test_upsampling_plan(size, layers, start, strides):
    assert _upsampling_plan(size, layers) == (start, strides)


def test_mnist_generator_is_the_tutorials():
    g = build_generator(100, (28, 28, 1))
    kinds = [type(layer).__name__ for layer in g.layers]
    assert kinds[:5] == ["InputLayer", "Dense", "BatchNormalization", "LeakyReLU", "Reshape"]
    convs = [layer for layer in g.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(c.filters, c.strides) for c in convs] == [(128, (1, 1)), (64, (2, 2)), (1, (2, 2))]
    assert g.get_layer("project").units == 7 * 7 * 256
    out = g(np.random.default_rng(0).standard_normal((3, 100)).astype("float32"), training=False)
    assert out.shape == (3, 28, 28, 1)
    assert float(np.max(np.abs(out))) <= 1.0


def test_mnist_discriminator_is_the_tutorials_and_returns_logits():
    d = build_discriminator((28, 28, 1))
    convs = [layer for layer in d.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(64, (5, 5), (2, 2)), (128, (5, 5), (2, 2))]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in d.layers) == 2
    assert d.layers[-1].activation.__name__ == "linear"
    assert d.output_shape == (None, 1)


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_mnist_default_networks_follow_the_dcgan_paper():
    spec = get_spec("mnist")
    g, d = spec.build_generator(), spec.build_discriminator()
    g_convs = [layer for layer in g.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(c.filters, c.kernel_size, c.strides) for c in g_convs] == [
        (128, (4, 4), (1, 1)), (64, (4, 4), (2, 2)), (1, (4, 4), (2, 2))
    ]  # fmt: skip
    assert "ReLU" in _kinds(g) and "LeakyReLU" not in _kinds(g)
    d_convs = [layer for layer in d.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in d_convs] == [(64, (4, 4)), (128, (4, 4)), (256, (4, 4))]
    assert _kinds(d).count("BatchNormalization") == 2 and "Dropout" not in _kinds(d)
    assert d.output_shape == (None, 1) and g.output_shape == (None, 28, 28, 1)


def test_tutorial_networks_stay_one_flag_away():
    tutorial = get_spec("mnist").with_nets("tutorial")
    d = tutorial.build_discriminator()
    assert [(c.filters, c.kernel_size) for c in d.layers if isinstance(c, keras.layers.Conv2D)] == [
        (64, (5, 5)), (128, (5, 5))
    ]  # fmt: skip
    assert _kinds(d).count("Dropout") == 2
    assert "LeakyReLU" in _kinds(tutorial.build_generator())
    assert get_spec("mnist").with_nets("default") is get_spec("mnist")
    # MNIST's faster recipe was measured on its default networks only; the tutorial's train with plain dcgan.
    assert get_spec("mnist").recipe == "dcgan-lr6e-4-info" and tutorial.recipe == "dcgan"
    assert set(NETS) == {"default", "tutorial", "large"}
    with pytest.raises(ValueError, match="choose one of: default, tutorial, large"):
        get_spec("mnist").with_nets("paper")


@pytest.mark.parametrize("name", list(MODEL_SPECS))
def test_specs_build_matching_pairs(name):
    spec = MODEL_SPECS[name]
    g, d = spec.build_generator(), spec.build_discriminator()
    noise = np.random.default_rng(1).standard_normal((4, spec.latent_dim)).astype("float32")
    labels = np.array([0, 3, 7, 9], "int32")
    images = np.asarray(g([noise, labels] if spec.conditional else noise, training=False))
    assert images.shape == (4, *spec.image_shape)
    assert -1.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
    logits = d([images, labels] if spec.conditional else images, training=False)
    assert logits.shape == (4, 1)


def test_conditional_networks_use_the_label():
    g = build_generator(16, (28, 28, 1), num_classes=10)
    d = build_discriminator((28, 28, 1), num_classes=10)
    assert [tuple(i.shape) for i in g.inputs] == [(None, 16), (None,)]
    assert [tuple(i.shape) for i in d.inputs] == [(None, 28, 28, 1), (None,)]
    noise = np.zeros((2, 16), "float32") + 0.5
    a = g([noise, np.array([0, 0], "int32")], training=False).numpy()
    b = g([noise, np.array([0, 5], "int32")], training=False).numpy()
    np.testing.assert_allclose(a[0], b[0])
    assert np.abs(a[1] - b[1]).max() > 1e-6  # another label, another image
    # The label plane is an extra channel of D's input.
    concat = d.get_layer("image_and_label")
    assert concat.output.shape == (None, 28, 28, 2)


def test_cifar_generator_outputs_rgb_32():
    g = build_generator(100, (32, 32, 3), hidden_filters=(128, 64))
    assert g.output_shape == (None, 32, 32, 3)


def test_large_networks_are_mnist_only_and_bigger():
    large = get_spec("mnist").with_nets("large")
    g, d = large.build_generator(), large.build_discriminator()
    g_convs = [layer for layer in g.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(c.filters, c.kernel_size, c.strides) for c in g_convs] == [
        (256, (5, 5), (1, 1)), (128, (5, 5), (2, 2)), (1, (5, 5), (2, 2))
    ]  # fmt: skip
    assert g.get_layer("project").units == 7 * 7 * 512
    assert [(c.filters, c.kernel_size) for c in d.layers if isinstance(c, keras.layers.Conv2D)] == [
        (64, (5, 5)), (128, (5, 5)), (256, (5, 5))
    ]  # fmt: skip
    assert g.output_shape == (None, 28, 28, 1) and d.output_shape == (None, 1)
    assert g.count_params() > 3 * get_spec("mnist").build_generator().count_params()
    assert large.recipe == "dcgan"
    for name in set(MODEL_SPECS) - {"mnist"}:
        with pytest.raises(ValueError, match="has no large networks.*--nets default or --nets tutorial"):
            get_spec(name).with_nets("large")
