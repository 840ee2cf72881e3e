"""The student templates stop at their first "YOUR CODE HERE" on purpose, so nbval must not run them.

They are tested by tests/test_templates.py instead (up to date, and stopping with a clear NotImplementedError).
"""

collect_ignore_glob = ["*.ipynb"]
