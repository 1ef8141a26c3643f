"""``python -m perfmamba …``: the `perfmamba` command where the package is on the path but not installed."""
import sys

from .cli import main

sys.exit(main())
