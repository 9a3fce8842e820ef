"""cocotb test of the generated BetaPhi Verilog: every word against the golden beta/phi stages."""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock

from deltanet_hw.config import CoreConfig
from deltanet_hw.hw.beta_phi import beta_phi_layouts
from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import beta_phi_vectors


@cocotb.test(timeout_time=5000, timeout_unit="ms")
async def golden_words_under_stalls(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    cfg = CoreConfig.from_json(Path(p["config_json"]).read_text())
    word_in, word_out, conv = beta_phi_layouts(cfg)
    v = beta_phi_vectors(cfg, p["tokens"], p["seed"])
    rng = np.random.default_rng(p["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    conv_wr = StreamDriver(dut, "conv_wr", conv, rng)
    src = StreamDriver(dut, "i", word_in, rng, p["stall_p"])
    sink = StreamMonitor(dut, "o", word_out, rng, p["stall_p"])
    await reset(dut)
    await conv_wr.send(v.conv_writes)
    cocotb.start_soon(src.send(v.words))
    got = await sink.recv(len(v.expected))
    bad = 0
    for n, (beat, want) in enumerate(zip(got, v.expected, strict=True)):
        g = (beat.kind, int(beat.head), int(beat.chan), int(beat.last), int(beat.data))
        e = want
        if g != e:
            bad += 1
            dut._log.error(
                f"{cfg.name} seed {p['seed']}: word {n} kind {want[0].name} head "
                f"{e[1]} index {e[2]}: expected {e}, got {g}"
            )
    assert bad == 0, f"{bad} mismatching words"
    assert int(dut.saturated.value) == 0, "saturated set on in-range inputs"
