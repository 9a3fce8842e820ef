"""cocotb test of the generated state SRAM Verilog: write a golden state, read it back."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock

from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import state_sram_vectors


@cocotb.test(timeout_time=2000, timeout_unit="ms")
async def write_then_read_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    v = state_sram_vectors(p["config"], p["seed"])
    rng = np.random.default_rng(p["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    wr = StreamDriver(dut, "wr", v.write_layout, rng, p["stall_p"])
    cmd = StreamDriver(dut, "rd_cmd", v.addr_layout, rng, p["stall_p"])
    out = StreamMonitor(dut, "rd_data", v.row_layout, rng, p["stall_p"])
    await reset(dut)
    await wr.send(v.writes)
    cocotb.start_soon(cmd.send(v.reads))
    got = await out.recv(len(v.reads))
    bad = 0
    for n, (beat, want, addr) in enumerate(zip(got, v.expected, v.reads, strict=True)):
        for lane, e in enumerate(want):
            if int(beat[lane]) != int(e):
                bad += 1
                dut._log.error(
                    f"{p['config']} seed {p['seed']}: read {n} head {addr['head']} "
                    f"row {addr['row']} tile {addr['tile']} lane {lane}: expected {e}, "
                    f"got {int(beat[lane])}"
                )
    assert bad == 0, f"{bad} mismatching words"
