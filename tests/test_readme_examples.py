"""Issue 12, item 11: the README's Python examples work on any pen, not only a fresh one.

A pen on a bench has been up for hours and its stroke counter holds every stroke since it was
made; examples that compared ``time_s`` or ``stroke_count`` with a constant stopped after one
sample there. The examples are taken from README.md as they are printed and run against such
a pen: the async one on virtual time, the sync one over a real TCP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pendriver import Pen
from pendriver.testing.virtual import VirtualPen
from simulator.background import ServedPen

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(starts_with: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
    (block,) = [b for b in blocks if b.lstrip().startswith(starts_with)]
    return str(block)


def _up_for_a_while(vp: VirtualPen) -> None:
    """Ten minutes of uptime, a thousand strokes on the counter, motor stopped again."""

    async def history() -> None:
        async with vp.connect() as pen:
            await pen.set_stroke_rate(100)
            await pen.start()
            await asyncio.sleep(10)
            await pen.stop()

    vp.run(history())
    vp.advance(590)
    assert vp.firmware.uptime_us >= 600e6 and vp.firmware.motor.strokes > 900


def test_the_async_example_runs_five_seconds_on_a_pen_that_has_been_up_a_while(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    _up_for_a_while(vp)
    code = _example("import asyncio")
    assert 'pendriver.connect("sim://")' in code and "asyncio.run(main())" in code
    code = code.replace('pendriver.connect("sim://")', "_connect()")
    code = code.replace("asyncio.run(main())", "_run(main())")

    def run(main: Coroutine[Any, Any, None]) -> None:
        vp.run(main)

    def connect() -> Pen:
        return vp.connect()

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {"_connect": connect, "_run": run, "__name__": "readme"})
    lines = printed.getvalue().splitlines()
    rate = vp.firmware.telemetry_rate_hz
    # The model line, then one line a sample for five seconds of the pen's time.
    assert len(lines) - 1 >= 5 * rate, lines[:3]
    strokes = [int(line.split()[1]) for line in lines[1:]]
    assert strokes[0] == 0 and 400 < strokes[-1] < 700, strokes[-1]  # this pass's, not the total


def test_the_sync_example_stops_after_its_own_strokes_on_a_pen_with_a_history() -> None:
    code = _example("import pendriver\n\nwith pendriver.connect_sync")
    with ServedPen("tcp") as served:
        served.call(lambda: setattr(served.firmware.motor, "strokes", 1_000_000))
        code = code.replace("socket://127.0.0.1:7001", served.url)
        exec(code, {"__name__": "readme"})
        strokes = served.call(lambda: served.firmware.motor.strokes)
        state = served.call(lambda: served.firmware.state)
    assert 1_000_300 <= strokes < 1_000_400, strokes
    assert state.name == "IDLE"
