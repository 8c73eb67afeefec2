"""``python -m agents`` = ``hpo-rl``."""

import sys

from agents.cli import main

sys.exit(main())
