"""The reference runs shipped in gan_lib/assets/reference/: lean, loadable, and reproducing their own figures."""

import json

import numpy as np
import pytest

from gan_lib import data, metrics
from gan_lib.runs import REFERENCE_DIR, load_generator, sample_run
from gan_lib.specs import get_spec

RUNS = sorted(p for p in REFERENCE_DIR.iterdir() if p.is_dir()) if REFERENCE_DIR.exists() else []


def test_generators_fit_the_30_mb_budget():
    total = sum((run / "generator.keras").stat().st_size for run in RUNS)
    assert total <= 30e6, f"{total / 1e6:.1f} MB of reference generators"


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_reference_folder_is_complete_and_samples(run):
    for name in ("config.json", "history.json", "losses.png", "progress.gif", "final_grid.png", "metrics.json"):
        assert (run / name).exists(), name
    assert not (run / "checkpoints").exists() and not (run / "grids").exists()  # lean: no training state
    config = json.loads((run / "config.json").read_text())
    history = json.loads((run / "history.json").read_text())
    report = json.loads((run / "metrics.json").read_text())
    spec = get_spec(config["model"])
    assert run.name == config["model"] and not config["data_is_sample"]
    assert report["epoch"] == history[-1]["epoch"] == config["epochs"]
    assert report["command"].startswith(f"gan-lib train {spec.name} ") and report["train_seconds"] > 0
    assert report["metrics"]["n"] == metrics.EVAL_N and report["machine"]
    x, _ = sample_run(run, 8)
    assert x.shape == (8, *spec.image_shape) and -1 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_shipped_generator_reproduces_its_last_recorded_metrics(run):
    """The last epoch's FCD and score in history.json came from this very generator (same N, seed, test split).

    A generator published with ``--compact`` (weights rounded to bfloat16 precision) was measured again at
    that N when it was published; those figures, ``shipped_check`` in metrics.json, are the ones it must give.
    """
    config = json.loads((run / "config.json").read_text())
    spec = get_spec(config["model"])
    test_split = data.load_dataset(spec.dataset, allow_sample=True)
    if test_split.is_sample:
        pytest.skip(f"the full {spec.dataset} test split is not here (CI points GAN_LIB_DATA_DIR at it)")
    last = json.loads((run / "history.json").read_text())[-1]
    shipped = json.loads((run / "metrics.json").read_text()).get("shipped_check")
    if shipped is not None:
        assert shipped["n"] == last["metrics_n"]
        last = {**shipped, "metrics_n": shipped["n"]}
    result = metrics.evaluate_generator(
        load_generator(run), spec.dataset, test_split.x_test, n=last["metrics_n"], num_classes=spec.num_classes
    )
    assert result["fcd"] == pytest.approx(last["fcd"], rel=1e-3)
    assert result["score"] == pytest.approx(last["score"], rel=1e-3)
    if "cond_acc" in last:
        assert result["cond_acc"] == pytest.approx(last["cond_acc"], abs=2e-3)
    assert np.isfinite(result["fcd"])
