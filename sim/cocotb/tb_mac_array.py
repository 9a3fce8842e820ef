"""cocotb test of the generated MAC array Verilog: every result word against the golden sums."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock

from deltanet_hw.hw.mac_array import mac_layouts
from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import mac_tiles


@cocotb.test(timeout_time=2000, timeout_unit="ms")
async def random_tiles_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    R, C = p["rows"], p["cols"]
    a_layout, b_layout, c_layout = mac_layouts(R, C, p["a_width"], p["b_width"], p["acc_width"])
    rng = np.random.default_rng(p["seed"])
    tiles, expected = mac_tiles(
        rng, R, C, p["a_width"], p["b_width"], p["tiles"], tuple(p["k_range"])
    )
    Clock(dut.clk, 10, unit="ns").start()
    a = StreamDriver(dut, "a", a_layout, rng, p["stall_p"])
    b = StreamDriver(dut, "b", b_layout, rng, p["stall_p"])
    c = StreamMonitor(dut, "c", c_layout, rng, p["stall_p"])
    await reset(dut)
    cocotb.start_soon(a.send([beat for t in tiles for beat in t.a_beats()]))
    cocotb.start_soon(b.send([beat for t in tiles for beat in t.b_beats()]))
    got = await c.recv(len(expected))
    mismatches = 0
    for n, (beat, want) in enumerate(zip(got, expected, strict=True)):
        assert int(beat.row) == n % R, f"{p['label']}: beat {n} has row {int(beat.row)}"
        for col in range(C):
            if int(beat.data[col]) != int(want[col]):
                mismatches += 1
                dut._log.error(
                    f"{p['label']} seed {p['seed']}: tile {n // R} row {n % R} col "
                    f"{col}: expected {int(want[col])}, got {int(beat.data[col])}"
                )
    assert mismatches == 0, f"{p['label']} seed {p['seed']}: {mismatches} mismatching words"
