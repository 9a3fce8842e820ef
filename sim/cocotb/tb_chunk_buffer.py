"""cocotb test of the generated chunk buffer Verilog: golden words written, read in every mode."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from deltanet_hw.sim.cocotb.streams import check_reads, write_then_read
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import buffer_lanes, chunk_buffer_vectors


@cocotb.test(timeout_time=2000, timeout_unit="ms")
async def reads_in_every_mode_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    v = chunk_buffer_vectors(p["config"], p["rows"], p["cols"], p["lanes"], p["seed"])
    got = await write_then_read(
        dut, v.layouts, v.writes, v.reads, np.random.default_rng(p["seed"]), p["stall_p"]
    )
    got = [buffer_lanes(beat, p["lanes"]) for beat in got]
    bad = check_reads(dut, f"{p['config']} seed {p['seed']}", got, v.expected, v.reads)
    assert bad == 0, f"{bad} mismatching words"
