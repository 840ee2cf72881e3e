#!/usr/bin/env bash
# The oldest TensorFlow that pyproject.toml claims, tested: a virtual environment of its own with that
# TensorFlow and the oldest Keras claimed, then a focused subset of the tests: the networks, the losses, the
# train step and an exact resume, the shipped reference runs, and the wheel installed outside the checkout
# (train, sample, evaluate, reference lookup). `make check-oldest-tf` runs it, and .ci/run after `make test`.
# The first run downloads TensorFlow from the package registry (1.7 GB installed).
# Usage: scripts/check_oldest_tf.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

OLDEST_TF=2.18.1
OLDEST_KERAS=3.15.0
VENV=${OLDEST_TF_VENV:-.venv-oldest-tf}
PYTHON=${PYTHON:-python3}

if ! [ -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "tensorflow==$OLDEST_TF" "keras==$OLDEST_KERAS" \
  "matplotlib>=3.8" "imageio>=2.34" "pillow>=10" "pytest>=8" "setuptools>=77"
"$VENV/bin/python" -c "import tensorflow as tf, keras; print('TensorFlow', tf.__version__, '/ Keras', keras.__version__)"

if [ "$#" -eq 0 ]; then
  set -- tests/test_models.py tests/test_losses.py tests/test_reference.py tests/test_wheel.py \
    tests/test_training.py::test_a_few_steps_on_a_fixed_batch_lower_the_discriminator_loss \
    tests/test_training.py::test_resumed_run_continues_like_an_uninterrupted_one
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
