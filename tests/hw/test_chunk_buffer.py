# amaranth: UnusedElaboratable=no
"""Chunk buffer: row, column and diagonal reads of golden words, on both test tiers."""

import numpy as np
import pytest

from deltanet_hw.hw.chunk_buffer import ChunkBuffer
from deltanet_hw.sim.amaranth_tb import write_then_read
from deltanet_hw.sim.runner import available_simulators, run_cocotb, write_verilog
from deltanet_hw.sim.vectors import buffer_lanes, chunk_buffer_vectors


@pytest.mark.parametrize(
    ("rows", "cols", "lanes"), [(16, 16, 4), (13, 10, 4), (8, 12, 2), (5, 3, 1), (27, 12, 8)]
)
def test_reads_in_every_mode_under_stalls(rows, cols, lanes):
    v = chunk_buffer_vectors("tiny", rows, cols, lanes, seed=rows + cols)
    dut = ChunkBuffer(rows, cols, lanes, v.layouts[1]["banks"].shape.elem_shape.width)
    got = write_then_read(
        dut, v.writes, v.reads, lanes, np.random.default_rng(3), words=buffer_lanes
    )
    for n, (g, e, r) in enumerate(zip(got, v.expected, v.reads, strict=True)):
        assert g == e.tolist(), (
            f"{rows}x{cols}/{lanes}: read {n} {r['mode'].name} i={r['i']} "
            f"j={r['j']} lane={r['lane']}: expected {e.tolist()}, got {g}"
        )


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_chunk_buffer_rtl(simulator, tmp_path):
    if simulator not in available_simulators():
        pytest.skip(f"{simulator} not installed")
    v = write_verilog(ChunkBuffer(16, 16, 4, 16), "chunk_buffer", tmp_path / "chunk_buffer.v")
    run_cocotb(
        verilog=v,
        toplevel="chunk_buffer",
        module="deltanet_hw.sim.cocotb.tb_chunk_buffer",
        simulator=simulator,
        build_dir=tmp_path / "build",
        params={"config": "tiny", "rows": 16, "cols": 16, "lanes": 4, "seed": 4, "stall_p": 0.3},
    )


def test_bad_parameters():
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        ChunkBuffer(16, 16, 3, 16)
