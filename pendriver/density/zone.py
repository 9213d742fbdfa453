"""A treatment zone: the rectangle of skin a pass is meant to cover, as an operator types it.

No numpy here: the command line parses ``--zone`` before it knows whether it will map anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .grid import Grid

REACH_MM: Final = 1000.0
"""How far from the origin (either axis) a zone's corners may lie: a metre covers any body.
The same figure as the simulator's ``simulator.trajectory.REACH_MM`` (not imported: the driver
does not depend on the simulator). A zone beyond it is a units mistake (µm given as mm), and
every puncture of a pass would fall outside it."""


@dataclass(frozen=True, slots=True)
class Zone:
    """A rectangular treatment zone in mm, lower-left corner at ``origin_mm``."""

    width_mm: float
    height_mm: float
    origin_mm: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def parse(cls, text: str) -> Zone:
        """``WxH`` or ``WxH@X,Y`` in mm, e.g. ``40x30`` or ``40x30@-20,-15``; ValueError with
        the expected form otherwise."""
        size, _, at = text.partition("@")
        try:
            w, h = (float(v) for v in size.lower().split("x"))
            origin = (0.0, 0.0)
            if at:
                ox, oy = (float(v) for v in at.split(","))
                origin = (ox, oy)
        except ValueError:
            raise ValueError(
                f"zone must be WxH or WxH@X,Y in mm (e.g. 40x30), got {text!r}"
            ) from None
        if not all(math.isfinite(v) for v in (w, h, *origin)):
            raise ValueError(f"zone must be finite numbers of mm, got {text!r}")
        if not (w > 0 and h > 0):
            raise ValueError(f"zone must have a positive width and height, got {text!r}")
        far = max(abs(v) for v in (*origin, origin[0] + w, origin[1] + h))
        if far > REACH_MM:
            raise ValueError(
                f"zone {text!r} has a corner {far:g} mm from the origin, beyond the "
                f"±{REACH_MM:g} mm a pen can be moved over (mm, not µm?)"
            )
        return cls(w, h, origin)

    def grid(self, cell_mm: float) -> Grid:
        from .grid import Grid

        return Grid(
            origin_mm=self.origin_mm, size_mm=(self.width_mm, self.height_mm), cell_mm=cell_mm
        )

    @property
    def rect_mm(self) -> tuple[float, float, float, float]:
        return (self.origin_mm[0], self.origin_mm[1], self.width_mm, self.height_mm)

    def as_dict(self) -> dict[str, float]:
        return {
            "width_mm": self.width_mm,
            "height_mm": self.height_mm,
            "x_mm": self.origin_mm[0],
            "y_mm": self.origin_mm[1],
        }
