"""footfall beyond collection: geo, rollups, the summary page, auth, upkeep, operations, Umami import/export, the CLI.

The collector itself is the top-level module ``collector`` (the ground floor); every module here may import it, and it
imports nothing from here. See the code map in README.md.
"""

from collector import __version__

__all__ = ["__version__"]
