"""The generated dissector in real Wireshark (tshark), where there is one: the same packets give
the same tree, values, byte positions, expert infos and columns as in the fake.

Skipped on a machine without tshark (``apt-get install tshark`` brings Wireshark 4.0 with Lua
5.2 on Debian 12). Where it runs, it also keeps tests/wireshark_fake.lua honest: any place the
fake and Wireshark disagree about what the dissector's calls produce fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_wireshark import DISSECTOR, P2P_DIR_RECV, P2P_DIR_SENT, Dissection, Dissector, Item
from test_wireshark_dissector import FRAMES, REJECTS, damaged_frames, reframe

from firmware_protocol import SCHEMA, cobs_decode, decode_frame, encode_frame, messages
from firmware_protocol.pcapng import WireFrame, pcapng_stream

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="no tshark here (apt-get install tshark)")


@dataclass(frozen=True)
class Shown:
    """One item of a tree: field name ('' for a text item), label, value, bytes."""

    name: str
    label: str
    value: str | None
    pos: int | None
    size: int | None


def _packets() -> list[WireFrame]:
    packets: list[bytes] = [bytes.fromhex(v.fields["wire"]) for v in FRAMES + REJECTS]
    packets += damaged_frames(seed=16, count=300)
    body = cobs_decode(encode_frame(messages.CalibrationRead(staged=1), 7)[:-1])[:-2]
    short = body[:7] + b"\x00\x00"  # an older host's CALIBRATION_READ, no `staged`
    longer = cobs_decode(encode_frame(messages.SetDepth(500), 8)[:-1])[:-2] + b"\xaa"
    odd = messages.Status(state=messages.PenState(9), fault_flags=messages.FaultFlags(0x8001))
    packets += [
        reframe(short),
        reframe(longer),
        encode_frame(odd, 3, 0x01),
        encode_frame(messages.Stop(), 5)[:-1],  # no delimiter
        b"\x00",
        b"\x01" * 514 + b"\x00",
    ]
    frames = []
    for i, data in enumerate(packets):
        event = decode_frame(data[:-1] if data.endswith(b"\x00") else data)
        name = getattr(getattr(event, "message", None), "NAME", None)
        inbound = name is not None and SCHEMA.message(name).direction == "pen_to_host"
        frames.append(WireFrame(i * 0.001, "p2h" if inbound else "h2p", data, len(data)))
    frames.append(WireFrame(1.0, "p2h", b"\x55" * 516, 1001))  # cut to the snap length
    return frames


def _tshark(path: Path, home: Path, *args: str) -> str:
    assert TSHARK is not None
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = subprocess.run(
        [TSHARK, "-n", "-X", f"lua_script:{DISSECTOR}", "-r", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Lua" not in result.stderr, result.stderr  # a script error is only a warning there
    return result.stdout


def _real_tree(element: ET.Element) -> tuple[list[Shown], list[tuple[str, str, int, int]]]:
    items: list[Shown] = []
    experts: list[tuple[str, str, int, int]] = []

    def walk(parent: ET.Element) -> None:
        for el in parent.findall("field"):
            name = el.get("name", "")
            if name == "_ws.expert":
                sub = {f.get("name", ""): f for f in el.findall("field")}
                (abbr,) = [n for n in sub if n.startswith("pen.expert.")]
                experts.append(
                    (
                        abbr,
                        sub["_ws.expert.message"].get("show", ""),
                        int(sub["_ws.expert.severity"].get("show", "0")),
                        int(sub["_ws.expert.group"].get("show", "0")),
                    )
                )
                continue
            shown = Shown(
                "" if name == "_ws.lua.text" else name,
                el.get("showname", ""),
                el.get("show") if name != "_ws.lua.text" else None,
                int(el.get("pos", "0")),
                int(el.get("size", "0")),
            )
            items.append(shown)
            walk(el)

    walk(element)
    return items, experts


def _fake_tree(root: Item) -> list[Shown]:
    return [
        Shown(i.abbr or "", i.label, i.value, i.offset, i.length)
        for i in list(root.walk())[1:]  # the protocol item itself is compared apart
    ]


def _same_item(real: Shown, fake: Shown) -> bool:
    if real.name != fake.name:
        return False
    if fake.pos is not None and (real.pos, real.size) != (fake.pos, fake.size):
        return False
    label = real.label
    if " = " in label and label.lstrip(".01 ").startswith("="):  # a bit field: ..0. = NAME
        label = label.split(" = ", 1)[1]
        return label.split(":")[0] == fake.label.split(":")[0] and _same_value(real, fake)
    if label.endswith("…"):  # long bytes, shortened on screen
        return fake.label.startswith(label[:-1]) and _same_value(real, fake)
    return label == fake.label and _same_value(real, fake)


def _same_value(real: Shown, fake: Shown) -> bool:
    if fake.value is None or real.value is None:
        return True
    if isinstance(fake.value, bool):
        return real.value == ("1" if fake.value else "0")
    if real.value.startswith("0x") or real.value.lstrip("-").isdigit():
        try:
            return int(real.value, 0) == int(fake.value)
        except ValueError:
            pass
    return real.value.replace(":", "") == fake.value or real.value == fake.value


def test_tshark_shows_what_the_fake_shows(tmp_path: Path) -> None:
    frames = _packets()
    capture = tmp_path / "all.pcapng"
    capture.write_bytes(b"".join(pcapng_stream(frames)))
    pdml = ET.fromstring(_tshark(capture, tmp_path, "-T", "pdml"))
    columns = _tshark(
        capture,
        tmp_path,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-e",
        "_ws.col.Info",
        "-e",
        "_ws.col.Source",
        "-e",
        "_ws.col.Destination",
        "-e",
        "_ws.col.Protocol",
    ).splitlines()
    packets = pdml.findall("packet")
    assert len(packets) == len(columns) == len(frames)
    fake = Dissector("lua52")  # what Debian's Wireshark 4.0 embeds
    for frame, packet, line in zip(frames, packets, columns, strict=True):
        direction = P2P_DIR_SENT if frame.direction == "h2p" else P2P_DIR_RECV
        expected: Dissection = fake.dissect(frame.data, reported=frame.length, p2p_dir=direction)
        (proto,) = [p for p in packet.findall("proto") if p.get("name") == "pen"]
        where = f"packet {frame.data.hex()}"
        assert proto.get("showname") == expected.root.label, where
        real_items, real_experts = _real_tree(proto)
        fake_items = _fake_tree(expected.root)
        assert len(real_items) == len(fake_items), (where, real_items, fake_items)
        for real, mine in zip(real_items, fake_items, strict=True):
            assert _same_item(real, mine), (where, real, mine)
        assert sorted(real_experts) == sorted(
            (e.abbr, e.text, e.severity, e.group) for e in expected.experts
        ), where
        info, source, destination, protocol = line.split("\t")
        assert info == expected.info, where
        assert (source, destination) == (expected.cols["src"], expected.cols["dst"]), where
        assert protocol == "PEN"
