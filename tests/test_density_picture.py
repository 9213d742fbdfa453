"""The PNG heatmap is a real picture of the map it was given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pendriver.density.picture import write_heatmap_png


def test_a_heatmap_png_is_written(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:40, 0:60]
    density = np.where((xx > 10) & (xx < 50) & (yy > 5) & (yy < 35), 300.0, 0.0)
    path = write_heatmap_png(
        tmp_path / "pass.png",
        density,
        origin_mm=(0.0, 0.0),
        cell_mm=0.5,
        zone_mm=(5.0, 2.5, 20.0, 15.0),
        title="pass 1",
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 200


def test_an_empty_map_still_draws(tmp_path: Path) -> None:
    path = write_heatmap_png(
        tmp_path / "empty.png", np.zeros((5, 5)), origin_mm=(-2.0, -2.0), cell_mm=1.0
    )
    assert path.stat().st_size > 1000
