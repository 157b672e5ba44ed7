"""``python -m embedkit`` runs the CLI."""

import sys

from embedkit.cli import main

sys.exit(main())
