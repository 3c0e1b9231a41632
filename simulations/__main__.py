"""`python -m simulations`: the lab's command line (simulations/cli.py)."""

import sys

from simulations.cli import main

sys.exit(main())
