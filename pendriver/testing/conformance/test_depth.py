"""Depth and the fitted cartridge (issue 12, item 2): the needles never go deeper than they are
long, whatever was set before the cartridge went in. Swapping cartridges needs hands: these
checks run against a simulated pen and skip elsewhere."""

from __future__ import annotations

import dataclasses

from firmware_protocol import messages as m
from firmware_protocol.messages import ErrorCode, PenState

from ...driver import Pen
from . import Check, ensure_startable, nack_of, needs_hands


def test_start_deeper_than_the_fitted_needles_is_refused(pen_check: Check) -> None:
    """Set the deepest depth, swap to a cartridge with shorter needles while idle: START is
    refused naming the needle length, as SET_DEPTH would be; a depth they allow runs."""

    async def body(pen: Pen) -> None:
        control = needs_hands(pen)
        await ensure_startable(pen)
        raw = pen.device_info.raw
        fitted = await pen.request(m.GetCartridge(), m.Cartridge)
        deep = min(raw.depth_max_um, fitted.needle_length_um)
        steps = (deep - raw.depth_min_um) // raw.depth_step_um
        short = raw.depth_min_um + steps // 2 * raw.depth_step_um  # on the grid, shallower
        assert short < deep
        before = await pen.status()
        await pen.request(m.SetDepth(deep), m.Ack)
        original = control.pull_cartridge()
        assert original is not None
        ident = control.firmware.fresh_cartridge_id("CONF-SHORT")
        control.fit_cartridge(
            dataclasses.replace(original, cartridge_id=ident, needle_length_um=short)
        )
        try:
            nack = await nack_of(pen, m.Start())
            assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, short)
            # SET_DEPTH is refused the same way, naming the needle length.
            nack = await nack_of(pen, m.SetDepth(deep))
            assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, short)
            assert (await pen.status()).state != PenState.RUNNING
            await pen.request(m.SetDepth(short), m.Ack)
            await pen.start()
            assert (await pen.status()).state == PenState.RUNNING
            await pen.stop()
        finally:
            await pen.stop()
            control.pull_cartridge()
            control.fit_cartridge(original)
            await pen.request(m.SetDepth(round(before.depth_setpoint_mm * 1000)), m.Ack)

    pen_check(body)
