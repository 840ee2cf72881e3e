"""These notebooks are test *inputs* for tests/test_grading.py (some loop forever or kill their kernel on
purpose), so pytest must never run them itself, even with --nbval."""

collect_ignore_glob = ["*.ipynb"]
