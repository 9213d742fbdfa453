"""``python -m pendriver.cli``: the same as ``pen``."""

from . import main

raise SystemExit(main())
