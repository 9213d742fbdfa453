"""What a clinic and an engineer want to know about a density map, per pass or summed over passes.

Pure arrays in, one frozen record out. The *treated area* is the cells that received at least
one puncture; the distribution figures (mean, median, p95, max, uniformity) are taken over the
treated cells inside the zone, because untreated skin outside the pen's path is not "low
density", it is not part of the treatment. Uniformity is the coefficient of variation
(std / mean): 0 is perfectly even, higher is patchier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class DensityStats:
    punctures: int
    """Punctures counted in the grid (inside and outside the zone)."""
    punctures_outside_zone: int
    """Punctures that landed outside the zone, including off the grid altogether."""
    treated_area_cm2: float
    """Zone area that received at least one puncture."""
    target_area_cm2: float
    """Zone area at or above the target density (0 when no target is given)."""
    over_treated_area_cm2: float
    """Zone area above the maximum density (0 when no maximum is given)."""
    zone_area_cm2: float
    mean_per_cm2: float
    median_per_cm2: float
    p95_per_cm2: float
    max_per_cm2: float
    uniformity_cv: float
    """Coefficient of variation of density over the treated zone (0: perfectly even)."""

    @property
    def coverage(self) -> float:
        """Share of the zone that was treated at all (0-1)."""
        return self.treated_area_cm2 / self.zone_area_cm2 if self.zone_area_cm2 else 0.0

    def lines(self) -> list[str]:
        """Label / value lines for a pass summary."""
        return [
            f"  punctures       {self.punctures} in the grid, "
            f"{self.punctures_outside_zone} outside the zone",
            f"  treated area    {self.treated_area_cm2:.2f} of {self.zone_area_cm2:.2f} cm² "
            f"({100 * self.coverage:.0f} %)",
            f"  density         mean {self.mean_per_cm2:.0f}, median {self.median_per_cm2:.0f}, "
            f"p95 {self.p95_per_cm2:.0f}, max {self.max_per_cm2:.0f} /cm²",
            f"  uniformity      CV {self.uniformity_cv:.2f}",
            f"  at target       {self.target_area_cm2:.2f} cm²",
            f"  over-treated    {self.over_treated_area_cm2:.2f} cm²",
        ]


def density_stats(
    counts: NDArray[np.integer],
    cell_area_cm2: float,
    *,
    zone: NDArray[np.bool_] | None = None,
    outside_grid: int = 0,
    target_per_cm2: float | None = None,
    max_per_cm2: float | None = None,
) -> DensityStats:
    """Statistics of a count map (``counts[y, x]``) whose cells are ``cell_area_cm2`` each.

    ``zone`` marks the cells of the treatment zone (default: the whole grid); punctures that
    fell off the grid altogether are ``outside_grid`` and count as outside the zone.
    """
    if cell_area_cm2 <= 0:
        raise ValueError(f"cell area must be positive, got {cell_area_cm2!r}")
    if zone is None:
        zone = np.ones(counts.shape, dtype=bool)
    elif zone.shape != counts.shape:
        raise ValueError(f"zone mask {zone.shape} does not match the map {counts.shape}")
    inside = counts[zone]
    density = inside.astype(np.float64) / cell_area_cm2
    treated = density[inside > 0]
    total = int(counts.sum())
    if treated.size:
        mean = float(treated.mean())
        cv = float(treated.std() / mean) if mean else 0.0
        median, p95, peak = (float(v) for v in np.percentile(treated, [50, 95, 100]))
    else:
        mean = cv = median = p95 = peak = 0.0
    return DensityStats(
        punctures=total,
        punctures_outside_zone=total - int(inside.sum()) + int(outside_grid),
        treated_area_cm2=float(treated.size * cell_area_cm2),
        target_area_cm2=(
            float(np.count_nonzero(density >= target_per_cm2) * cell_area_cm2)
            if target_per_cm2 is not None
            else 0.0
        ),
        over_treated_area_cm2=(
            float(np.count_nonzero(density > max_per_cm2) * cell_area_cm2)
            if max_per_cm2 is not None
            else 0.0
        ),
        zone_area_cm2=float(inside.size * cell_area_cm2),
        mean_per_cm2=mean,
        median_per_cm2=median,
        p95_per_cm2=p95,
        max_per_cm2=peak,
        uniformity_cv=cv,
    )
