"""`python -m nasopt`: the command line."""

import sys

from nasopt.cli import main

sys.exit(main())
