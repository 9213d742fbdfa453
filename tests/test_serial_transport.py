"""The serial transport against real paths: what a user who names the wrong thing is told."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pendriver.errors import PenConnectionError
from pendriver.transports.serial import SerialTransport


def open_error(url: str) -> str:
    """The one-line message opening ``url`` fails with."""

    async def attempt() -> None:
        transport = SerialTransport(url)
        try:
            await transport.open()
        finally:
            await transport.close()

    with pytest.raises(PenConnectionError) as caught:
        asyncio.run(attempt())
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_dev_null_is_not_a_serial_port() -> None:
    message = open_error("/dev/null")
    assert message == (
        "cannot open /dev/null: it is not a serial port "
        "(a serial device is e.g. /dev/ttyUSB0; list ports with: pen scan)"
    )


def test_a_regular_file_is_not_a_serial_port(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0::/root:/bin/sh\n")
    message = open_error(str(path))
    assert message.startswith(f"cannot open {path}: it is not a serial port (")
    assert "ioctl" not in message and "(25," not in message
    assert path.read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_a_directory_is_not_a_serial_port(tmp_path: Path) -> None:
    message = open_error(str(tmp_path))
    assert message.startswith(f"cannot open {tmp_path}: it is a directory, not a serial port (")
    assert "Errno" not in message


def test_a_missing_device_is_still_no_such_port(tmp_path: Path) -> None:
    assert "no such port" in open_error(str(tmp_path / "ttyUSB9"))
