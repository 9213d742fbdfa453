"""The `pen` command as a user meets it: output, and one-line errors with no traceback."""

from __future__ import annotations

import io
import os
import tty

import pytest

from pendriver import cli
from simulator.background import ServedPen


def run_pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def test_info_without_port_uses_the_simulator_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_pen(["info"], capsys)
    assert code == 0
    assert "built-in simulator (sim://)" in err
    assert "PD-3000" in out
    assert "0.2-3 mm in 0.1 mm steps" in out


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_info_over_a_served_port(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen(kind, profile="six-needle", serial_number="SN-4242") as served:  # type: ignore[arg-type]
        code, out, err = run_pen(["--port", served.url, "info"], capsys)
        code2, out2, _ = run_pen(["info", "--port", served.url], capsys)
    assert code == code2 == 0
    assert "simulator" not in err
    assert "PD-1500" in out and "SN-4242" in out
    assert out2 == out


def test_set_depth_reports_and_reaches_the_pen(capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen("tcp") as served:
        code, out, _ = run_pen(["--port", served.url, "set-depth", "1.5"], capsys)
        assert served.call(lambda: served.firmware.depth_setpoint_um) == 1500
    assert code == 0
    assert "depth set to 1.5 mm" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set-depth", "4"], "depth 4 mm is above this pen's maximum of 3 mm"),
        (["set-depth", "0.25"], "not a setting of this pen"),
        (["--port", "/dev/does-not-exist-0", "info"], "no such port"),
        (["--port", "sim://no-such-profile", "info"], "unknown pen profile"),
        (
            ["run", "--depth", "0.5", "--rate", "200", "--seconds", "1"],
            "above this pen's maximum of 150 Hz",
        ),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(argv, capsys)
    assert code == cli.EXIT_ERROR
    lines = [line for line in err.splitlines() if not line.startswith("pen: no --port")]
    assert len(lines) == 1, err
    assert lines[0].startswith("pen: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_a_port_where_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        code, _, err = run_pen(["--port", os.ttyname(slave), "info"], capsys)
    finally:
        os.close(master)
        os.close(slave)
    assert code == cli.EXIT_ERROR
    assert err.count("\n") == 1
    assert "no answer from a pen" in err


def test_refused_by_the_pen(capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen("tcp", insert_default_cartridge=False) as served:
        code, _, err = run_pen(
            ["--port", served.url, "run", "--depth", "0.5", "--rate", "100", "--seconds", "1"],
            capsys,
        )
    assert code == cli.EXIT_ERROR
    assert "pen: error: the pen refused START: NO_CARTRIDGE" in err


def test_run_shows_live_telemetry_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen("pty") as served:
        code, out, _ = run_pen(
            ["--port", served.url, "run", "--depth", "1.0", "--rate", "100", "--seconds", "1.2"],
            capsys,
        )
        state = served.call(lambda: served.firmware.state)
    assert code == 0
    assert "running at 1 mm, 100 Hz for 1.2 s" in out
    assert "0.0/1.2 s  depth" in out and "strokes" in out  # the live line, plain on a pipe
    assert "pass summary" in out
    assert "set 1.00 mm" in out
    assert "faults          none" in out
    assert state.name == "IDLE"  # the pass ends with the motor stopped


def test_demo_runs_a_pass_on_the_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pen(["demo"], capsys)
    assert code == 0
    assert "built-in simulator" in err
    assert "model          PD-3000" in out
    assert "running at 0.5 mm, 120 Hz for 3 s" in out
    assert "pass summary" in out


def test_pen_capture_then_decode(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    capture = Path(str(tmp_path)) / "bench.jsonl"
    code, _, _ = run_pen(["--capture", str(capture), "set-depth", "0.7"], capsys)
    assert code == 0
    code, out, _ = run_pen(["decode", str(capture), "--only", "SET_DEPTH,ACK"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert "host → pen" in lines[0] and "SET_DEPTH depth_um=700" in lines[0]
    assert "pen → host" in lines[1] and "ACK (answer) request_id=18" in lines[1]
    assert len(lines) == 2


def test_decode_reports_a_damaged_capture_line(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    capture = Path(str(tmp_path)) / "bad.jsonl"
    capture.write_text('{"t": 0.1, "dir": "h2p", "hex": "0102"}\n{"t": 0.2, "dir": "sideways"}\n')
    code, _, err = run_pen(["decode", str(capture)], capsys)
    assert code == cli.EXIT_ERROR
    assert "bad.jsonl, line 2: dir must be one of h2p, p2h" in err


def test_decode_shows_corrupted_frames_as_such(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from firmware_protocol import Endpoint, cobs_decode, cobs_encode
    from firmware_protocol import messages as m
    from firmware_protocol.capture import format_record

    body = bytearray(cobs_decode(Endpoint().send(m.SetDepth(500)).data[:-1]))
    body[7] ^= 0x04  # a bit of the payload flipped on the way; the CRC no longer matches
    frame = cobs_encode(bytes(body)) + b"\x00"
    capture = Path(str(tmp_path)) / "noisy.jsonl"
    capture.write_text(format_record(1.5, "h2p", frame) + "\n")
    code, out, _ = run_pen(["decode", str(capture)], capsys)
    assert code == 0
    assert "!! bad CRC" in out


def test_sim_url_moves_the_tip_along_a_trajectory() -> None:
    import asyncio
    from collections.abc import AsyncIterator

    import pendriver

    url = (
        "sim://?telemetry_hz=20&trajectory="
        "raster:width_mm=40,height_mm=30,glide_mm_s=20,tip_width_mm=8,overlap=0.25"
    )

    async def body() -> list[tuple[float, float]]:
        async with pendriver.connect(url) as pen, pen.telemetry() as stream:
            return [(s.tip_x_mm, s.tip_y_mm) async for s in _first(stream, 30)]

    async def _first(
        stream: pendriver.Subscription[pendriver.TelemetrySample], n: int
    ) -> AsyncIterator[pendriver.TelemetrySample]:
        count = 0
        async for sample in stream:
            yield sample
            count += 1
            if count == n:
                return

    points = asyncio.run(body())
    xs = [x for x, _ in points]
    assert max(xs) - min(xs) > 10  # it glides along the first raster line
    assert all(3.9 <= y <= 4.1 for _, y in points)  # half a tip width in from the zone's edge


def test_run_with_a_zone_maps_density_live_and_warns_of_over_treatment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_pen(
        [
            "run",
            "--zone",
            "20x10",
            "--depth",
            "0.5",
            "--rate",
            "120",
            "--seconds",
            "1.5",
            "--max",
            "3000",
        ],
        capsys,
    )
    assert code == 0, err
    assert "trajectory=raster:width_mm=20,height_mm=10" in err  # the sim glides over the zone
    assert "density over 20 x 10 mm" in out
    assert "treated area" in out and "over-treated" in out
    assert "!! over-treatment, region 1, at x=" in out


def test_density_from_a_capture_writes_stats_and_a_heatmap(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    capture = Path(str(tmp_path)) / "pass.jsonl"
    url = (
        "sim://?telemetry_hz=100&trajectory="
        "raster:width_mm=20,height_mm=10,glide_mm_s=20,tip_width_mm=2,overlap=0.1"
    )
    code, _, err = run_pen(
        [
            "--port",
            url,
            "--capture",
            str(capture),
            "run",
            "--zone",
            "20x10",
            "--depth",
            "0.5",
            "--rate",
            "120",
            "--seconds",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run_pen(["density", str(capture), "--zone", "20x10"], capsys)
    assert code == 0, err
    assert "16 needles" in out  # taken from the CARTRIDGE answer in the capture
    assert "punctures" in out and "uniformity" in out
    png = Path(f"{capture}.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_pen(["density", str(capture), "--zone", "20by10"], capsys)
    assert code == cli.EXIT_USAGE and "zone must be WxH" in err
    assert err.splitlines() == [
        "pen: error: argument --zone: zone must be WxH or WxH@X,Y in mm (e.g. 40x30), "
        "got '20by10' (see: pen density --help)"
    ]


def test_density_of_a_capture_appended_to_by_two_runs_maps_both(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # --capture appends, and each sim:// pen's clock starts at 0: the file holds two runs
    # whose times overlap. Each is mapped on its own and the counts add up to both passes.
    import re
    from pathlib import Path

    capture = Path(str(tmp_path)) / "two.jsonl"
    url = (
        "sim://?telemetry_hz=100&trajectory="
        "raster:width_mm=20,height_mm=10,glide_mm_s=20,tip_width_mm=2,overlap=0.1"
    )
    argv = ["--port", url, "--capture", str(capture), "run", "--zone", "20x10", "--rate", "120"]
    strokes_each = []
    for _ in range(2):
        code, out, err = run_pen([*argv, "--depth", "0.5", "--seconds", "1"], capsys)
        assert code == 0, err
        code, out, err = run_pen(["density", str(capture), "--zone", "20x10"], capsys)
        assert code == 0, err
        found = re.search(r"(\d+) strokes", out)
        assert found is not None
        strokes_each.append(int(found[1]))
    assert "in 2 runs of the pen's clock" in out
    assert strokes_each[1] > 1.8 * strokes_each[0] > 0  # the second run added, nothing lost
    punctures = re.search(r"punctures\s+(\d+) in the grid, (\d+) outside", out)
    assert punctures is not None
    assert int(punctures[1]) + int(punctures[2]) <= strokes_each[1] * 16
