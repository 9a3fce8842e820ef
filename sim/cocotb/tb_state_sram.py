"""cocotb test of the generated state SRAM Verilog: write a golden state, read it back."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from deltanet_hw.sim.cocotb.streams import check_reads, write_then_read
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import state_sram_vectors


@cocotb.test(timeout_time=2000, timeout_unit="ms")
async def write_then_read_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    v = state_sram_vectors(p["config"], p["seed"])
    layouts = (v.addr_layout, v.row_layout, v.write_layout)
    got = await write_then_read(
        dut, layouts, v.writes, v.reads, np.random.default_rng(p["seed"]), p["stall_p"]
    )
    bad = check_reads(dut, f"{p['config']} seed {p['seed']}", got, v.expected, v.reads)
    assert bad == 0, f"{bad} mismatching words"
