"""gan-lib bench --to-quality: the stop rule, the baseline checks, and a real (tiny) race."""

import json

import pytest

from gan_lib.checks import InputError
from gan_lib.cli import main
from gan_lib.lab import time_to_quality as ttq
from gan_lib.specs import get_spec

MNIST_RECIPE = get_spec("mnist").recipe  # the race runs the model's own default recipe


def write_baseline(path, fcd, score, recipe="tutorial", epochs=50):
    history = [{"epoch": e, "d_loss": 1.0, "g_loss": 1.0, "seconds": 1.0} for e in range(1, epochs + 1)]
    history[-1].update({"fcd": fcd, "score": score, "metrics_n": 2000})
    config = {"model": "mnist", "recipe": recipe, "batch_size": 256, "data_is_sample": False, "machine": "test"}
    path.write_text(json.dumps({"config": config, "history": history}))
    return path


def test_reached_needs_both_metrics_at_least_as_good():
    target = {"fcd": 10.0, "score": 8.0}
    assert ttq.reached({"fcd": 10.0, "score": 8.0}, target)
    assert ttq.reached({"fcd": 9.0, "score": 9.0}, target)
    assert not ttq.reached({"fcd": 11.0, "score": 9.0}, target)
    assert not ttq.reached({"fcd": 9.0, "score": 7.9}, target)
    assert not ttq.reached({"d_loss": 1.0}, target)  # an epoch without metrics never counts


def test_bad_baselines_are_refused_with_the_fix(tmp_path):
    with pytest.raises(InputError, match="--recipe tutorial --epochs 50"):
        ttq.load_baseline(tmp_path / "missing.json")
    with pytest.raises(InputError, match="recipe tutorial"):
        ttq.load_baseline(write_baseline(tmp_path / "b.json", 10.0, 8.0, recipe="dcgan"))
    path = write_baseline(tmp_path / "c.json", 10.0, 8.0)
    data = json.loads(path.read_text())
    del data["history"][-1]["fcd"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="--metrics-every"):
        ttq.load_baseline(path)
    assert main(["bench", "mnist", "--to-quality", "--baseline", str(tmp_path / "missing.json")]) == 2


def test_save_baseline_packs_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = json.loads(write_baseline(tmp_path / "b.json", 12.0, 7.0).read_text())
    (run / "config.json").write_text(json.dumps(data["config"]))
    (run / "history.json").write_text(json.dumps(data["history"]))
    saved = ttq.save_baseline(run, tmp_path / "out.json")
    assert ttq.load_baseline(tmp_path / "out.json") == saved
    assert saved["history"][-1]["fcd"] == 12.0


def test_race_stops_at_the_first_epoch_that_matches(tmp_path):
    # An easy target: any generator beats FCD 1e9 and score 1.0, so training must stop after epoch 1 of 3.
    baseline = write_baseline(tmp_path / "easy.json", fcd=1e9, score=1.0)
    result = ttq.time_to_quality(
        "mnist", baseline=baseline, max_epochs=3, limit=512, out=tmp_path / "run", steps=2, repeats=1
    )
    assert result["reached_at_epoch"] == 1
    assert [p["epoch"] for p in result["ours"]] == [1]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1 and "fcd" in history[0]
    assert (tmp_path / "run" / "generator.keras").exists()  # stopped runs are checkpointed
    assert result["tutorial_seconds"] == pytest.approx(50 * result["tutorial_epoch_seconds"], rel=0.01)
    assert result["share"] == pytest.approx(result["our_seconds"] / result["tutorial_seconds"])
    assert "share=" in ttq.format_report(result).splitlines()[-1]


def test_race_gives_up_after_max_epochs(tmp_path):
    baseline = write_baseline(tmp_path / "hard.json", fcd=0.0, score=10.0)  # not even real data reaches it
    result = ttq.time_to_quality(
        "mnist", baseline=baseline, max_epochs=2, limit=512, out=tmp_path / "run", steps=2, repeats=1
    )
    assert result["reached_at_epoch"] is None and result["share"] is None
    assert [p["epoch"] for p in result["ours"]] == [1, 2]
    assert "NOT reached" in ttq.format_report(result)
    ttq.plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def write_run(run, fcds, scores, recipe=MNIST_RECIPE, first_epoch=1, nets="default"):
    run.mkdir()
    config = {"model": "mnist", "recipe": recipe, "nets": nets, "precision": "fp32", "data_is_sample": False, "limit": None,
              "num_train_images": 60000, "machine": "the recording machine"}  # fmt: skip
    history = [{"epoch": first_epoch + i, "d_loss": 1.0, "g_loss": 1.0, "seconds": 100.0, "fcd": f, "score": s,
                "metrics_seconds": 3.0} for i, (f, s) in enumerate(zip(fcds, scores))]  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.json").write_text(json.dumps(history))
    return run


def test_race_from_a_recorded_run_stops_at_its_first_matching_epoch(tmp_path):
    baseline = write_baseline(tmp_path / "b.json", fcd=50.0, score=6.0)
    # Epoch 2 has the score but not the FCD; epoch 3 is the first with both.
    run = write_run(tmp_path / "run", fcds=[90.0, 60.0, 45.0, 30.0], scores=[5.0, 6.5, 6.2, 7.0])
    result = ttq.time_to_quality("mnist", baseline=baseline, from_run=run, steps=2, repeats=1)
    assert result["reached_at_epoch"] == 3
    assert [p["epoch"] for p in result["ours"]] == [1, 2, 3]
    assert result["our_seconds"] == 300.0 and result["metrics_seconds"] == 9.0
    assert result["recorded_run"]["machine"] == "the recording machine"
    assert result["tutorial_epoch_seconds"] > 0  # timed here, now: 234 steps of the tutorial's step
    assert "recorded epochs" in ttq.format_report(result)
    assert json.loads((run / "history.json").read_text())[0]["fcd"] == 90.0  # the recorded run is left as it was


def test_recorded_runs_that_cannot_stand_in_are_refused(tmp_path):
    baseline = write_baseline(tmp_path / "b.json", fcd=50.0, score=6.0)
    tutorial = write_run(tmp_path / "tut", [40.0], [7.0], recipe="tutorial")
    with pytest.raises(InputError, match=f"default recipe '{MNIST_RECIPE}'"):
        ttq.time_to_quality("mnist", baseline=baseline, from_run=tutorial)
    tutorial_nets = write_run(tmp_path / "nets", [40.0], [7.0], nets="tutorial")
    with pytest.raises(InputError, match="default networks"):
        ttq.time_to_quality("mnist", baseline=baseline, from_run=tutorial_nets)
    resumed_only = write_run(tmp_path / "late", [40.0], [7.0], first_epoch=5)
    with pytest.raises(InputError, match="every epoch from 1"):
        ttq.time_to_quality("mnist", baseline=baseline, from_run=resumed_only)
    with pytest.raises(InputError, match="not a run folder"):
        ttq.time_to_quality("mnist", baseline=baseline, from_run=tmp_path / "nothing")
    out = tmp_path / "out"
    assert main(["bench", "mnist", "--to-quality", "--baseline", str(baseline), "--from-run", str(tutorial),
                 "--out", str(out)]) == 2  # fmt: skip
    assert not out.exists()  # nothing written for a refused input
