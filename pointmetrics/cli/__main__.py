"""`python -m pointmetrics.cli ...`, the same as `pointmetrics ...`."""

import sys

from . import main

sys.exit(main())
