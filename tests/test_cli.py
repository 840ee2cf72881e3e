"""The command line, run as a user runs it: real subprocesses on real (sample) data."""

import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def gan_lib(*args, env=ENV):
    return subprocess.run([sys.executable, "-m", "gan_lib.cli", *args], capture_output=True, text=True, env=env)


def test_train_resume_and_sample_cgan(tmp_path, fashion_sample):
    out = tmp_path / "run"
    args = ["train", "fashion-cgan", "--limit", "256", "--batch-size", "64", "--out", str(out), "--quiet"]
    first = gan_lib(*args, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    second = gan_lib(*args, "--epochs", "2")
    assert second.returncode == 0, second.stderr
    assert "Resuming from" in second.stderr and "(epoch 1)" in second.stderr
    import json

    from gan_lib.specs import get_spec

    assert json.loads((out / "config.json").read_text())["recipe"] == get_spec("fashion-cgan").recipe  # the model's own
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]

    result = gan_lib("sample", str(out), "--n", "25", "--out", str(tmp_path / "s.npz"))
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s.npz") as f:
        x, labels = f["x"], f["labels"]
    assert x.shape == (25, 28, 28, 1) and x.dtype == np.float32
    assert -1 <= x.min() and x.max() <= 1
    assert labels.tolist() == [i % 10 for i in range(25)]


def test_clear_errors_exit_2(tmp_path):
    result = gan_lib("sample", str(tmp_path), "--n", "4", "--out", str(tmp_path / "x.npz"))
    assert result.returncode == 2 and "not a run folder" in result.stderr
    result = gan_lib("train", "mnist", "--limit", "10", "--batch-size", "64", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "larger than the dataset" in result.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()
    result = gan_lib("train", "svhn")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_evaluate_writes_metrics_and_keeps_other_keys(tmp_path):
    import json

    out = tmp_path / "run"
    result = gan_lib("train", "mnist", "--limit", "256", "--batch-size", "64", "--epochs", "1", "--out", str(out),
                     "--quiet", "--metrics-every", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (out / "metrics.json").write_text(json.dumps({"command": "gan-lib train mnist ...", "seconds": 12.5}))
    result = gan_lib("evaluate", str(out), "--n", "300")
    assert result.returncode == 0, result.stderr
    assert "FCD" in result.stdout and "real-data floor" in result.stdout
    report = json.loads((out / "metrics.json").read_text())
    assert report["command"] == "gan-lib train mnist ..." and report["seconds"] == 12.5  # kept
    assert report["epoch"] == 1 and report["metrics"]["n"] == 300
    assert report["metrics"]["fcd"] > 0 and 1 <= report["metrics"]["score"] <= 10
    assert report["real_floor"]["fcd"] < report["metrics"]["fcd"]  # one epoch on 256 images is far from real
    assert "300 generated images" in report["protocol"]

    # --raw: the training generator itself from the checkpoint, beside (not instead of) the EMA sampler's figures.
    result = gan_lib("evaluate", str(out), "--n", "300", "--raw")
    assert result.returncode == 0, result.stderr
    assert "the training generator itself" in result.stdout
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["fcd"] > 0 and report["metrics_raw"]["fcd"] > 0
    assert report["metrics_raw"]["fcd"] != report["metrics"]["fcd"]  # the default recipe samples from an EMA copy

    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "config.json").write_text(json.dumps({"model": "faces"}))
    result = gan_lib("evaluate", str(tmp_path / "faces"))
    assert result.returncode == 2 and "no metric classifier for faces" in result.stderr


def test_train_under_a_mirrored_strategy_records_it(tmp_path):
    import json

    out = tmp_path / "run"
    result = gan_lib("train", "mnist", "--limit", "128", "--batch-size", "64", "--epochs", "1", "--out", str(out),
                     "--quiet", "--metrics-every", "0", "--strategy", "mirrored")  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "mirrored" and config["replicas"] >= 1
    assert (out / "generator.keras").exists() and (out / "grids" / "epoch_0001.png").exists()


def test_published_reference_folder_is_a_lean_run_that_sample_and_evaluate_accept(tmp_path):
    import json

    run = tmp_path / "run"
    result = gan_lib("train", "mnist", "--limit", "256", "--batch-size", "64", "--epochs", "1", "--out", str(run),
                     "--quiet", "--metrics-every", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "publish_reference.py")
    publish = [sys.executable, script, str(run), "mnist", "--dest", str(tmp_path / "reference")]
    refused = subprocess.run(publish, capture_output=True, text=True, env=ENV)
    assert refused.returncode != 0 and "gan-lib evaluate" in refused.stderr  # metrics first
    assert gan_lib("evaluate", str(run), "--n", "200").returncode == 0
    published = subprocess.run(publish, capture_output=True, text=True, env=ENV)
    assert published.returncode == 0, published.stderr
    ref = tmp_path / "reference" / "mnist"
    assert not (ref / "checkpoints").exists() and not (ref / "grids").exists()
    assert {"progress.gif", "losses.png", "final_grid.png", "generator.keras", "metrics.json"} <= {
        p.name for p in ref.iterdir()
    }
    report = json.loads((ref / "metrics.json").read_text())
    assert report["command"].startswith("gan-lib train mnist --epochs 1 ") and report["train_seconds"] > 0
    assert report["machine"] and report["metrics"]["n"] == 200
    assert gan_lib("sample", str(ref), "--n", "4", "--out", str(tmp_path / "s.npz")).returncode == 0
    result = gan_lib("evaluate", str(ref), "--n", "200")
    assert result.returncode == 0, result.stderr
    assert json.loads((ref / "metrics.json").read_text())["command"] == report["command"]  # kept
    result = gan_lib("evaluate", str(ref), "--raw")  # a published reference keeps no checkpoint to restore
    assert result.returncode == 2 and "no checkpoint" in result.stderr


def test_compact_publish_rounds_the_weights_shrinks_the_file_and_measures_the_shipped_generator(tmp_path):
    import json
    import zipfile

    import keras

    run = tmp_path / "run"
    result = gan_lib("train", "mnist", "--limit", "256", "--batch-size", "64", "--epochs", "1", "--out", str(run),
                     "--quiet", "--metrics-every", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert gan_lib("evaluate", str(run), "--n", "300").returncode == 0
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "publish_reference.py")
    publish = [sys.executable, script, str(run), "mnist", "--dest", str(tmp_path / "ref"), "--compact"]
    run_report = json.loads((run / "metrics.json").read_text())
    measured_on = run_report["metrics"]["reference"]
    run_report["metrics"]["reference"] = "mnist test split (123 images)"  # measured on other data than is here
    (run / "metrics.json").write_text(json.dumps(run_report))
    refused = subprocess.run(publish, capture_output=True, text=True, env=ENV)
    assert refused.returncode != 0 and "GAN_LIB_DATA_DIR" in refused.stderr and not (tmp_path / "ref").exists()
    run_report["metrics"]["reference"] = measured_on
    (run / "metrics.json").write_text(json.dumps(run_report))
    published = subprocess.run(publish, capture_output=True, text=True, env=ENV)
    assert published.returncode == 0, published.stderr
    shipped = tmp_path / "ref" / "mnist" / "generator.keras"
    assert shipped.stat().st_size < 0.7 * (run / "generator.keras").stat().st_size
    with zipfile.ZipFile(shipped) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    original = keras.saving.load_model(run / "generator.keras", compile=False)
    compacted = keras.saving.load_model(shipped, compile=False)
    for before, after in zip(original.weights, compacted.weights, strict=True):
        after = np.asarray(after)
        assert after.dtype == np.float32 and not (after.view(np.uint32) & 0xFFFF).any()  # bfloat16 precision
        np.testing.assert_allclose(after, np.asarray(before), rtol=2**-8, atol=1e-30)
    report = json.loads((tmp_path / "ref" / "mnist" / "metrics.json").read_text())
    assert report["metrics_full_precision"] == run_report["metrics"] and report["metrics"]["n"] == 300
    last = json.loads((run / "history.json").read_text())[-1]
    assert report["shipped_check"]["n"] == last["metrics_n"] and "bfloat16" in report["weights"]
    assert np.isfinite(report["metrics"]["fcd"]) and np.isfinite(report["shipped_check"]["score"])


def tiny_mnist_run(out) -> list[str]:
    """``gan-lib train mnist`` on 128 images, two steps per epoch, no metrics: add --epochs and the rest."""
    return ["train", "mnist", "--limit", "128", "--batch-size", "64", "--out", str(out), "--quiet",
            "--metrics-every", "0"]  # fmt: skip


def checkpoint_files(out) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def assert_refused_untouched(result, message: str, out, files_before: list[str]) -> None:
    """The command failed with a usage error naming ``message``, and left the run's checkpoints as they were."""
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert checkpoint_files(out) == files_before


def test_tutorial_networks_train_resume_and_refuse_a_switch(tmp_path):
    import json

    import keras

    out = tmp_path / "run"
    args = tiny_mnist_run(out)
    first = gan_lib(*args, "--epochs", "1", "--nets", "tutorial")
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "config.json").read_text())["nets"] == "tutorial"
    sampler = keras.saving.load_model(out / "generator.keras", compile=False)
    kernels = {layer.kernel_size for layer in sampler.layers if isinstance(layer, keras.layers.Conv2DTranspose)}
    assert kernels == {(5, 5)}  # the tutorial's generator, not the default's 4×4 kernels
    before = checkpoint_files(out)
    switched = gan_lib(*args, "--epochs", "2")  # default networks into a folder of tutorial-network checkpoints
    assert_refused_untouched(switched, "--nets tutorial", out, before)
    resumed = gan_lib(*args, "--epochs", "2", "--nets", "tutorial")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr and json.loads((out / "config.json").read_text())["nets"] == "tutorial"


def test_reference_command_names_non_default_networks(load_script):
    publish = load_script("publish_reference")
    config = {"model": "mnist", "epochs": 50, "recipe": "dcgan", "seed": 0, "batch_size": 256, "precision": "fp32"}
    assert "--nets" not in publish.reproduce_command(config)  # runs from before the option: the default networks
    assert "--nets" not in publish.reproduce_command({**config, "nets": "default"})
    assert publish.reproduce_command({**config, "nets": "tutorial"}).endswith(" --nets tutorial")


def test_a_folder_from_before_nets_existed_may_resume_with_either(tmp_path):
    import json

    from gan_lib.checks import InputError
    from gan_lib.runs import write_config

    (tmp_path / "config.json").write_text(json.dumps({"model": "mnist", "recipe": "dcgan"}))  # no "nets" key
    write_config(tmp_path, {"model": "mnist", "recipe": "dcgan", "nets": "tutorial"})  # its checkpoints decide
    assert json.loads((tmp_path / "config.json").read_text())["nets"] == "tutorial"
    with pytest.raises(InputError, match="--nets tutorial, not default"):
        write_config(tmp_path, {"model": "mnist", "recipe": "dcgan", "nets": "default"})


def test_a_damaged_config_is_refused_with_a_clear_message_and_left_as_it_was(tmp_path):
    from gan_lib.checks import InputError
    from gan_lib.runs import load_run_config, write_config

    out = tmp_path / "run"
    out.mkdir()
    damaged = '{"model": "mnist", "recipe": '  # cut off, as an editor or a full disk might leave it
    (out / "config.json").write_text(damaged)
    result = gan_lib(*tiny_mnist_run(out), "--epochs", "1")
    assert result.returncode == 2 and "config.json is not valid JSON" in result.stderr, result.stderr
    assert (out / "config.json").read_text() == damaged
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # nothing trained or written
    with pytest.raises(InputError, match="not valid JSON"):
        write_config(out, {"model": "mnist"})
    (out / "config.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="holds a JSON list, not an object"):
        load_run_config(out)


def test_a_run_resumes_with_its_own_recipe_and_refuses_another(tmp_path):
    """After MNIST's default recipe changed, an older folder goes on with the recipe it started with."""
    import json

    out = tmp_path / "run"
    args = tiny_mnist_run(out)
    first = gan_lib(*args, "--epochs", "1", "--recipe", "dcgan-lr6e-4")
    assert first.returncode == 0, first.stderr
    before = checkpoint_files(out)
    switched = gan_lib(*args, "--epochs", "2", "--recipe", "dcgan")
    assert_refused_untouched(switched, "--recipe dcgan-lr6e-4, not dcgan", out, before)
    resumed = gan_lib(*args, "--epochs", "2")  # no --recipe: the folder's, not MNIST's default (with its code)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr
    assert json.loads((out / "config.json").read_text())["recipe"] == "dcgan-lr6e-4"
    assert json.loads((out / "generator.json").read_text()) == {"epoch": 2, "recipe": "dcgan-lr6e-4"}


def test_large_networks_train_mnist_and_refuse_other_models(tmp_path):
    import json

    import keras

    out = tmp_path / "run"
    args = ["--limit", "128", "--batch-size", "64", "--quiet", "--metrics-every", "0", "--epochs", "1"]
    result = gan_lib("train", "mnist", "--nets", "large", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["nets"] == "large"
    sampler = keras.saving.load_model(out / "generator.keras", compile=False)
    assert sampler.get_layer("project").units == 7 * 7 * 512

    refused = gan_lib("train", "cifar10", "--nets", "large", "--out", str(tmp_path / "cifar"), *args)
    assert refused.returncode == 2 and "has no large networks" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "cifar").exists()


def test_readme_synopsis_names_every_option_of_the_parser_and_no_other():
    """The README's command-line synopsis and `gan-lib CMD --help` agree (grade's options are in docs/grading.md)."""
    import argparse
    import re
    from pathlib import Path

    from gan_lib.cli import build_parser

    root = Path(__file__).resolve().parent.parent
    block = (root / "README.md").read_text().split("## The command line", 1)[1].split("```bash", 1)[1].split("```")[0]
    documented, command = {}, None
    for line in block.splitlines():
        named = re.match(r"gan-lib ([a-z-]+)", line.strip())
        command = named.group(1) if named else command
        documented.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", line))
    documented["grade"] |= set(re.findall(r"`(--[a-z][a-z-]*)", (root / "docs" / "grading.md").read_text()))
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in subparsers.choices.items():
        options = {o for action in parser._actions for o in action.option_strings if o.startswith("--")} - {"--help"}
        assert documented.get(name, set()) == options, name


def test_ema_decays_script_keeps_extra_emas_that_match_the_recipes_own(tmp_path):
    """scripts/ema_decays.py: an extra EMA at the recipe's own decay ends with the sampler's weights; a faster one does not
    (a smoke run has 8 steps, all in the warm-up but for a decay under it)."""
    import json
    from pathlib import Path

    import keras

    script = Path(__file__).resolve().parent.parent / "scripts" / "ema_decays.py"
    out = tmp_path / "run"
    args = [sys.executable, str(script), "--recipe", "dcgan", "--extra", "0.999:10", "0.3:10"]
    args += ["--epochs", "1", "--at", "1"]
    result = subprocess.run(
        [*args, "--out", str(out)], capture_output=True, text=True, env={**ENV, "GAN_LIB_SMOKE": "1"}
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "extra_ema.json").read_text())
    assert [r["epoch"] for r in rows] == [1] and {"0.999:10", "0.3:10"} <= set(rows[0])
    own = keras.saving.load_model(out / "generator.keras", compile=False)
    same = keras.saving.load_model(out / "extra_ema_0.999_w10.keras", compile=False)
    faster = keras.saving.load_model(out / "extra_ema_0.3_w10.keras", compile=False)
    for a, b in zip(own.trainable_weights, same.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(own.trainable_weights, faster.trainable_weights))
