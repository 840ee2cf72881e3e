"""The judge: ``python -m gan_lib.grading.judge IN_DIR OUT_DIR``, the process that scores a submission.

It has never run student code and never will: it reads ``IN_DIR/job.json`` (written by the grader)
and the ``.keras`` files the grader copied out of the kernel's scratch folder, loads them with
Keras' ``safe_mode=True`` (no Lambda bytecode, no arbitrary classes), runs the rubric checks
(:mod:`gan_lib.grading.checks`), makes the progress GIF from the student's networks, and writes
``OUT_DIR/verdict.json`` (and ``OUT_DIR/progress.gif``). The grader runs it in its own bubblewrap
sandbox too, since a model file is hostile input to Keras and HDF5.

A model that cannot be loaded safely gets items that say so and a request for a TA's review,
never a crash and never a silent zero.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import keras

from gan_lib.grading import checks
from gan_lib.grading.rubric import (
    ASSIGNMENTS,
    DISCRIMINATOR_ITEMS,
    GENERATOR_ITEMS,
    GIF_ITEM_ID,
    Assignment,
)
from gan_lib.grading.sandbox import apply_limits

Check = checks.Check


def load_safely(path: Path, builder: str) -> tuple[keras.Model | None, bool, str]:
    """(model, False, ""), or (None, whether a TA should look at it, why not)."""
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # the file is hostile input: every failure is a verdict
        text = checks.exc_text(exc, 160)
        if "Lambda" in text or "safe_mode" in text:
            what = "it holds a Lambda layer or other Python code, which safe mode refuses to run"
        elif "custom" in text.lower() or "Could not locate" in text or "subclass" in text.lower():
            what = "it is built from a class of your own (a subclassed model or a custom layer), which the grader "
            what += "cannot rebuild without running your code"
        else:
            what = "Keras could not read it back"
        return (
            None,
            True,
            (
                f"the model {builder}() returns could not be loaded in Keras' safe mode: {what} ({text}). The grader only "
                "scores models it can load without running student code, so a TA should look at it. Hint: build the "
                "network from keras.layers only, with keras.Sequential or the functional API."
            ),
        )
    try:
        known = isinstance(model, keras.Model) and bool(model.inputs)
    except (AttributeError, ValueError):  # an unbuilt model has no inputs yet
        known = False
    if not known:
        return (
            None,
            False,
            (
                f"{builder}() returns a model with no known input shape, so it cannot be checked. Hint: start it with "
                "keras.Input(shape=...) (Sequential) or build it with the functional API."
            ),
        )
    return model, False, ""


def judge_models(
    assignment: Assignment,
    generator: keras.Model | None,
    discriminator: keras.Model | None,
    missing: dict[str, str],
) -> dict[str, Check]:
    """Every rubric item except the GIF: {item id: (passed, reason)}.

    ``missing[role]`` says why that role has no model (its items fail with that reason).
    """
    items: dict[str, Check] = {}
    kind = assignment.kind
    for role, ids in (("generator", GENERATOR_ITEMS[kind]), ("discriminator", DISCRIMINATOR_ITEMS[kind])):
        if role in missing:
            for item_id in ids:
                items.setdefault(item_id, (False, missing[role]))
    if kind == "cifar10":
        if generator is not None:
            items["generator.latent_input"] = guard(checks.check_latent_input, generator)
            items["generator.output_shape"] = guard(checks.check_generator_output, generator, assignment.image_shape)
            items["generator.uses_noise"] = guard(checks.check_uses_noise, generator)
            items["generator.tanh_output"] = guard(checks.check_tanh_output, generator)
        if discriminator is not None:
            items["discriminator.input_shape"] = guard(
                checks.check_discriminator_input, discriminator, assignment.image_shape
            )
            batch = checks.real_batch(assignment.dataset, 4)[0] if items["discriminator.input_shape"][0] else None
            items["discriminator.one_logit"] = guard(checks.check_one_logit, discriminator, batch)
            items["discriminator.no_sigmoid"] = guard(checks.check_no_sigmoid, discriminator)
        if generator is not None or discriminator is not None:
            try:
                g_trains, d_trains = checks.trains_checks(assignment, generator, discriminator)
            except Exception as exc:
                g_trains = d_trains = (False, f"the training check could not run: {checks.exc_text(exc)}")
            if generator is not None:
                items["generator.trains"] = g_trains
            if discriminator is not None:
                items["discriminator.trains"] = d_trains
        return items
    if generator is not None:
        items["cgan.generator_inputs"] = guard(checks.check_cgan_generator, generator)
        items["cgan.label_columns"] = guard(checks.check_label_columns, generator)
    if discriminator is not None:
        items["cgan.discriminator_inputs"] = guard(checks.check_cgan_discriminator, discriminator)
    if generator is not None and discriminator is not None:
        order = checks.cgan_input_order(generator, "noise") or checks.cgan_input_order(discriminator, "image")
        if order:
            items["cgan.trains"] = (False, "not trained: " + order)
        else:
            items["cgan.trains"] = guard(checks.cgan_trains, assignment, generator, discriminator)
    return items


def guard(check, *args) -> Check:
    """Run one check; an exception in it is a failed item that says what happened."""
    try:
        return check(*args)
    except Exception as exc:
        return False, (
            f"the check could not run on your model: {checks.exc_text(exc)}. Hint: call the builder yourself and run "
            "the model on a batch to see the error."
        )


def judge(in_dir: Path, out_dir: Path) -> dict:
    """Load the models named in ``in_dir/job.json`` and score them: the verdict (also written to out_dir)."""
    job = json.loads((in_dir / "job.json").read_text(encoding="utf-8"))
    assignment = ASSIGNMENTS[job["kind"]]
    apply_limits(job.get("memory_bytes"), job.get("cpu_seconds"), job.get("file_bytes"))
    keras.utils.set_random_seed(0)
    missing: dict[str, str] = dict(job.get("missing", {}))
    review: list[str] = list(job.get("review", []))
    notes: list[str] = []
    loaded: dict[str, keras.Model | None] = {"generator": None, "discriminator": None}
    for role in ("generator", "discriminator"):
        if role in missing:
            continue
        builder = job["builders"][role]
        model, for_ta, why = load_safely(in_dir / f"{role}.keras", builder)
        if model is None:
            missing[role] = why
            if for_ta:
                review.append(f"{builder}(): its model could not be loaded in safe mode")
            continue
        kit = checks.kit_network(model, role, assignment)
        if kit is not None and kit[0]:
            missing[role] = (
                f"{builder}() returns the kit's own {role}, not one you built: {kit[1]}. Builder points are for "
                "networks you write yourself, so a TA will look at it. Hint: write the layers yourself."
            )
            review.append(f"{builder}(): the kit's own {role} ({kit[1]})")
            continue
        if kit is not None:
            review.append(f"{builder}(): {kit[1]}; points were kept, a TA may check")
        loaded[role] = model
    items = judge_models(assignment, loaded["generator"], loaded["discriminator"], missing)
    if loaded["generator"] is not None and loaded["discriminator"] is not None:
        fresh = {
            role: keras.saving.load_model(in_dir / f"{role}.keras", compile=False, safe_mode=True)
            for role in ("generator", "discriminator")
        }
        items[GIF_ITEM_ID] = guard(
            checks.make_progress_gif, assignment, fresh["generator"], fresh["discriminator"], out_dir / "progress.gif"
        )
    else:
        lacking = [role for role in ("generator", "discriminator") if loaded[role] is None]
        items[GIF_ITEM_ID] = (
            False,
            f"not made: the grader makes the GIF by training your own generator and discriminator, and there is no "
            f"usable {' or '.join(lacking)} (see the items above). Hint: fix those items first.",
        )
    verdict = {
        "items": {key: [bool(ok), str(reason)] for key, (ok, reason) in items.items()},
        "review": review,
        "notes": notes,
    }
    (out_dir / "verdict.json").write_text(json.dumps(verdict), encoding="utf-8")
    return verdict


def main(argv: list[str]) -> int:
    in_dir, out_dir = Path(argv[0]), Path(argv[1])
    try:
        judge(in_dir, out_dir)
    except BaseException as exc:  # a failure of the grader's own: say so, do not score
        error = {"error": f"{checks.exc_text(exc)}\n{traceback.format_exc()[-3000:]}"}
        (out_dir / "verdict.json").write_text(json.dumps(error), encoding="utf-8")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
