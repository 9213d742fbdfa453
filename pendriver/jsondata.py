"""The project's records as JSON data: what ``--json`` prints and ``pen decode --json`` writes.

One converter for every record (device info, status, pass summaries, density statistics,
decoded messages), so that a flag word is a list of names and an enum a name wherever it
appears. Light at import: the ``pen`` command's output module loads it for ``--help`` too.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


def jsonable(value: object) -> Any:
    """``value`` as JSON data: dataclasses as objects (a ``raw`` message and private fields
    left out), flag words as lists of names, enums by name, tuples as lists, NaN as null."""
    if isinstance(value, enum.IntFlag):
        from .naming import flag_list

        return flag_list(value)
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "raw" and not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
