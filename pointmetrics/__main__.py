"""`python -m pointmetrics ...` runs the command line (see pointmetrics/cli/)."""

import sys

from .cli import main

sys.exit(main())
