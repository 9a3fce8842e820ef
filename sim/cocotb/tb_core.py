"""cocotb test of the generated core Verilog: sequences of tokens against the fixed-point model.

Parameters (the runner's JSON file): ``config_json``, ``sequences`` (each: ``tokens``, ``heads``,
``seed``, ``mode``, ``state`` = zero | load | keep, optional ``hazard``), ``stall_p`` (random
idle cycles on tok_in / state_in and backpressure on tok_out / state_out), ``results`` (where the
counts go as JSON). Every output word and the whole final state are compared; a mismatch names
the config, seed, token, head, index, expected and got.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from deltanet_hw.config import CoreConfig
from deltanet_hw.hw.core import CTRL_BITS, ERROR_BITS, REGISTERS, STATUS_BITS
from deltanet_hw.hw.microcode import op_counter_names
from deltanet_hw.sim.cocotb.streams import StreamDriver, StreamMonitor, reset
from deltanet_hw.sim.runner import TEST_ENV
from deltanet_hw.sim.vectors import core_vectors

MAX_WAIT = 1_000_000  # cycles any single handshake may take (a whole chunk computes meanwhile)


async def csr_write(dut, addr, value):
    dut.csr__addr.value = addr
    dut.csr__w_data.value = value
    dut.csr__w_en.value = 1
    await RisingEdge(dut.clk)
    dut.csr__w_en.value = 0


async def csr_read(dut, addr):
    dut.csr__addr.value = addr
    await RisingEdge(dut.clk)
    await ReadOnly()
    value = int(dut.csr__r_data.value)
    await RisingEdge(dut.clk)
    return value


def pack(words, width):
    """``{data, last}`` beats as payload bits (data in the low ``width`` bits, then last)."""
    mask = (1 << width) - 1
    return [(w["data"] & mask) | (w["last"] << width) for w in words]


def unpack(bits, width):
    """Payload bits -> (signed data, last)."""
    out = []
    for b in bits:
        data = b & ((1 << width) - 1)
        out.append((data - (1 << width) if data >> (width - 1) else data, b >> width))
    return out


@cocotb.test(timeout_time=100, timeout_unit="sec")  # simulated time; handshakes are bounded
async def sequences_against_model(dut):
    p = json.loads(Path(os.environ[TEST_ENV]).read_text())
    cfg = CoreConfig.from_json(Path(p["config_json"]).read_text())
    await _run(dut, p, cfg)


async def _run(dut, p, cfg):
    from amaranth import signed
    from amaranth.lib import data

    from deltanet_hw.hw.beta_phi import beta_phi_layouts

    def word(width):
        return data.StructLayout({"data": signed(width), "last": 1})

    wall0 = time.perf_counter()
    rng = np.random.default_rng(p["sequences"][0]["seed"])
    stall = p["stall_p"]
    Clock(dut.clk, 10, unit="ns").start()
    dut.csr__w_en.value = 0
    dut.csr__addr.value = 0
    conv_wr = StreamDriver(dut, "conv_wr", beta_phi_layouts(cfg)[2], rng)
    tok_in = StreamDriver(dut, "tok_in", word(cfg.fmt_input.width), rng, stall, MAX_WAIT)
    tok_out = StreamMonitor(dut, "tok_out", word(cfg.fmt_o.width), rng, stall, MAX_WAIT)
    state_in = StreamDriver(dut, "state_in", word(cfg.fmt_state.width), rng, stall)
    state_out = StreamMonitor(dut, "state_out", word(cfg.fmt_state.width), rng, stall)
    await reset(dut)
    instrs = op_counter_names(cfg)
    results = []
    bad_total = 0
    state = None
    for n, seq in enumerate(p["sequences"]):
        label = (
            f"{cfg.name} seed {seq['seed']} sequence {n} "
            f"({seq['mode']}, T={seq['tokens']}, H={seq['heads']})"
        )
        h0 = None
        if seq["state"] == "load":
            shape = (cfg.heads, cfg.d_k, cfg.d_v)
            h0 = np.random.default_rng(seq["seed"] + 1).uniform(-1, 1, shape)
        elif seq["state"] == "keep":
            h0 = cfg.fmt_state.to_float(np.asarray(state).reshape(cfg.heads, cfg.d_k, cfg.d_v))
        inputs = None
        if seq.get("hazard"):
            from deltanet_hw.golden.study import hazard_inputs

            inputs, hz_h0 = hazard_inputs(cfg, seq["hazard"], seq["tokens"], seq["seed"])
            if hz_h0 is not None:
                h0 = hz_h0[0]
        v = core_vectors(
            cfg,
            seq["tokens"],
            heads=seq["heads"],
            seed=seq["seed"],
            mode=seq["mode"],
            inputs=inputs,
            h0=h0,
        )
        await conv_wr.send(v.conv_writes)
        if h0 is not None and seq["state"] != "keep":
            n_words = len(v.state_words)
            beats = [
                {"data": w, "last": int(i == n_words - 1)} for i, w in enumerate(v.state_words)
            ]
            await state_in.send(pack(beats, cfg.fmt_state.width), packed=True)
        await csr_write(dut, REGISTERS["SEQ_LEN"], seq["tokens"])
        await csr_write(dut, REGISTERS["HEADS"], seq["heads"])
        await csr_write(dut, REGISTERS["MODE"], int(seq["mode"] == "recurrent"))
        zero = h0 is None
        ctrl = (1 << CTRL_BITS["START"]) | ((1 << CTRL_BITS["ZERO_STATE"]) if zero else 0)
        tok_in.first_time = tok_out.last_time = None
        await csr_write(dut, REGISTERS["CTRL"], ctrl)
        cocotb.start_soon(tok_in.send(pack(v.words, cfg.fmt_input.width), packed=True))
        got = unpack(await tok_out.recv(len(v.expected_o), raw=True), cfg.fmt_o.width)
        bad = 0
        for i, ((word, last), want) in enumerate(zip(got, v.expected_o, strict=True)):
            want_last = int(i == len(v.expected_o) - 1)
            if word != want or last != want_last:
                bad += 1
                if bad <= 20:
                    t, h, j = v.labels[i]
                    dut._log.error(
                        f"{label}: output token {t} head {h} index {j}: expected {want} "
                        f"(last {want_last}), got {word} (last {last})"
                    )
        for _ in range(4):
            await RisingEdge(dut.clk)
        status = await csr_read(dut, REGISTERS["STATUS"])
        errors = await csr_read(dut, REGISTERS["ERRORS"])
        cycles = await csr_read(dut, REGISTERS["CYCLES"])
        op_cycles = {
            name: await csr_read(dut, REGISTERS["OP_CYCLES"] + k) for k, name in enumerate(instrs)
        }
        assert status & (1 << STATUS_BITS["DONE"]) and not status & (1 << STATUS_BITS["BUSY"]), (
            f"{label}: STATUS {status:#x} after the last output"
        )
        measured = (tok_out.last_time - tok_in.first_time) // tok_in.period_ns + 1
        assert cycles == measured, f"{label}: CYCLES {cycles} but the testbench counted {measured}"
        want_sat = sum(v.saturations.values()) > 0
        want_errors = (1 << ERROR_BITS["SATURATED"]) if want_sat else 0
        if errors != want_errors:
            bad += 1
            dut._log.error(f"{label}: ERRORS {errors:#x}, expected {want_errors:#x}")
        await csr_write(dut, REGISTERS["CTRL"], 1 << CTRL_BITS["CLEAR_ERRORS"])
        await csr_write(dut, REGISTERS["CTRL"], 1 << CTRL_BITS["READ_STATE"])
        beats = await state_out.recv(len(v.expected_state), raw=True)
        per_head = cfg.d_k * cfg.d_v
        states = unpack(beats, cfg.fmt_state.width)
        for i, ((word, last), want) in enumerate(zip(states, v.expected_state, strict=True)):
            want_last = int(i == len(v.expected_state) - 1)
            if word != want or last != want_last:
                bad += 1
                if bad <= 40:
                    h, r = divmod(i, per_head)
                    dut._log.error(
                        f"{label}: final state head {h} row {r // cfg.d_v} column {r % cfg.d_v}: "
                        f"expected {want}, got {word} (last {last})"
                    )
        state = v.expected_state
        bad_total += bad
        results.append(
            {
                **seq,
                "mismatches": bad,
                "cycles": cycles,
                "op_cycles": op_cycles,
                "words_out": len(got),
                "saturated": want_sat,
            }
        )
        dut._log.info(f"{label}: {bad} mismatches, {cycles} cycles")
    # simulation speed: every simulated clock cycle (set-up and read-back included) per second
    speed = get_sim_time("ns") / tok_in.period_ns / (time.perf_counter() - wall0)
    for rec in results:
        rec["sim_cycles_per_s"] = speed
    Path(p["results"]).write_text(json.dumps(results, indent=1))
    assert bad_total == 0, f"{bad_total} mismatching words (first ones logged above)"
