"""The generated Wireshark dissector, run in Lua without Wireshark.

lupa embeds real Lua interpreters (5.1 to 5.5, and LuaJIT) in Python; ``tests/wireshark_fake.lua``
is a fake of the part of Wireshark's Lua API the dissector calls, strict where the real one
is strict. :class:`Dissector` loads the fake and ``tools/wireshark/pen_protocol.lua`` into
one interpreter, then dissects packets and hands back the tree as plain Python objects.

Lua versions: Wireshark 4.2 and older embed Lua 5.1 or 5.2, 4.4 and later Lua 5.3 or 5.4.
The tests run the dissector on 5.2 and 5.4 (the integer operators exist in one and not in
the other, and integers are floats in one, see the fake).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DISSECTOR = ROOT / "tools" / "wireshark" / "pen_protocol.lua"
FAKE = Path(__file__).resolve().parent / "wireshark_fake.lua"
LUA_VERSIONS = ("lua52", "lua54")
"""The lupa modules the dissector is tested on (Wireshark <= 4.2 and >= 4.4)."""

P2P_DIR_SENT = 0
"""pinfo.p2p_dir of an outbound packet (pcapng flags 0b10): host to pen."""
P2P_DIR_RECV = 1
"""pinfo.p2p_dir of an inbound packet (pcapng flags 0b01): pen to host."""


@dataclass
class Expert:
    abbr: str
    group: int
    severity: int
    text: str


@dataclass
class Item:
    """One tree item: its label as Wireshark would show it, its field and value, its bytes."""

    label: str
    abbr: str | None = None
    value: Any = None
    value_type: str | None = None
    generated: bool = False
    source: str | None = None
    offset: int | None = None
    length: int | None = None
    experts: list[Expert] = field(default_factory=list)
    children: list[Item] = field(default_factory=list)

    def walk(self) -> Iterator[Item]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, abbr: str) -> list[Item]:
        return [item for item in self.walk() if item.abbr == abbr]

    def one(self, abbr: str) -> Item:
        found = self.find(abbr)
        assert len(found) == 1, f"{abbr}: {len(found)} items"
        return found[0]


@dataclass
class Dissection:
    tree: list[Item]
    cols: dict[str, str]
    experts: list[Expert]
    sources: dict[str, bytes]
    consumed: int | None

    @property
    def root(self) -> Item:
        assert len(self.tree) == 1, [i.label for i in self.tree]
        return self.tree[0]

    @property
    def info(self) -> str:
        return self.cols.get("info", "")

    def errors(self) -> list[Expert]:
        """Expert infos of severity WARN or ERROR (the verdicts, not the notes)."""
        return [e for e in self.experts if e.severity >= 0x00600000]


def _plain(value: Any) -> Any:
    """A Lua table as a Python list (array) or dict, recursively."""
    if hasattr(value, "items") and callable(value.items):
        items = dict(value.items())
        if items and all(isinstance(k, int) for k in items):
            return [_plain(items[k]) for k in sorted(items)]
        return {k: _plain(v) for k, v in items.items()}
    return value


def _items(raw: Any) -> list[Item]:
    return [_item(entry) for entry in (raw or [])]


def _item(raw: dict[str, Any]) -> Item:
    return Item(
        label=raw["label"],
        abbr=raw.get("abbr"),
        value=raw.get("value"),
        value_type=raw.get("value_type"),
        generated=bool(raw.get("generated")),
        source=raw.get("source"),
        offset=int(raw["offset"]) if raw.get("offset") is not None else None,
        length=int(raw["length"]) if raw.get("length") is not None else None,
        experts=[_expert(e) for e in raw.get("experts") or []],
        children=_items(raw.get("children")),
    )


def _expert(raw: dict[str, Any]) -> Expert:
    return Expert(raw["abbr"], int(raw["group"]), int(raw["severity"]), raw["text"])


class Dissector:
    """One Lua interpreter with the fake API and the dissector loaded and registered."""

    def __init__(self, lua_version: str = "lua54", source: str | None = None) -> None:
        lupa = importlib.import_module(f"lupa.{lua_version}")
        self.lua = lupa.LuaRuntime(unpack_returned_tuples=True, encoding="utf-8")
        self.version = str(self.lua.eval("_VERSION"))
        self.fake = self.lua.execute(FAKE.read_text("utf-8"))
        text = source if source is not None else DISSECTOR.read_text("utf-8")
        chunk = self.lua.eval(
            "function(text) return assert((loadstring or load)(text, '=pen_protocol.lua')) end"
        )
        chunk(text)()
        self.fake.register()

    def registrations(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = _plain(self.fake.registrations())
        return {key: list(value) if value else [] for key, value in result.items()}

    def dissect(
        self, packet: bytes, *, reported: int | None = None, p2p_dir: int | None = None
    ) -> Dissection:
        raw = _plain(self.fake.dissect(packet, reported, p2p_dir))
        return Dissection(
            tree=_items(raw.get("tree")),
            cols=dict(raw.get("cols") or {}),
            experts=[_expert(e) for e in raw.get("experts") or []],
            sources={s["name"]: bytes.fromhex(s["hex"]) for s in raw.get("sources") or []},
            consumed=int(raw["consumed"]) if raw.get("consumed") is not None else None,
        )
