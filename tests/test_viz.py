import json

import imageio.v3 as iio
import numpy as np
import pytest

from gan_lib import run_folder, runs, viz


def test_tile_places_image_i_at_row_i_div_cols():
    images = np.stack([np.full((4, 4, 1), v, "float32") for v in np.linspace(-1, 1, 6)])
    tiled = viz.tile_images(images, rows=2, cols=3, pad=1)
    assert tiled.shape == (2 * 5 - 1, 3 * 5 - 1, 1) and tiled.dtype == np.uint8
    assert tiled[0, 0, 0] == 0  # image 0 is -1 -> black
    assert tiled[5, 10, 0] == 255  # image 5 (row 1, col 2) is +1 -> white
    assert tiled[0, 5, 0] == round((np.linspace(-1, 1, 6)[1] + 1) * 127.5)


def test_tile_maps_overshoot_without_wraparound():
    tiled = viz.tile_images(np.array([[[[1.3]]], [[[-1.2]]]], "float32"), 1, 2, pad=0)
    assert tiled.ravel().tolist() == [255, 0]


def test_rgb_grid_and_class_titles_saved(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (20, 8, 8, 3)).astype("float32")
    path = viz.save_grid(images, tmp_path / "g.png", 2, 10, column_titles=[str(i) for i in range(10)])
    picture = iio.imread(path)
    assert picture.ndim == 3 and picture.shape[2] in (3, 4)


def test_grid_needs_enough_images():
    with pytest.raises(ValueError, match="cannot fill"):
        viz.tile_images(np.zeros((3, 4, 4, 1), "float32"), 2, 2)


def test_gif_has_one_frame_per_png(tmp_path):
    frames = []
    for i in range(5):
        images = np.full((4, 6, 6, 1), -1 + i * 0.4, "float32")
        frames.append(viz.save_grid(images, tmp_path / f"epoch_{i:04d}.png", 2, 2))
    gif = viz.make_gif(frames, tmp_path / "progress.gif")
    assert iio.imread(gif, index=None).shape[0] == 5
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_plot_history(tmp_path):
    history = [{"epoch": e, "d_loss": 1.0, "g_loss": 0.8, "d_real_acc": 0.6, "d_fake_acc": 0.5, "seconds": 1}
               for e in (1, 2, 3)]  # fmt: skip
    viz.plot_history(history, tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 1000


def test_plot_history_shows_how_often_the_code_is_guessed():
    history = [{"epoch": e, "d_loss": 1.0, "g_loss": 0.8, "d_real_acc": 0.6, "d_fake_acc": 0.5, "seconds": 1,
                "code_acc": 0.3 * e} for e in (1, 2, 3)]  # fmt: skip
    lines = {line.get_label(): line for line in viz.plot_history(history).axes[1].get_lines()}
    assert list(lines["code guessed"].get_ydata()) == [0.3, 0.6, 0.3 * 3]
    plain = viz.plot_history([{k: v for k, v in h.items() if k != "code_acc"} for h in history])
    assert "code guessed" not in {line.get_label() for line in plain.axes[1].get_lines()}


def _history(epochs, fcd0=100.0, score0=2.0):
    return [{"epoch": e, "d_loss": 1.0, "g_loss": 0.8, "d_real_acc": 0.6, "d_fake_acc": 0.5, "seconds": 1,
             "fcd": fcd0 / e, "score": score0 + e, "metrics_n": 2000} for e in epochs]  # fmt: skip


def test_plot_history_draws_the_reference_only_up_to_this_runs_epoch():
    fig = viz.plot_history(_history([1, 2, 3]), reference=_history(range(1, 31), fcd0=50.0))
    fcd_axis = fig.axes[2]
    lines = {line.get_label(): line for line in fcd_axis.get_lines()}
    assert set(lines) == {"this run", "kit's reference run"}
    assert list(lines["kit's reference run"].get_xdata()) == [1, 2, 3]  # equal epochs only, not all 30
    assert list(lines["kit's reference run"].get_ydata()) == [50.0, 25.0, 50.0 / 3]
    assert list(lines["this run"].get_ydata()) == [100.0, 50.0, 100.0 / 3]


def test_compare_with_reference_overlays_the_shipped_run(capsys):
    from gan_lib.runs import reference_run

    folder = reference_run("cifar10")  # shipped in gan_lib/assets/reference/cifar10
    assert folder is not None and (folder / "progress.gif").exists()
    fig = viz.compare_with_reference(_history([1, 2]), "cifar10")
    out = capsys.readouterr().out
    assert "Reference run" in out and "30 epochs" in out and str(folder / "progress.gif") in out
    ref_line = [line for line in fig.axes[2].get_lines() if line.get_label() == "kit's reference run"][0]
    shipped = json.loads((folder / "history.json").read_text())
    assert list(ref_line.get_ydata()) == [shipped[0]["fcd"], shipped[1]["fcd"]]


def test_compare_with_reference_says_when_none_is_shipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_folder, "REFERENCE_DIR", tmp_path)  # a pip install without the repository's assets/
    assert runs.reference_run("mnist") is None
    assert viz.compare_with_reference(_history([1]), "mnist") is None
    assert "ships no reference run for 'mnist'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown model .mnistt."):
        runs.reference_run("mnistt")


def test_a_run_without_metrics_still_sees_the_references_curves():
    no_metrics = [{k: v for k, v in h.items() if k not in ("fcd", "score")} for h in _history([1])]  # smoke mode
    fig = viz.plot_history(no_metrics, reference=_history(range(1, 31), fcd0=50.0))
    assert len(fig.axes) == 4  # losses, accuracies, then FCD and score from the reference alone
    for axis in fig.axes[2:]:
        (line,) = axis.get_lines()
        assert line.get_label() == "kit's reference run (this run: not measured yet)"
        assert list(line.get_xdata()) == list(range(1, 31))  # its whole run: nothing of this run to match
    assert len(viz.plot_history(no_metrics).axes) == 2  # and without a reference, no empty panels
