"""``python -m gan_lib.grading``: the same command as ``gan-lib grade``."""

import sys

from gan_lib.grading.cli import main

sys.exit(main())
