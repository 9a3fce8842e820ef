"""cocotb test of the core's boundary errors: each sets its documented flag and nothing hangs.

Checked in order on one core: START with SEQ_LEN 0 and above ``max_tokens`` (BAD_LENGTH, not
started), HEADS 0 and above the configured heads (BAD_HEADS), READ_STATE while a run is busy
(BUSY), a stream that ends mid-token (FRAMING, run aborted, START refused), then after a reset a
short sequence runs bit-exact.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from amaranth import signed
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from deltanet_hw.config import CoreConfig
from deltanet_hw.hw.beta_phi import beta_phi_layouts
from deltanet_hw.hw.core import CTRL_BITS, ERROR_BITS, REGISTERS, STATUS_BITS
from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.cocotb.tb_core import csr_read, csr_write
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import core_vectors

START = 1 << CTRL_BITS["START"]
ZERO = 1 << CTRL_BITS["ZERO_STATE"]


def _word(width):
    return data.StructLayout({"data": signed(width), "last": 1})


async def _expect(dut, label, errors=0, status_set=0, status_clear=0):
    got_e = await csr_read(dut, REGISTERS["ERRORS"])
    got_s = await csr_read(dut, REGISTERS["STATUS"])
    assert got_e == errors, f"{label}: ERRORS {got_e:#x}, expected {errors:#x}"
    assert got_s & status_set == status_set, f"{label}: STATUS {got_s:#x} lacks {status_set:#x}"
    assert not got_s & status_clear, f"{label}: STATUS {got_s:#x} has {status_clear:#x}"
    await csr_write(dut, REGISTERS["CTRL"], 1 << CTRL_BITS["CLEAR_ERRORS"])


@cocotb.test(timeout_time=10, timeout_unit="sec")
async def boundary_errors(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    cfg = CoreConfig.from_json(Path(p["config_json"]).read_text())
    rng = np.random.default_rng(0)
    Clock(dut.clk, 10, unit="ns").start()
    dut.csr__w_en.value = 0
    tok_in = StreamDriver(dut, "tok_in", _word(cfg.fmt_input.width), rng, 0.0, 100_000)
    tok_out = StreamMonitor(dut, "tok_out", _word(cfg.fmt_o.width), rng, 0.0, 100_000)
    conv_wr = StreamDriver(dut, "conv_wr", beta_phi_layouts(cfg)[2], rng)
    v = core_vectors(cfg, 4, heads=1, seed=3)
    await reset(dut)
    busy = 1 << STATUS_BITS["BUSY"]
    bit = {name: 1 << b for name, b in ERROR_BITS.items()}

    for length in (0, cfg.max_tokens + 1):
        await csr_write(dut, REGISTERS["SEQ_LEN"], length)
        await csr_write(dut, REGISTERS["CTRL"], START)
        await _expect(dut, f"SEQ_LEN {length}", bit["BAD_LENGTH"], status_clear=busy)
    await csr_write(dut, REGISTERS["SEQ_LEN"], 4)
    for heads in (0, cfg.heads + 1):
        await csr_write(dut, REGISTERS["HEADS"], heads)
        await csr_write(dut, REGISTERS["CTRL"], START)
        await _expect(dut, f"HEADS {heads}", bit["BAD_HEADS"], status_clear=busy)
    await csr_write(dut, REGISTERS["HEADS"], 1)

    # a run is busy (no tokens yet): READ_STATE and START are refused
    await csr_write(dut, REGISTERS["CTRL"], START | ZERO)
    await csr_write(dut, REGISTERS["CTRL"], 1 << CTRL_BITS["READ_STATE"])
    await _expect(dut, "READ_STATE while busy", bit["BUSY"], status_set=busy)
    await csr_write(dut, REGISTERS["CTRL"], START)
    await _expect(dut, "START while busy", bit["BUSY"], status_set=busy)

    # the stream ends mid-token: one token and a half, `last` on the half
    per_token = len(v.words) // 4
    words = [dict(w) for w in v.words[: per_token + per_token // 2]]
    words[-1]["last"] = 1
    await tok_in.send(words)
    for _ in range(10):
        await RisingEdge(dut.clk)
    aborted = 1 << STATUS_BITS["ABORTED"]
    await _expect(dut, "last mid-token", bit["FRAMING"], status_set=aborted, status_clear=busy)
    await csr_write(dut, REGISTERS["CTRL"], START)
    await _expect(dut, "START after an abort", bit["BUSY"], status_set=aborted)
    assert not int(dut.tok_in__ready.value), "tok_in ready after the abort"

    # a reset recovers: the same sequence, whole, is bit-exact
    await reset(dut)
    await conv_wr.send(v.conv_writes)
    await csr_write(dut, REGISTERS["SEQ_LEN"], 4)
    await csr_write(dut, REGISTERS["HEADS"], 1)
    await csr_write(dut, REGISTERS["CTRL"], START | ZERO)
    cocotb.start_soon(tok_in.send(v.words))
    got = await tok_out.recv(len(v.expected_o))
    bad = [n for n, (b, e) in enumerate(zip(got, v.expected_o, strict=True)) if int(b.data) != e]
    assert not bad, f"after reset: {len(bad)} mismatching words, first at {bad[0]}"
    await _expect(dut, "after reset", 0, status_set=1 << STATUS_BITS["DONE"], status_clear=busy)
