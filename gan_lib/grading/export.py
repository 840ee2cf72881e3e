"""Runs inside the student's kernel, after the notebook's cells: call the builders, save what they return.

This is the only grading code that shares a process with student code, and it decides nothing:
it writes ``/scratch/.gan-lib-grade/{generator,discriminator}.keras`` (the models the builders
return, untrained, in Keras' own format) and ``builders.json`` (which builder was called, and
why a model is missing). The grader copies these out without following links, and a separate
process, which never ran student code, loads the models in safe mode and scores them. Whatever
student code does to this module can change only these files, that is, only what the student's
own builders could have returned anyway.

Only the standard library is imported: a notebook whose builders are stubs never loads Keras.
"""

from __future__ import annotations

import inspect
import json
import os
import sys

EXPORT_DIR = ".gan-lib-grade"
ROLES = ("generator", "discriminator")
# Arguments a builder may require, and the value the assignment gives them.
_KNOWN_ARGUMENTS = {"latent_dim": 100, "noise_dim": 100, "z_dim": 100, "num_classes": 10, "n_classes": 10}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call(builder, name: str):
    """Call ``builder`` with no arguments, or with the assignment's values for the ones it requires."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return builder()
    required = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = [arg for arg in required if arg not in _KNOWN_ARGUMENTS]
    if unknown:
        raise TypeError(
            f"{name}() requires the argument(s) {', '.join(unknown)}, which the grader cannot know. "
            "Hint: give every argument a default value."
        )
    return builder(**{arg: _KNOWN_ARGUMENTS[arg] for arg in required})


def build_one(ns: dict, names: tuple[str, ...]) -> tuple[object | None, str, str]:
    """(model or None, the builder's name, why there is no model) for the first of ``names`` defined in ``ns``."""
    name = next((n for n in names if n in ns), names[0])
    builder = ns.get(name)
    accepted = " or ".join(names)
    if builder is None:
        return (
            None,
            name,
            (
                f"{accepted} is not defined: the cell defining it did not run (see the errors above) or the function "
                f"was renamed. Hint: keep the name {names[0]} and check that Kernel > Restart & Run All runs without "
                "errors."
            ),
        )
    if not callable(builder):
        return None, name, f"{name} is a {type(builder).__name__}, not a function. Hint: define it with def {name}():."
    try:
        model = _call(builder, name)
    except NotImplementedError:
        return (
            None,
            name,
            (
                f"{name}() still raises NotImplementedError: the template's stub is still there. "
                "Hint: replace the lines marked YOUR CODE HERE with your network and return it."
            ),
        )
    except (Exception, SystemExit) as exc:  # the student's code: anything can happen
        return (
            None,
            name,
            (
                f"{name}() raised {type(exc).__name__}: {_one_line(exc)}. "
                f"Hint: call {name}() in a fresh kernel to see the full traceback."
            ),
        )
    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, keras.Model):
        return (
            None,
            name,
            (
                f"{name}() returned {type(model).__name__}, not a keras.Model. "
                "Hint: end the function with `return model` (a keras.Sequential or keras.Model)."
            ),
        )
    return model, name, ""


def export_builders(ns: dict, builder_names: dict[str, list[str]], scratch: str) -> None:
    """Call each role's builder from the notebook namespace ``ns`` and save its model under ``scratch``."""
    folder = os.path.join(scratch, EXPORT_DIR)
    os.makedirs(folder, exist_ok=True)
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.utils.set_random_seed(0)
    summary: dict[str, dict[str, str]] = {}
    for role in ROLES:
        model, name, why = build_one(ns, tuple(builder_names[role]))
        entry = {"builder": name, "why": why}
        if model is not None:
            try:
                model.save(os.path.join(folder, f"{role}.keras"))
            except Exception as exc:  # e.g. a layer Keras cannot serialise
                entry["why"] = (
                    f"the model {name}() returned could not be saved in Keras' format ({type(exc).__name__}: "
                    f"{_one_line(exc)}), so the grader cannot check it. A TA should look at it. Hint: build it from "
                    "keras.layers only (no Lambda, no custom classes)."
                )
                entry["review"] = "1"
        summary[role] = entry
    with open(os.path.join(folder, "builders.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle)
