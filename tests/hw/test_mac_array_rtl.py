# amaranth: UnusedElaboratable=no
"""The MAC array's generated Verilog under cocotb on Icarus and Verilator."""

import pytest

from deltanet_hw.config import preset
from deltanet_hw.hw.mac_array import MacArray
from deltanet_hw.sim.runner import available_simulators, run_cocotb, write_verilog

SIMS = available_simulators()


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("config", ["tiny", "ice40"])
def test_mac_array_rtl(simulator, config, tmp_path):
    if simulator not in SIMS:
        pytest.skip(f"{simulator} not installed")
    cfg = preset(config)
    dut = MacArray.from_config(cfg)
    v = write_verilog(dut, "mac_array", tmp_path / "mac_array.v", cfg)
    run_cocotb(
        verilog=v,
        toplevel="mac_array",
        module="deltanet_hw.sim.cocotb.tb_mac_array",
        simulator=simulator,
        build_dir=tmp_path / "build",
        params={
            "rows": dut.rows,
            "cols": dut.cols,
            "a_width": dut.a_width,
            "b_width": dut.b_width,
            "acc_width": dut.acc_width,
            "seed": 5,
            "tiles": 25,
            "k_range": [1, 20],
            "stall_p": 0.3,
            "label": config,
        },
    )
