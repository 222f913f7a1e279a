"""``python -m footfall``: the same as the ``footfall`` command."""

import sys

from footfall.cli import main

sys.exit(main())
