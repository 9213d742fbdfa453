"""Regenerate (or, with --check, verify) every file derived from the protocol schema.

    python tools/gen_protocol.py          # rewrite the generated files
    python tools/gen_protocol.py --check  # exit 1 and name the files that drifted

Derived files: firmware_protocol/messages.py (typed classes), firmware/c/pen_protocol.h and
pen_protocol.c (the firmware's C library), the part of docs/PROTOCOL.md between the
GENERATED markers, and tools/wireshark/pen_protocol.lua (a Wireshark dissector).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REGENERATING = "FIRMWARE_PROTOCOL_REGENERATING"

# The package refuses to import while messages.py is out of date for the schema, which is
# exactly when this tool must run: tell it that the file is being regenerated.
os.environ[REGENERATING] = "1"

from firmware_protocol.codegen import markdown_tables, python_module  # noqa: E402
from firmware_protocol.codegen_c import c_header, c_source  # noqa: E402
from firmware_protocol.codegen_lua import lua_dissector  # noqa: E402
from firmware_protocol.schema import load_schema  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED TABLES -->"
END = "<!-- END GENERATED TABLES -->"


def expected_files() -> dict[Path, str]:
    """Every derived file and the text it should hold."""
    schema = load_schema()
    doc_path = ROOT / "docs" / "PROTOCOL.md"
    doc = doc_path.read_text("utf-8")
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{doc_path}: the markers {BEGIN} and {END} are missing")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return {
        ROOT / "firmware_protocol" / "messages.py": python_module(schema),
        ROOT / "firmware" / "c" / "pen_protocol.h": c_header(schema),
        ROOT / "firmware" / "c" / "pen_protocol.c": c_source(schema),
        doc_path: f"{head}{BEGIN}\n{markdown_tables(schema)}{END}{tail}",
        ROOT / "tools" / "wireshark" / "pen_protocol.lua": lua_dissector(schema),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that drifted")
    args = parser.parse_args(argv)
    drifted = []
    for path, text in expected_files().items():
        current = path.read_text("utf-8") if path.exists() else None
        if current == text:
            continue
        drifted.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
    if args.check and drifted:
        for path in drifted:
            print(f"out of date: {path.relative_to(ROOT)} (run: python tools/gen_protocol.py)")
        return 1
    for path in drifted:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
