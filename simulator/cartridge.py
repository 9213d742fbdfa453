"""Needle cartridges as the firmware sees them: identity, expiry, needles, single use."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_protocol.messages import NeedleLayout

from .profiles import PenProfile


@dataclass(frozen=True, slots=True)
class Cartridge:
    cartridge_id: str
    lot: str
    needle_length_um: int
    layout: NeedleLayout
    needles_um: tuple[tuple[int, int], ...]
    expiry_day: int = 0  # days since 1970-01-01; 0: no expiry

    @property
    def needle_count(self) -> int:
        return len(self.needles_um)

    @classmethod
    def for_profile(
        cls, profile: PenProfile, cartridge_id: str, lot: str = "LOT-SIM-0001", expiry_day: int = 0
    ) -> Cartridge:
        """A fresh cartridge that fits ``profile``."""
        return cls(
            cartridge_id=cartridge_id,
            lot=lot,
            needle_length_um=profile.needle_length_um,
            layout=profile.needle_layout,
            needles_um=profile.needle_positions_um(),
            expiry_day=expiry_day,
        )
