"""Non-volatile memory of the simulated pen: what survives a power cut, and how it survives one.

A pen keeps a few things across reboots: its serial number, the committed calibration table,
the ids of cartridges that have run (so a used one is refused when it is fitted again) and
lifetime counters. A real pen keeps them in NOR flash, and the one moment flash can betray it is
a power cut in the middle of a write. This module models that flash, cuts power at any chosen
operation, and stores the image so that a cut at *any* point leaves either the old or the new
image loadable, never a blend and never nothing (MCUboot's simulator tests its swap the same way).

Three layers, each usable on its own:

``NvmImage``
    A frozen dataclass of everything that survives power-off. Change it with the ``with_...``
    helpers or :func:`dataclasses.replace`; the constructor normalises and checks every field
    against what the record format (and the wire) can hold.

``Flash`` (``MemoryFlash``, ``FileFlash``)
    NOR flash with fixed sectors that erase to ``0xFF``, writes that can only clear bits (a
    write over programmed bytes ANDs them) and that may not cross a page, and fault injection:
    ``cut_power_at(n)`` makes the n-th operation from now (1: the next one) do only part of its
    work and raise :class:`PowerCut`; the flash then refuses everything, reads included, until
    ``power_restored()``. Backends only load and store raw bytes, so the NOR semantics and the
    torn operations live in one place.

``NvmStore``
    A/B records, one per sector. ``load()`` returns the newest valid record's image (``None``
    on blank flash, and on flash where no record passes its check); ``save(image)`` erases the
    older (or invalid) slot, writes the new record there page by page with the next
    generation, and leaves the other slot untouched. ``status()`` says what each slot holds,
    for diagnostics such as ``pen-sim``, and whether the memory is ``unreadable`` (it held
    something, and none of it can be trusted), which a caller must not mistake for blank.

Intended use by the firmware::

    store = NvmStore(FileFlash(path))          # or MemoryFlash() in tests
    status = store.status()
    if status.unreadable:                      # not blank: its contents are lost; say so
        report_nvm_corrupt(status.problems())  # the firmware latches FaultFlags.NVM_CORRUPT
    image = status.image or NvmImage(serial_number="SIM-000001")
    image = image.with_used_cartridge("CRT-1").with_added(starts=1)
    store.save(image)                          # may raise PowerCut: the pen just died

A pen whose save raised :class:`PowerCut` is dead: it must boot again (``power_restored()``, a new
``NvmStore`` on the same flash, ``load()``), and it then finds the old image or the new one.

Record layout (one per sector, all integers little-endian)::

    offset  size  field
    0       4     magic b"PNVM"
    4       2     format version (2; format 1 is still read)
    6       2     reserved, written 0, ignored on read
    8       4     generation (u32; the newer of two valid records wins, see below)
    12      4     payload length n
    16      n     payload
    16+n    4     CRC-32 over bytes 0 .. 16+n-1

The CRC is zlib's: width 32, poly 0x04C11DB7, init 0xFFFFFFFF, refin true, refout true,
xorout 0xFFFFFFFF, check value 0xCBF43926 over ``b"123456789"`` (CRC-32/ISO-HDLC). A record is
valid only if the magic, the format version, the length (it must fit the sector) and the CRC
check and the payload decodes exactly. Format 2 is written; a format 1 record (firmware from
before the stroke-rate correction) is read as having none; any other format is invalid.

Generations compare by serial-number arithmetic (RFC 1982): ``a`` is newer than ``b`` when
``(a - b) mod 2**32`` lies in ``1 .. 2**31 - 1``, so the counter wraps harmlessly; the two slots
differ by one in normal operation. Equal (or exactly opposite) generations, which only a hand-made
flash can hold, resolve to slot A.

Payload layout (format 2; format 1 lacks the two i32)::

    u8 n, n bytes      serial number, UTF-8 (n <= 16)
    u16                calibration table version
    u8 k, k x (u16, u16)  calibration points (depth_um, actuator_um), k <= 16
    i32, i32           stroke-rate correction: rate_ppm, rate_offset_mhz (format 2 only)
    u64                total strokes
    u32                total starts
    u64                total run time, ms
    u32                power cycles
    u16 m, m x (u8 n, n bytes)  used cartridge ids, oldest first, m <= 256, n <= 16

The largest image is about 4.4 KiB, so the default sector is 8 KiB (a 4 KiB sector would cap the
cartridge list near 230 ids); :meth:`NvmStore.save` raises ``ValueError`` before touching the flash
when an image does not fit a smaller sector.
"""

from __future__ import annotations

import enum
import errno
import os
import struct
import tempfile
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SECTOR_COUNT",
    "DEFAULT_SECTOR_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CALIBRATION_POINTS",
    "MAX_ID_BYTES",
    "MAX_USED_CARTRIDGES",
    "READABLE_FORMATS",
    "FileFlash",
    "Flash",
    "FlashError",
    "MemoryFlash",
    "NvmImage",
    "NvmStatus",
    "NvmStore",
    "PowerCut",
    "RecordTooLarge",
    "SlotState",
    "SlotStatus",
    "decode_record",
    "encode_record",
    "generation_newer",
]

DEFAULT_SECTOR_SIZE = 8192
DEFAULT_SECTOR_COUNT = 2
DEFAULT_PAGE_SIZE = 256
ERASED = 0xFF

MAGIC = b"PNVM"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MAX_CALIBRATION_POINTS = 16
MAX_ID_BYTES = 16
MAX_USED_CARTRIDGES = 256

_HEADER = struct.Struct("<4sHHII")
_CRC = struct.Struct("<I")
_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
_GENERATION_MOD = 1 << 32


# ===================================================================================== image
def _check_text(what: str, value: str) -> None:
    raw = value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    if len(raw) > MAX_ID_BYTES:
        raise ValueError(f"{what} {value!r} is {len(raw)} UTF-8 bytes; at most {MAX_ID_BYTES}")


def _check_range(what: str, value: int, high: int) -> None:
    if not 0 <= value <= high:
        raise ValueError(f"{what} must be 0..{high}, got {value}")


@dataclass(frozen=True, slots=True)
class NvmImage:
    """Everything a pen keeps across power-off.

    ``used_cartridges`` keeps only the :data:`MAX_USED_CARTRIDGES` most recent ids, oldest
    first: the flash is finite and the list's job is to catch a cartridge fitted again after it
    ran, which happens within a session, not 256 cartridges later (by then it has long been
    discarded, and its expiry date guards it too). The constructor drops duplicates (keeping the
    latest position) and the oldest surplus, so ``dataclasses.replace`` stays safe.

    Sizes follow the wire: strings at most 16 UTF-8 bytes, calibration values u16, at most 16
    points; counters are unsigned (u64 strokes and run time in ms, u32 starts and power cycles).
    """

    serial_number: str
    calibration_version: int = 0
    calibration: tuple[tuple[int, int], ...] = ()
    used_cartridges: tuple[str, ...] = ()
    total_strokes: int = 0
    total_starts: int = 0
    total_run_ms: int = 0
    power_cycles: int = 0
    rate_ppm: int = 0
    """Stroke-rate correction committed with the calibration table (0, 0: none)."""
    rate_offset_mhz: int = 0

    def __post_init__(self) -> None:
        _check_text("serial number", self.serial_number)
        _check_range("calibration_version", self.calibration_version, _U16)
        points = tuple((int(d), int(a)) for d, a in self.calibration)
        if len(points) > MAX_CALIBRATION_POINTS:
            raise ValueError(f"{len(points)} calibration points; at most {MAX_CALIBRATION_POINTS}")
        for depth, actuator in points:
            _check_range("calibration depth_um", depth, _U16)
            _check_range("calibration actuator_um", actuator, _U16)
        object.__setattr__(self, "calibration", points)
        _check_signed("rate_ppm", self.rate_ppm)
        _check_signed("rate_offset_mhz", self.rate_offset_mhz)
        latest: dict[str, None] = {}
        for cartridge_id in self.used_cartridges:
            _check_text("cartridge id", cartridge_id)
            latest.pop(cartridge_id, None)
            latest[cartridge_id] = None
        ids = tuple(latest)[-MAX_USED_CARTRIDGES:]
        object.__setattr__(self, "used_cartridges", ids)
        _check_range("total_strokes", self.total_strokes, _U64)
        _check_range("total_starts", self.total_starts, _U32)
        _check_range("total_run_ms", self.total_run_ms, _U64)
        _check_range("power_cycles", self.power_cycles, _U32)

    def with_used_cartridge(self, cartridge_id: str) -> NvmImage:
        """This image with ``cartridge_id`` as the most recently used (the oldest may drop)."""
        return replace(self, used_cartridges=(*self.used_cartridges, cartridge_id))

    def with_calibration(
        self,
        version: int,
        points: tuple[tuple[int, int], ...],
        rate_ppm: int = 0,
        rate_offset_mhz: int = 0,
    ) -> NvmImage:
        """This image with a newly committed calibration table (depth and stroke rate)."""
        return replace(
            self,
            calibration_version=version,
            calibration=points,
            rate_ppm=rate_ppm,
            rate_offset_mhz=rate_offset_mhz,
        )

    def with_added(
        self, *, strokes: int = 0, starts: int = 0, run_ms: int = 0, power_cycles: int = 0
    ) -> NvmImage:
        """This image with the counters advanced by the given amounts."""
        return replace(
            self,
            total_strokes=self.total_strokes + strokes,
            total_starts=self.total_starts + starts,
            total_run_ms=self.total_run_ms + run_ms,
            power_cycles=self.power_cycles + power_cycles,
        )


def _check_signed(what: str, value: int) -> None:
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(f"{what} must fit an i32, got {value}")


def _pack_text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes((len(raw),)) + raw


def _encode_payload(image: NvmImage) -> bytes:
    out = bytearray(_pack_text(image.serial_number))
    out += struct.pack("<HB", image.calibration_version, len(image.calibration))
    for depth, actuator in image.calibration:
        out += struct.pack("<HH", depth, actuator)
    out += struct.pack("<ii", image.rate_ppm, image.rate_offset_mhz)
    out += struct.pack(
        "<QIQI", image.total_strokes, image.total_starts, image.total_run_ms, image.power_cycles
    )
    out += struct.pack("<H", len(image.used_cartridges))
    for cartridge_id in image.used_cartridges:
        out += _pack_text(cartridge_id)
    return bytes(out)


class _Reader:
    """Cursor over a payload; any overrun or trailing byte makes the record invalid."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > len(self.data):
            raise ValueError("payload too short")
        values = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return values

    def text(self) -> str:
        (n,) = self.unpack("B")
        if self.pos + n > len(self.data):
            raise ValueError("payload too short")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8")


def _decode_payload(data: bytes, fmt: int = FORMAT_VERSION) -> NvmImage:
    r = _Reader(data)
    serial = r.text()
    version, count = r.unpack("HB")
    points = tuple((d, a) for d, a in (r.unpack("HH") for _ in range(count)))
    rate_ppm, rate_offset_mhz = r.unpack("ii") if fmt >= 2 else (0, 0)
    strokes, starts, run_ms, cycles = r.unpack("QIQI")
    (n_ids,) = r.unpack("H")
    ids = tuple(r.text() for _ in range(n_ids))
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} bytes after the payload")
    image = NvmImage(
        serial, version, points, ids, strokes, starts, run_ms, cycles, rate_ppm, rate_offset_mhz
    )
    if image.calibration != points or image.used_cartridges != ids:
        raise ValueError("payload is not in normal form")  # duplicates or too many entries
    return image


# ==================================================================================== record
def encode_record(image: NvmImage, generation: int) -> bytes:
    """The bytes of one record: header, payload, CRC-32 (the layout is in the module docstring)."""
    _check_range("generation", generation, _U32)
    payload = _encode_payload(image)
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, generation, len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


class SlotState(enum.Enum):
    BLANK = "blank"  # the whole sector is erased
    VALID = "valid"
    INVALID = "invalid"  # anything else: torn, corrupted, foreign or of another format


@dataclass(frozen=True, slots=True)
class SlotStatus:
    """What one sector holds; ``generation`` and ``image`` only for a valid record."""

    sector: int
    state: SlotState
    generation: int | None = None
    detail: str = ""
    image: NvmImage | None = field(default=None, repr=False)


def decode_record(sector: int, data: bytes) -> SlotStatus:
    """Judge the raw bytes of one sector; never raises on bad data, it reports it."""
    if data.count(ERASED) == len(data):
        return SlotStatus(sector, SlotState.BLANK, detail="erased")
    if len(data) < _HEADER.size + _CRC.size:
        return SlotStatus(sector, SlotState.INVALID, detail="sector too small for a record")
    magic, fmt, _reserved, generation, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        return SlotStatus(sector, SlotState.INVALID, detail="bad magic")
    end = _HEADER.size + length
    if end + _CRC.size > len(data):
        return SlotStatus(sector, SlotState.INVALID, detail=f"bad length {length}")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[:end]) != crc:
        return SlotStatus(sector, SlotState.INVALID, detail="bad CRC")
    if fmt not in READABLE_FORMATS:
        return SlotStatus(sector, SlotState.INVALID, detail=f"unsupported format {fmt}")
    try:
        image = _decode_payload(data[_HEADER.size : end], fmt)
    except ValueError as exc:  # UnicodeDecodeError included
        return SlotStatus(sector, SlotState.INVALID, detail=f"malformed payload: {exc}")
    return SlotStatus(sector, SlotState.VALID, generation, f"generation {generation}", image)


def generation_newer(a: int, b: int) -> bool:
    """Whether generation ``a`` is newer than ``b`` under 32-bit serial-number arithmetic."""
    return 0 < (a - b) % _GENERATION_MOD < _GENERATION_MOD // 2


# ===================================================================================== flash
class PowerCut(Exception):
    """The power failed during a flash operation, or the flash has no power (yet) again."""


class FlashError(OSError):
    """The flash reported that an erase or a write failed (the error bit of a NOR chip's status
    register: a worn or locked sector). The operation did only part of its work, and the power
    stayed on: the caller lives to say so. Injected with :meth:`Flash.fail_at`; a
    :class:`FileFlash` whose file cannot be written raises a plain ``OSError``, which a caller
    treats the same way."""


class RecordTooLarge(ValueError):
    """The image does not fit one sector: :meth:`NvmStore.save` refuses it before touching the
    flash."""


@dataclass(frozen=True, slots=True)
class _PendingCut:
    countdown: int
    keep: float
    partial_mask: int | None
    power_lost: bool = True
    """``False``: a reported failure (:class:`FlashError`), not a power cut."""


class Flash(ABC):
    """NOR flash: fixed sectors, erase to 0xFF, writes only clear bits, power cut on demand.

    Offsets are absolute; sector ``s`` spans ``s * sector_size`` onwards. A write may not cross
    a page (real chips wrap silently inside the page, a classic bug; the model refuses). Every
    erase and every write is one *operation*; reads are free. Subclasses only load and store
    raw bytes (:meth:`_load`, :meth:`_store`); everything else is here, shared.
    """

    def __init__(
        self,
        *,
        sector_size: int = DEFAULT_SECTOR_SIZE,
        sector_count: int = DEFAULT_SECTOR_COUNT,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if page_size <= 0 or sector_size <= 0 or sector_size % page_size:
            raise ValueError(
                f"sector size {sector_size} must be a positive multiple of page size {page_size}"
            )
        if sector_count <= 0:
            raise ValueError(f"sector count must be positive, got {sector_count}")
        self.sector_size = sector_size
        self.sector_count = sector_count
        self.page_size = page_size
        self.operations = 0
        """Erases and writes attempted with power, the cut one included."""
        self._powered = True
        self._cut: _PendingCut | None = None

    @property
    def size(self) -> int:
        return self.sector_size * self.sector_count

    @property
    def powered(self) -> bool:
        return self._powered

    # ------------------------------------------------------------------ fault injection
    def cut_power_at(self, n: int, *, keep: float = 0.5, partial_mask: int | None = None) -> None:
        """Make the ``n``-th operation from now (1: the next) tear and raise :class:`PowerCut`.

        ``keep`` is the fraction of the operation's bytes that land, from its start (0: none,
        1: all of them, and the caller still sees the cut). ``partial_mask`` tears the first
        byte that did not land: its bits set in the mask keep their old value and the others
        reach the new one (a half-programmed or half-erased cell); ``None`` leaves it untouched.
        A later call replaces a pending cut.
        """
        if n < 1:
            raise ValueError(f"n counts operations from 1 (the next), got {n}")
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must be a fraction 0..1, got {keep}")
        if partial_mask is not None:
            _check_range("partial_mask", partial_mask, _U8)
        self._cut = _PendingCut(n, keep, partial_mask)

    def fail_at(self, n: int, *, keep: float = 0.5) -> None:
        """Make the ``n``-th operation from now (1: the next) fail and raise :class:`FlashError`.

        Like :meth:`cut_power_at`, ``keep`` of its bytes land first; unlike it, the power stays
        on and the flash accepts the next operation (which may succeed: the fault is one
        operation's). A later call, of either kind, replaces a pending one.
        """
        if n < 1:
            raise ValueError(f"n counts operations from 1 (the next), got {n}")
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must be a fraction 0..1, got {keep}")
        self._cut = _PendingCut(n, keep, None, power_lost=False)

    def cancel_power_cut(self) -> None:
        """Forget a pending :meth:`cut_power_at` or :meth:`fail_at` that has not fired."""
        self._cut = None

    def power_restored(self) -> None:
        """Power is back: the flash accepts operations again (its contents are as the cut left
        them)."""
        self._powered = True

    # ------------------------------------------------------------------ operations
    def read(self, offset: int, n: int) -> bytes:
        self._check_powered()
        self._check_span(offset, n)
        return self._load(offset, n)

    def erase(self, sector: int) -> None:
        """Set a whole sector to 0xFF."""
        self._check_powered()
        if not 0 <= sector < self.sector_count:
            raise ValueError(f"sector {sector} outside 0..{self.sector_count - 1}")
        offset = sector * self.sector_size
        self._apply(offset, bytes([ERASED]) * self.sector_size)

    def write(self, offset: int, data: bytes) -> None:
        """Program ``data`` at ``offset``: each byte becomes ``old & new`` (bits only clear)."""
        self._check_powered()
        self._check_span(offset, len(data))
        if data and offset // self.page_size != (offset + len(data) - 1) // self.page_size:
            raise ValueError(
                f"write of {len(data)} bytes at {offset} crosses a {self.page_size}-byte page"
            )
        old = self._load(offset, len(data))
        self._apply(offset, bytes(o & d for o, d in zip(old, data, strict=True)))

    def _apply(self, offset: int, target: bytes) -> None:
        """Store ``target`` at ``offset`` as one operation, or the torn part of it and cut."""
        self.operations += 1
        cut = self._cut
        if cut is not None and cut.countdown > 1:
            self._cut = replace(cut, countdown=cut.countdown - 1)
            cut = None
        if cut is None:
            self._store(offset, target)
            return
        self._cut = None
        self._powered = not cut.power_lost
        landed = int(cut.keep * len(target))
        torn = target[:landed]
        if cut.partial_mask is not None and landed < len(target):
            (old,) = self._load(offset + landed, 1)
            mask = cut.partial_mask
            torn += bytes([(target[landed] & ~mask & _U8) | (old & mask)])
        if torn:
            self._store(offset, torn)
        if not cut.power_lost:
            raise FlashError(
                f"flash operation {self.operations} failed: "
                f"{len(torn)} of {len(target)} bytes at {offset} touched"
            )
        raise PowerCut(
            f"power cut during flash operation {self.operations}: "
            f"{len(torn)} of {len(target)} bytes at {offset} touched"
        )

    def _check_powered(self) -> None:
        if not self._powered:
            raise PowerCut("the flash has no power")

    def _check_span(self, offset: int, n: int) -> None:
        if n < 0 or offset < 0 or offset + n > self.size:
            raise ValueError(f"{n} bytes at {offset} outside the {self.size}-byte flash")

    # ------------------------------------------------------------------ backend
    @abstractmethod
    def _load(self, offset: int, n: int) -> bytes:
        """The raw bytes at ``offset``."""

    @abstractmethod
    def _store(self, offset: int, data: bytes) -> None:
        """Replace the raw bytes at ``offset``; durable before it returns."""


class MemoryFlash(Flash):
    """Flash in a bytearray: it survives a simulated reboot as long as the object lives."""

    def __init__(
        self,
        *,
        sector_size: int = DEFAULT_SECTOR_SIZE,
        sector_count: int = DEFAULT_SECTOR_COUNT,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        super().__init__(sector_size=sector_size, sector_count=sector_count, page_size=page_size)
        self._data = bytearray([ERASED]) * self.size

    def _load(self, offset: int, n: int) -> bytes:
        return bytes(self._data[offset : offset + n])

    def _store(self, offset: int, data: bytes) -> None:
        self._data[offset : offset + len(data)] = data


class FileFlash(Flash):
    """Flash in a file of its raw bytes, so a served pen keeps its memory across processes.

    A missing or empty file is created erased (atomically: written aside, fsynced, renamed): an
    empty file is what ``touch`` or ``mktemp`` leaves, a new memory by any reading, and it holds
    nothing to lose. Any other file must have exactly the flash's size (``ValueError`` names
    both sizes); :meth:`formatted` replaces whatever a file holds by an erased flash. A
    directory is refused with :class:`IsADirectoryError` before anything is touched. Every
    stored change is flushed and fsynced before the operation returns, so what a power cut
    leaves is exactly what the file holds. The file is opened per operation: nothing to close,
    and other instances see every change.

    ``created`` says whether this instance made the erased file (missing, empty or
    :meth:`formatted`), so a caller can tell a new memory from one that was there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sector_size: int = DEFAULT_SECTOR_SIZE,
        sector_count: int = DEFAULT_SECTOR_COUNT,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        super().__init__(sector_size=sector_size, sector_count=sector_count, page_size=page_size)
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a memory file", str(path))
        self.created = not self.path.exists() or self.path.stat().st_size == 0
        if self.created:
            self._create()
        actual = self.path.stat().st_size
        if actual != self.size:
            raise ValueError(
                f"{self.path} holds {actual} bytes; a flash of {self.sector_count} x "
                f"{self.sector_size} needs {self.size}"
            )

    @classmethod
    def formatted(
        cls,
        path: str | os.PathLike[str],
        *,
        sector_size: int = DEFAULT_SECTOR_SIZE,
        sector_count: int = DEFAULT_SECTOR_COUNT,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> FileFlash:
        """A flash on ``path`` erased whatever the file held (of any size): a deliberate
        format, such as ``pen-sim --format-nvm``. A directory is refused as by the constructor,
        before anything is written."""
        if Path(path).is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a memory file", str(path))
        # Gone, the file is a new memory to the constructor, which writes it erased aside and
        # renames it into place; a crash in between leaves no file, which is a new memory too.
        Path(path).unlink(missing_ok=True)
        return cls(path, sector_size=sector_size, sector_count=sector_count, page_size=page_size)

    def _create(self) -> None:
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes([ERASED]) * self.size)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)

    def _load(self, offset: int, n: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            data = f.read(n)
        if len(data) != n:
            raise OSError(f"{self.path} is shorter than the flash (truncated by someone?)")
        return data

    def _store(self, offset: int, data: bytes) -> None:
        with self.path.open("r+b") as f:
            f.seek(offset)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; not every platform can open a directory, which is fine there."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ===================================================================================== store
@dataclass(frozen=True, slots=True)
class NvmStatus:
    """Both slots as the store sees them, and which one ``load`` would use."""

    slots: tuple[SlotStatus, SlotStatus]
    active: int | None
    """Sector of the newest valid record; ``None`` when neither is valid."""

    @property
    def generation(self) -> int | None:
        return None if self.active is None else self.slots[self.active].generation

    @property
    def image(self) -> NvmImage | None:
        """The image ``load`` returns: the newest valid record's, ``None`` if there is none."""
        return None if self.active is None else self.slots[self.active].image

    @property
    def unreadable(self) -> bool:
        """Whether the memory holds something but no record passes its check.

        Then what it held (serial number, calibration, used cartridges, counters) is gone, and
        a pen that carried on would take a used cartridge for a fresh one. Blank flash is not
        unreadable: it is a new memory. Neither is one valid record beside an invalid one: that
        is what a write torn by a power cut leaves, and the A/B scheme exists to survive it
        (the valid record is used; the torn one held only the write that never completed).
        """
        return self.active is None and any(s.state is SlotState.INVALID for s in self.slots)

    def problems(self) -> str:
        """The slots that failed their check and why, in one line: ``slot A: bad magic, ...``."""
        return ", ".join(
            f"slot {'AB'[s.sector]}: {s.detail}" for s in self.slots if s.state is SlotState.INVALID
        )

    def describe(self) -> str:
        """One line per slot, for a diagnostic command."""
        lines = []
        for slot in self.slots:
            mark = "*" if slot.sector == self.active else " "
            lines.append(f"{mark} slot {'AB'[slot.sector]}: {slot.state.value} ({slot.detail})")
        return "\n".join(lines)


class NvmStore:
    """A/B records on the first two sectors of a flash; see the module docstring.

    The store holds no state of its own: every call reads the flash, so a new store on the same
    flash *is* a reboot, and a store never trusts what a power cut may have changed under it.
    """

    SLOTS = 2

    def __init__(self, flash: Flash) -> None:
        if flash.sector_count < self.SLOTS:
            raise ValueError(
                f"A/B records need {self.SLOTS} sectors, flash has {flash.sector_count}"
            )
        self.flash = flash

    def status(self) -> NvmStatus:
        size = self.flash.sector_size
        a, b = (decode_record(s, self.flash.read(s * size, size)) for s in range(self.SLOTS))
        if a.state is SlotState.VALID and b.state is SlotState.VALID:
            assert a.generation is not None and b.generation is not None
            active: int | None = 1 if generation_newer(b.generation, a.generation) else 0
        elif a.state is SlotState.VALID:
            active = 0
        elif b.state is SlotState.VALID:
            active = 1
        else:
            active = None
        return NvmStatus((a, b), active)

    def load(self) -> NvmImage | None:
        """The newest valid image, or ``None`` when neither slot holds one (blank flash, or
        flash whose records all fail their check: tell them apart with
        :attr:`NvmStatus.unreadable`)."""
        return self.status().image

    def save(self, image: NvmImage) -> int:
        """Write ``image`` as the new newest record and return its generation.

        The target is the slot that is not the newest valid one; it is erased (unless already
        blank) and written page by page, so the newest record stays intact until the new one is
        complete, and the new one becomes newest only when its last byte (the CRC) lands.
        Raises :class:`RecordTooLarge` (a ``ValueError``) before any flash operation if the
        record does not fit a sector, :class:`PowerCut` if the power fails on the way, and
        ``OSError`` (:class:`FlashError` from the model) if the flash reports a failed
        operation. In every case the newest valid record is still the one before.
        """
        size = self.flash.sector_size
        probe = encode_record(image, 0)
        if len(probe) > size:
            raise RecordTooLarge(
                f"NVM image needs {len(probe)} bytes, a flash sector holds {size} "
                f"({len(image.used_cartridges)} cartridge ids)"
            )
        status = self.status()
        if status.active is None:
            target, generation = 0, 1
        else:
            newest = status.slots[status.active].generation
            assert newest is not None
            target, generation = 1 - status.active, (newest + 1) % _GENERATION_MOD
        record = encode_record(image, generation)
        if status.slots[target].state is not SlotState.BLANK:
            self.flash.erase(target)
        base = target * size
        page = self.flash.page_size
        for start in range(0, len(record), page):
            self.flash.write(base + start, record[start : start + page])
        return generation
