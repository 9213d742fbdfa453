"""The pen's non-volatile memory: image, flash model, A/B records, and power cuts everywhere.

The heart is the property MCUboot's simulator checks for its swaps: save a sequence of images,
count the flash operations, then replay the sequence once per operation with the power cut at
that operation (torn in ways hypothesis chooses). After power returns the pen must find exactly
the last image it finished saving or the one it was saving, and must be able to save again.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from simulator.nvm import (
    DEFAULT_SECTOR_SIZE,
    FORMAT_VERSION,
    MAGIC,
    MAX_USED_CARTRIDGES,
    FileFlash,
    Flash,
    FlashError,
    MemoryFlash,
    NvmImage,
    NvmStore,
    PowerCut,
    RecordTooLarge,
    SlotState,
    decode_record,
    encode_record,
    generation_newer,
)

# A small geometry gives many pages (many places to tear) for small images, so the exhaustive
# property stays fast; the default geometry is covered by the worst-case and FileFlash tests.
SMALL = {"sector_size": 2048, "page_size": 64}


def small_flash() -> MemoryFlash:
    return MemoryFlash(**SMALL)


# ------------------------------------------------------------------------------ strategies
ids = st.one_of(
    st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", max_size=16),
    st.text(st.characters(codec="utf-8"), max_size=4),  # at most 4 x 4 UTF-8 bytes
)
u16 = st.integers(0, 0xFFFF)


def images(max_ids: int) -> st.SearchStrategy[NvmImage]:
    return st.builds(
        NvmImage,
        serial_number=ids,
        calibration_version=u16,
        calibration=st.lists(st.tuples(u16, u16), max_size=16).map(tuple),
        used_cartridges=st.lists(ids, max_size=max_ids).map(tuple),
        total_strokes=st.integers(0, 2**64 - 1),
        total_starts=st.integers(0, 2**32 - 1),
        total_run_ms=st.integers(0, 2**64 - 1),
        power_cycles=st.integers(0, 2**32 - 1),
    )


keeps = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
masks = st.one_of(st.none(), st.integers(0, 0xFF))

AFTER = NvmImage(
    serial_number="AFTER-THE-CUT",
    calibration_version=7,
    calibration=((100, 110), (200, 230)),
    used_cartridges=("CRT-AFTER",),
    total_strokes=1,
)


def full_image(serial: str = "SIM-WORST-CASE") -> NvmImage:
    """The largest image the format holds: every field at its widest."""
    return NvmImage(
        serial_number=serial,
        calibration_version=0xFFFF,
        calibration=tuple((i * 100, i * 110) for i in range(16)),
        used_cartridges=tuple(f"CRT-{i:012d}" for i in range(MAX_USED_CARTRIDGES)),
        total_strokes=2**64 - 1,
        total_starts=2**32 - 1,
        total_run_ms=2**64 - 1,
        power_cycles=2**32 - 1,
    )


# ------------------------------------------------------------------------------ power cuts
def count_operations(make_flash: Callable[[], Flash], sequence: Sequence[NvmImage]) -> int:
    flash = make_flash()
    store = NvmStore(flash)
    for image in sequence:
        store.save(image)
    return flash.operations


def check_cut_at(
    make_flash: Callable[[], Flash],
    sequence: Sequence[NvmImage],
    n: int,
    keep: float,
    mask: int | None,
) -> None:
    """Save ``sequence`` with the power cut at operation ``n``; reboot; check; save again."""
    flash = make_flash()
    flash.cut_power_at(n, keep=keep, partial_mask=mask)
    store = NvmStore(flash)
    cut_during: int | None = None
    for i, image in enumerate(sequence):
        try:
            store.save(image)
        except PowerCut:
            cut_during = i
            break
    assert cut_during is not None, f"operation {n} was never reached"
    assert not flash.powered
    with pytest.raises(PowerCut):
        store.load()  # a dead pen reads nothing

    flash.power_restored()
    rebooted = NvmStore(flash)
    loaded = rebooted.load()
    generation = rebooted.status().generation
    # Generation g is the g-th save of the sequence: it tells which image must have come back.
    assert generation in (cut_during or None, cut_during + 1)
    if generation is None:
        assert loaded is None
    else:
        assert loaded == sequence[generation - 1]

    rebooted.save(AFTER)
    assert NvmStore(flash).load() == AFTER


def check_every_cut(
    make_flash: Callable[[], Flash], sequence: Sequence[NvmImage], data: st.DataObject
) -> int:
    total = count_operations(make_flash, sequence)
    for n in range(1, total + 1):
        keep = data.draw(keeps, label=f"keep@{n}")
        mask = data.draw(masks, label=f"mask@{n}")
        check_cut_at(make_flash, sequence, n, keep, mask)
    return total


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(images(max_ids=60), min_size=2, max_size=6), data=st.data())
def test_power_cut_at_every_operation_leaves_old_or_new_image(
    sequence: list[NvmImage], data: st.DataObject
) -> None:
    check_every_cut(small_flash, sequence, data)


@pytest.mark.parametrize(("keep", "mask"), [(0.0, None), (0.5, 0x5A), (0.999, 0x00), (1.0, None)])
def test_power_cut_at_every_operation_with_full_images_on_default_geometry(
    keep: float, mask: int | None
) -> None:
    sequence = [full_image("SIM-A"), full_image("SIM-B"), AFTER, full_image("SIM-C")]
    total = count_operations(MemoryFlash, sequence)
    assert total >= 50  # 18 pages per full record, and erases
    for n in range(1, total + 1):
        check_cut_at(MemoryFlash, sequence, n, keep, mask)


def test_file_flash_power_cut_at_every_operation(tmp_path: Path) -> None:
    """The same property through the file backend (a fixed variety; each operation fsyncs)."""
    files = iter(range(10_000))

    def make_flash() -> FileFlash:
        return FileFlash(tmp_path / f"flash-{next(files)}.bin", **SMALL)

    sequence = [
        NvmImage("SIM-F1", used_cartridges=tuple(f"C{i}" for i in range(40))),
        NvmImage("SIM-F2", calibration_version=3, calibration=((1, 2), (3, 4))),
        NvmImage("SIM-F3", total_strokes=12345, used_cartridges=("X",)),
    ]
    total = count_operations(make_flash, sequence)
    variants = [(0.0, None), (0.5, 0xA5), (1.0, None)]
    for n in range(1, total + 1):
        keep, mask = variants[n % len(variants)]
        check_cut_at(make_flash, sequence, n, keep, mask)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(images(max_ids=20), min_size=2, max_size=3), data=st.data())
def test_file_flash_power_cut_property(
    tmp_path: Path, sequence: list[NvmImage], data: st.DataObject
) -> None:
    files = iter(range(10_000))
    folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()

    def make_flash() -> FileFlash:
        return FileFlash(folder / f"flash-{next(files)}.bin", **SMALL)

    check_every_cut(make_flash, sequence, data)


class CutsAndReboots(RuleBasedStateMachine):
    """Saves, some of them cut short, and reboots, round after round on one flash."""

    @initialize()
    def boot(self) -> None:
        self.flash = small_flash()
        self.store = NvmStore(self.flash)
        self.committed: NvmImage | None = None
        self.cuts = 0

    @rule(image=images(max_ids=30))
    def save(self, image: NvmImage) -> None:
        self.store.save(image)
        self.committed = image

    @rule(image=images(max_ids=30), n=st.integers(1, 12), keep=keeps, mask=masks)
    def save_with_power_cut(self, image: NvmImage, n: int, keep: float, mask: int | None) -> None:
        self.flash.cut_power_at(n, keep=keep, partial_mask=mask)
        try:
            self.store.save(image)
        except PowerCut:
            self.cuts += 1
            self.flash.power_restored()
            self.store = NvmStore(self.flash)
            loaded = self.store.load()
            assert loaded in (self.committed, image)
            self.committed = loaded
        else:
            self.flash.cancel_power_cut()
            self.committed = image

    @rule()
    def reboot(self) -> None:
        self.store = NvmStore(self.flash)

    @invariant()
    def loads_what_was_committed(self) -> None:
        if hasattr(self, "store"):
            assert self.store.load() == self.committed


CutsAndReboots.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, suppress_health_check=[HealthCheck.too_slow]
)
test_saving_keeps_working_after_power_cuts = CutsAndReboots.TestCase


def test_saving_after_every_kind_of_cut_keeps_working_for_rounds() -> None:
    """Brute force: round after round, cut each save at a different point, then save whole."""
    flash = small_flash()
    committed: NvmImage | None = None
    for round_ in range(30):
        image = NvmImage(f"R{round_}", used_cartridges=tuple(f"C{round_}-{i}" for i in range(20)))
        flash.cut_power_at(1 + round_ % 9, keep=(round_ % 4) / 3, partial_mask=round_ * 37 % 256)
        try:
            NvmStore(flash).save(image)
        except PowerCut:
            flash.power_restored()
        else:
            flash.cancel_power_cut()
        loaded = NvmStore(flash).load()
        assert loaded in (committed, image)
        whole = replace(image, serial_number=f"W{round_}")
        NvmStore(flash).save(whole)
        assert NvmStore(flash).load() == whole
        committed = whole


# ------------------------------------------------------------------------------ store
def test_blank_flash_loads_none() -> None:
    store = NvmStore(MemoryFlash())
    assert store.load() is None
    status = store.status()
    assert status.active is None and status.generation is None
    assert [s.state for s in status.slots] == [SlotState.BLANK, SlotState.BLANK]


def test_round_trip_and_generations_alternate_slots() -> None:
    flash = MemoryFlash()
    store = NvmStore(flash)
    first = NvmImage("SIM-000001", 3, ((100, 105), (500, 520)), ("CRT-1",), 10, 1, 2500, 4)
    assert store.save(first) == 1
    assert store.load() == first
    assert store.status().active == 0
    second = first.with_added(strokes=5)
    assert store.save(second) == 2
    assert store.load() == second
    status = store.status()
    assert status.active == 1 and status.generation == 2
    assert [s.generation for s in status.slots] == [1, 2]
    assert "* slot B: valid (generation 2)" in status.describe()
    assert store.save(first) == 3 and store.status().active == 0


def test_first_save_on_blank_flash_skips_the_erase_later_saves_erase() -> None:
    flash = MemoryFlash()
    store = NvmStore(flash)
    store.save(NvmImage("S"))
    assert flash.operations == 1  # one page, no erase
    store.save(NvmImage("S"))
    assert flash.operations == 2  # slot B was blank too
    store.save(NvmImage("S"))
    assert flash.operations == 4  # erase A, write it


def test_survives_reboot_on_the_same_flash() -> None:
    flash = MemoryFlash()
    image = NvmImage("SIM-7", used_cartridges=("a", "b"), power_cycles=3)
    NvmStore(flash).save(image)
    assert NvmStore(flash).load() == image


def test_survives_reboot_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "pen.nvm"
    image = full_image()
    NvmStore(FileFlash(path)).save(image)
    NvmStore(FileFlash(path)).save(image.with_added(power_cycles=-1))
    store = NvmStore(FileFlash(path))
    assert store.load() == image.with_added(power_cycles=-1)
    assert store.status().generation == 2


def test_corrupt_newest_record_falls_back_to_the_older_one() -> None:
    flash = MemoryFlash()
    store = NvmStore(flash)
    old, new = NvmImage("OLD"), NvmImage("NEW", total_starts=9)
    store.save(old)
    store.save(new)
    newest = store.status().active
    assert newest == 1
    flash.write(DEFAULT_SECTOR_SIZE + 17, b"\x00")  # clear the bits of "N" in the payload
    assert store.load() == old
    status = store.status()
    assert status.active == 0
    assert status.slots[1].state is SlotState.INVALID and status.slots[1].detail == "bad CRC"
    # The next save replaces the bad record, with the generation after the valid one.
    assert store.save(AFTER) == 2
    assert store.load() == AFTER and store.status().active == 1


def test_both_records_corrupt_loads_none() -> None:
    flash = MemoryFlash()
    store = NvmStore(flash)
    store.save(NvmImage("A"))
    store.save(NvmImage("B"))
    flash.write(0, b"\x00")
    flash.write(DEFAULT_SECTOR_SIZE + 4, b"\x00")
    assert store.load() is None
    assert [s.detail for s in store.status().slots] == ["bad magic", "bad CRC"]
    store.save(AFTER)
    assert store.load() == AFTER


def test_generation_wraps_around() -> None:
    flash = MemoryFlash()
    older, newer = NvmImage("OLDER"), NvmImage("NEWER")
    flash.write(0, encode_record(older, 0xFFFF_FFFF))
    flash.write(DEFAULT_SECTOR_SIZE, encode_record(newer, 0))
    store = NvmStore(flash)
    assert store.load() == newer
    assert store.save(AFTER) == 1
    assert store.load() == AFTER and store.status().active == 0


def test_generation_order() -> None:
    assert generation_newer(2, 1) and not generation_newer(1, 2)
    assert generation_newer(0, 0xFFFF_FFFF) and not generation_newer(0xFFFF_FFFF, 0)
    assert not generation_newer(5, 5)


def test_image_too_big_for_a_sector_is_refused_before_touching_flash() -> None:
    flash = MemoryFlash(sector_size=1024, page_size=64)
    store = NvmStore(flash)
    with pytest.raises(RecordTooLarge, match="a flash sector holds 1024"):
        store.save(full_image())
    assert issubclass(RecordTooLarge, ValueError)
    assert flash.operations == 0
    assert flash.read(0, flash.size) == b"\xff" * flash.size


def test_default_sector_holds_the_largest_image() -> None:
    assert len(encode_record(full_image(), 0xFFFF_FFFF)) <= DEFAULT_SECTOR_SIZE


def test_store_needs_two_sectors() -> None:
    with pytest.raises(ValueError, match="2 sectors"):
        NvmStore(MemoryFlash(sector_count=1))


# ------------------------------------------------------------------------------ record layout
def test_record_layout() -> None:
    image = NvmImage("SN", 2, ((1, 2),), ("C",), 3, 4, 5, 6, -7, 8)
    record = encode_record(image, 0x01020304)
    magic, fmt, reserved, generation, length = struct.unpack_from("<4sHHII", record)
    assert (magic, fmt, reserved, generation) == (MAGIC, FORMAT_VERSION, 0, 0x01020304)
    assert FORMAT_VERSION == 2
    payload = record[16 : 16 + length]
    assert payload == (
        b"\x02SN" + struct.pack("<HBHH", 2, 1, 1, 2) + struct.pack("<ii", -7, 8)
        + struct.pack("<QIQI", 3, 4, 5, 6) + struct.pack("<H", 1) + b"\x01C"
    )  # fmt: skip
    assert len(record) == 16 + length + 4
    assert struct.unpack("<I", record[-4:])[0] == zlib.crc32(record[:-4])
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC named in the module docstring


def _sealed(header_and_payload: bytes) -> bytes:
    return header_and_payload + struct.pack("<I", zlib.crc32(header_and_payload))


def test_a_format_1_record_from_older_firmware_is_read_with_no_rate_correction() -> None:
    payload = (
        b"\x02SN" + struct.pack("<HBHH", 2, 1, 1, 2) + struct.pack("<QIQI", 3, 4, 5, 6)
        + struct.pack("<H", 1) + b"\x01C"
    )  # fmt: skip
    record = _sealed(struct.pack("<4sHHII", MAGIC, 1, 0, 9, len(payload)) + payload)
    status = decode_record(0, record + b"\xff" * 64)
    assert status.state is SlotState.VALID and status.generation == 9
    assert status.image == NvmImage("SN", 2, ((1, 2),), ("C",), 3, 4, 5, 6)
    assert (status.image.rate_ppm, status.image.rate_offset_mhz) == (0, 0)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (_sealed(struct.pack("<4sHHII", MAGIC, 3, 0, 1, 0)), "unsupported format 3"),
        (_sealed(struct.pack("<4sHHII", MAGIC, 1, 0, 1, 5000)), "bad length 5000"),
        (_sealed(struct.pack("<4sHHII", MAGIC, 1, 0, 1, 1) + b"\x05"), "malformed payload"),
        (_sealed(struct.pack("<4sHHII", b"PNVN", 1, 0, 1, 0)), "bad magic"),
    ],
)
def test_invalid_records_are_reported_not_raised(data: bytes, detail: str) -> None:
    sector = data + b"\xff" * (1024 - len(data))
    status = decode_record(0, sector)
    assert status.state is SlotState.INVALID
    assert detail in status.detail
    assert status.image is None and status.generation is None


def test_crc_valid_records_that_do_not_decode_are_invalid() -> None:
    def record(payload: bytes) -> bytes:
        return _sealed(struct.pack("<4sHHII", MAGIC, FORMAT_VERSION, 0, 1, len(payload)) + payload)

    good = encode_record(NvmImage("x", used_cartridges=("a",)), 1)[16:-4]
    duplicated = good[:-4] + struct.pack("<H", 2) + b"\x01a\x01a"
    trailing = good + b"\x00"
    bad_utf8 = b"\x01\xff" + good[2:]
    for payload, why in [(duplicated, "normal form"), (trailing, "after"), (bad_utf8, "")]:
        status = decode_record(1, record(payload) + b"\xff" * 64)
        assert status.state is SlotState.INVALID and "malformed payload" in status.detail
        assert why in status.detail


# ------------------------------------------------------------------------------ image
def test_image_keeps_the_most_recent_cartridges_without_duplicates() -> None:
    image = NvmImage("S", used_cartridges=("a", "b", "a"))
    assert image.used_cartridges == ("b", "a")
    for i in range(MAX_USED_CARTRIDGES + 5):
        image = image.with_used_cartridge(f"c{i}")
    assert len(image.used_cartridges) == MAX_USED_CARTRIDGES
    assert image.used_cartridges[0] == "c5" and image.used_cartridges[-1] == "c260"
    assert image.with_used_cartridge("c10").used_cartridges[-1] == "c10"
    trimmed = replace(image, used_cartridges=tuple(str(i) for i in range(300)))
    assert trimmed.used_cartridges[0] == "44"


def test_image_helpers() -> None:
    image = NvmImage("S").with_calibration(4, ((1, 2), (3, 4)))
    assert (image.calibration_version, image.calibration) == (4, ((1, 2), (3, 4)))
    image = image.with_added(strokes=100, starts=1, run_ms=2500).with_added(power_cycles=2)
    assert (image.total_strokes, image.total_starts, image.total_run_ms) == (100, 1, 2500)
    assert image.power_cycles == 2
    with pytest.raises(FrozenInstanceError):
        image.total_strokes = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"serial_number": "X" * 17},
        {"serial_number": "é" * 9},  # 18 UTF-8 bytes
        {"serial_number": "\ud800"},  # not encodable
        {"used_cartridges": ("Y" * 17,)},
        {"calibration_version": 0x10000},
        {"calibration": tuple((i, i) for i in range(17))},
        {"calibration": ((0, -1),)},
        {"total_strokes": -1},
        {"total_starts": 2**32},
        {"total_run_ms": 2**64},
        {"power_cycles": -1},
    ],
)
def test_image_refuses_what_the_format_cannot_hold(fields: dict[str, object]) -> None:
    args: dict[str, object] = {"serial_number": "OK", **fields}
    with pytest.raises(ValueError):
        NvmImage(**args)  # type: ignore[arg-type]


@settings(max_examples=60)
@given(image=images(max_ids=MAX_USED_CARTRIDGES))
def test_record_round_trip(image: NvmImage) -> None:
    status = decode_record(0, encode_record(image, 42) + b"\xff" * 16)
    assert status.state is SlotState.VALID
    assert (status.generation, status.image) == (42, image)


# ------------------------------------------------------------------------------ flash model
def test_flash_is_nor_erase_sets_writes_and() -> None:
    flash = MemoryFlash(sector_size=512, page_size=64)
    assert flash.read(0, 4) == b"\xff" * 4
    flash.write(0, b"\xf0\x0f\xaa")
    flash.write(0, b"\x3c\x3c\xff")
    assert flash.read(0, 3) == b"\x30\x0c\xaa"  # bits only clear
    flash.erase(0)
    assert flash.read(0, 512) == b"\xff" * 512
    flash.write(512, b"\x00")
    flash.erase(0)
    assert flash.read(512, 1) == b"\x00"  # the other sector is untouched
    assert flash.operations == 5


def test_flash_refuses_bad_spans() -> None:
    flash = MemoryFlash(sector_size=512, page_size=64)
    with pytest.raises(ValueError, match="crosses"):
        flash.write(60, b"\x00" * 8)
    with pytest.raises(ValueError, match="outside"):
        flash.write(1020, b"\x00" * 8)
    with pytest.raises(ValueError, match="outside"):
        flash.read(-1, 1)
    with pytest.raises(ValueError, match="sector 2"):
        flash.erase(2)
    with pytest.raises(ValueError, match="multiple"):
        MemoryFlash(sector_size=500, page_size=64)
    assert flash.operations == 0


def test_power_cut_counts_from_the_next_operation_and_then_refuses_all() -> None:
    flash = MemoryFlash(sector_size=512, page_size=64)
    flash.cut_power_at(2, keep=1.0)
    flash.write(0, b"\x01")
    with pytest.raises(PowerCut):
        flash.write(1, b"\x02")
    for operation in (
        lambda: flash.read(0, 1),
        lambda: flash.erase(0),
        lambda: flash.write(2, b""),
    ):
        with pytest.raises(PowerCut):
            operation()
    assert flash.operations == 2 and not flash.powered
    flash.power_restored()
    assert flash.read(0, 3) == b"\x01\x02\xff"  # keep=1.0: all landed, still a cut
    flash.write(2, b"\x03")  # no second cut
    assert flash.operations == 3


def test_torn_write_lands_a_prefix_and_maybe_a_half_programmed_byte() -> None:
    flash = MemoryFlash(sector_size=512, page_size=64)
    flash.cut_power_at(1, keep=0.5)
    with pytest.raises(PowerCut):
        flash.write(0, b"\x00" * 8)
    flash.power_restored()
    assert flash.read(0, 8) == b"\x00" * 4 + b"\xff" * 4

    flash.cut_power_at(1, keep=0.25, partial_mask=0x0F)
    with pytest.raises(PowerCut):
        flash.write(64, b"\x00\x00\x00\x00")
    flash.power_restored()
    assert flash.read(64, 4) == b"\x00\x0f\xff\xff"  # masked bits kept their old 1s


def test_torn_erase_erases_a_prefix_and_maybe_a_half_erased_byte() -> None:
    flash = MemoryFlash(sector_size=256, page_size=64)
    for page in range(4):
        flash.write(page * 64, b"\x00" * 64)
    flash.cut_power_at(1, keep=0.5, partial_mask=0xF0)
    with pytest.raises(PowerCut):
        flash.erase(0)
    flash.power_restored()
    assert flash.read(0, 256) == b"\xff" * 128 + b"\x0f" + b"\x00" * 127


def test_cut_power_at_arguments_and_cancel() -> None:
    flash = MemoryFlash()
    with pytest.raises(ValueError, match="counts operations from 1"):
        flash.cut_power_at(0)
    with pytest.raises(ValueError, match="fraction"):
        flash.cut_power_at(1, keep=1.5)
    with pytest.raises(ValueError, match="partial_mask"):
        flash.cut_power_at(1, partial_mask=256)
    flash.cut_power_at(1)
    flash.cancel_power_cut()
    flash.write(0, b"\x00")
    assert flash.powered


# ------------------------------------------------------------------------------ file flash
def test_file_flash_starts_erased_and_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    flash = FileFlash(path, sector_size=512, page_size=64)
    assert path.read_bytes() == b"\xff" * 1024
    flash.write(10, b"\x12\x34")
    again = FileFlash(path, sector_size=512, page_size=64)
    assert again.read(10, 2) == b"\x12\x34"
    assert path.read_bytes()[10:12] == b"\x12\x34"
    assert [p.name for p in tmp_path.iterdir()] == ["flash.bin"]  # no temporary left behind


def test_file_flash_keeps_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    flash = FileFlash(path, sector_size=512, page_size=64)
    flash.cut_power_at(1, keep=0.5)
    with pytest.raises(PowerCut):
        flash.write(0, b"\x00" * 4)
    assert FileFlash(path, sector_size=512, page_size=64).read(0, 4) == b"\x00\x00\xff\xff"


def test_file_flash_refuses_a_file_of_another_size(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    path.write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match="holds 100 bytes"):
        FileFlash(path)


def test_file_flash_takes_an_empty_file_for_a_new_memory(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    path.touch()  # what `touch` or `mktemp` leaves: nothing in it to lose
    flash = FileFlash(path, sector_size=512, page_size=64)
    assert flash.created
    assert path.read_bytes() == b"\xff" * 1024
    assert not FileFlash(path, sector_size=512, page_size=64).created


def test_file_flash_refuses_a_directory_without_touching_it(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory"):
        FileFlash(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_file_flash_formatted_replaces_whatever_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    path.write_bytes(b"\x00" * 100)
    flash = FileFlash.formatted(path, sector_size=512, page_size=64)
    assert flash.created
    assert path.read_bytes() == b"\xff" * 1024
    with pytest.raises(IsADirectoryError):
        FileFlash.formatted(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["flash.bin"]


def test_unreadable_means_something_was_there_and_none_of_it_passes() -> None:
    flash = MemoryFlash()
    store = NvmStore(flash)
    assert not store.status().unreadable  # blank: a new memory
    store.save(NvmImage("A"))
    store.save(NvmImage("B"))
    flash.write(DEFAULT_SECTOR_SIZE + 4, b"\x00")  # the newer one torn: A/B falls back
    assert not store.status().unreadable
    assert store.status().image == NvmImage("A")
    assert store.status().problems() == "slot B: bad CRC"
    flash.write(0, b"\x00")
    status = store.status()
    assert status.unreadable and status.image is None
    assert status.problems() == "slot A: bad magic, slot B: bad CRC"


# ------------------------------------------------------------------ a write that fails, powered
@pytest.mark.parametrize(("at", "keep"), [(1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (2, 0.99)])
def test_a_failed_operation_raises_keeps_the_power_and_leaves_the_old_record(
    at: int, keep: float
) -> None:
    """A flash that reports a failed erase or write (not a power cut): the save raises
    FlashError, the newest record is still the one before, and the flash works on."""
    flash = small_flash()
    store = NvmStore(flash)
    old = NvmImage("SN-1", calibration_version=1, calibration=((500, 510),))
    store.save(old)
    store.save(replace(old, power_cycles=1))
    before = store.load()
    flash.fail_at(at, keep=keep)  # 1: the erase of the other slot, 2: its only page
    with pytest.raises(FlashError, match=f"flash operation {flash.operations + at} failed"):
        store.save(replace(old, calibration_version=2))
    assert flash.powered
    assert store.load() == before
    assert NvmStore(flash).load() == before  # and after a reboot
    store.save(replace(old, calibration_version=3))  # the next save works
    loaded = store.load()
    assert loaded is not None and loaded.calibration_version == 3


def test_fail_at_checks_its_arguments_and_a_later_call_replaces_it() -> None:
    flash = small_flash()
    with pytest.raises(ValueError, match="counts operations from 1"):
        flash.fail_at(0)
    with pytest.raises(ValueError, match="fraction"):
        flash.fail_at(1, keep=1.5)
    flash.fail_at(1)
    flash.cancel_power_cut()
    flash.erase(0)  # nothing pending
    flash.cut_power_at(5)
    flash.fail_at(1)
    with pytest.raises(FlashError):
        flash.erase(0)
    flash.erase(1)  # the cut was replaced, not added
