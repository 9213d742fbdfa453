"""The clinic logbook: plain records on a SHA-256 hash chain in SQLite or PostgreSQL.

It knows nothing of transports: a pass runner hands it plain figures (:class:`PassFigures`),
the CLI and the workstation call the same :class:`Logbook` methods. See docs/LOGBOOK.md.

Modules, one job each: :mod:`.records` (the dataclasses), :mod:`.densitymap` (compressed
counts), :mod:`.zones` (default zone profiles), :mod:`.screening` (contraindication items),
:mod:`.rules` (the safety checks, pure), :mod:`.chain` (canonical encoding, hashing, verify,
pure), :mod:`.schema` (tables), :mod:`.engine` (engines and SQLite durability),
:mod:`.migrations` (Alembic), :mod:`.store` (the :class:`Logbook`), :mod:`.errors`.
"""

from __future__ import annotations

from .chain import StoredRecord, VerifyResult, verify
from .densitymap import DensityMap, counts_on, cumulative_peak_per_cm2, sum_maps
from .engine import default_url
from .errors import LogbookError, NotFound, Refused, StorageError
from .records import (
    ENDED_AT_DENSITY_LIMIT,
    ENDED_RECOVERED,
    Answer,
    Calibration,
    Cartridge,
    Client,
    Clinic,
    Correction,
    Course,
    Operator,
    Pass,
    PassFigures,
    PenInfo,
    Record,
    Screening,
    Session,
    SessionEnd,
    ZoneProfile,
)
from .rules import Refusal
from .screening import STANDARD_ITEMS, items_for, screening
from .store import Entry, Logbook, PassHandle, RunningPass
from .zones import DEFAULT_ZONES

__all__ = [
    "DEFAULT_ZONES",
    "ENDED_AT_DENSITY_LIMIT",
    "ENDED_RECOVERED",
    "STANDARD_ITEMS",
    "Answer",
    "Calibration",
    "Cartridge",
    "Client",
    "Clinic",
    "Correction",
    "Course",
    "DensityMap",
    "Entry",
    "Logbook",
    "LogbookError",
    "NotFound",
    "Operator",
    "Pass",
    "PassFigures",
    "PassHandle",
    "PenInfo",
    "Record",
    "Refusal",
    "Refused",
    "RunningPass",
    "Screening",
    "Session",
    "SessionEnd",
    "StorageError",
    "StoredRecord",
    "VerifyResult",
    "ZoneProfile",
    "counts_on",
    "cumulative_peak_per_cm2",
    "default_url",
    "items_for",
    "screening",
    "sum_maps",
    "verify",
]
