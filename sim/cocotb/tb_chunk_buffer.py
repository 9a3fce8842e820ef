"""cocotb test of the generated chunk buffer Verilog: golden words written, read in every mode."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock

from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import chunk_buffer_vectors


@cocotb.test(timeout_time=2000, timeout_unit="ms")
async def reads_in_every_mode_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    v = chunk_buffer_vectors(p["config"], p["rows"], p["cols"], p["lanes"], p["seed"])
    cmd_layout, row_layout, write_layout = v.layouts
    rng = np.random.default_rng(p["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    wr = StreamDriver(dut, "wr", write_layout, rng, p["stall_p"])
    cmd = StreamDriver(dut, "rd_cmd", cmd_layout, rng, p["stall_p"])
    out = StreamMonitor(dut, "rd_data", row_layout, rng, p["stall_p"])
    await reset(dut)
    await wr.send(v.writes)
    cocotb.start_soon(cmd.send(v.reads))
    got = await out.recv(len(v.reads))
    bad = 0
    for n, (beat, want, r) in enumerate(zip(got, v.expected, v.reads, strict=True)):
        for lane, e in enumerate(want):
            if int(beat[lane]) != int(e):
                bad += 1
                dut._log.error(
                    f"{p['config']} seed {p['seed']}: read {n} {r['mode'].name} "
                    f"i={r['i']} j={r['j']} lane {lane}: expected {e}, "
                    f"got {int(beat[lane])}"
                )
    assert bad == 0, f"{bad} mismatching words"
