"""Values that ``pen --help`` shows and the library uses, in a module that imports nothing.

The command line builds its parser before it knows which command runs; a default read from
the BLE transport would load bleak and the protocol's schema for ``pen --help`` alone.
"""

from __future__ import annotations

DEFAULT_SCAN_TIMEOUT_S = 5.0
"""How long a BLE scan listens for pens' advertisements."""

SIMULATOR_URL = "sim://"
"""The built-in simulated pen, used when no ``--port`` is given."""
