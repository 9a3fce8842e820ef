# amaranth: UnusedElaboratable=no
"""State SRAM: a golden state written and read back, Amaranth simulator and generated Verilog."""

import numpy as np
import pytest

from deltanet_hw.config import preset
from deltanet_hw.hw.state_sram import StateSram
from deltanet_hw.sim.amaranth_tb import write_then_read
from deltanet_hw.sim.runner import available_simulators, run_cocotb, write_verilog
from deltanet_hw.sim.vectors import state_sram_vectors


@pytest.mark.parametrize("config", ["tiny", "ice40"])
def test_state_round_trip_under_stalls(config):
    cfg = preset(config)
    dut = StateSram.from_config(cfg)
    v = state_sram_vectors(config, seed=1)
    got = write_then_read(dut, v.writes, v.reads, dut.lanes, np.random.default_rng(1))
    for n, (g, e, a) in enumerate(zip(got, v.expected, v.reads, strict=True)):
        assert g == e.tolist(), f"{config}: read {n} at {a}: expected {e.tolist()}, got {g}"


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_state_sram_rtl(simulator, tmp_path):
    if simulator not in available_simulators():
        pytest.skip(f"{simulator} not installed")
    cfg = preset("tiny")
    v = write_verilog(StateSram.from_config(cfg), "state_sram", tmp_path / "state_sram.v", cfg)
    run_cocotb(
        verilog=v,
        toplevel="state_sram",
        module="deltanet_hw.sim.cocotb.tb_state_sram",
        simulator=simulator,
        build_dir=tmp_path / "build",
        params={"config": "tiny", "seed": 2, "stall_p": 0.3},
    )


def test_bad_parameters():
    with pytest.raises(ValueError, match="lanes must be an integer >= 1"):
        StateSram(2, 16, 16, 0, 32)
