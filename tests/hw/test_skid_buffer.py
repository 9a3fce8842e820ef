# amaranth: UnusedElaboratable=no
"""Skid buffer: every word through, in order, under random stalls on both sides; full
throughput; ready and valid from flip-flops."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from deltanet_hw.hw.skid_buffer import SkidBuffer


def _run(p_valid, p_ready, words=400, seed=0):
    """Offer ``words`` words (valid with probability ``p_valid`` per cycle) and take them (ready
    with ``p_ready``): the words received and the cycles it took."""
    dut = SkidBuffer(16)
    rng = np.random.default_rng(seed)
    got, cycles = [], [0]

    async def bench(ctx):
        sent = 0
        while len(got) < words:
            offer = sent < words and rng.random() < p_valid
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, sent if offer else 0xDEAD)
            ready_before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 0)
            assert ctx.get(dut.i.ready) == ready_before, "i.ready follows o.ready in its cycle"
            ctx.set(dut.o.ready, rng.random() < p_ready)
            _, _, iv, ir, ov, orr, op = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload
            )
            sent += bool(iv and ir)
            if ov and orr:
                got.append(op)
            cycles[0] += 1
            assert cycles[0] < 50 * words, f"stuck after {len(got)} words"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles[0]


@pytest.mark.parametrize("p_valid, p_ready", [(1.0, 0.5), (0.5, 1.0), (0.7, 0.3), (0.3, 0.7)])
def test_words_in_order_under_stalls(p_valid, p_ready):
    got, _ = _run(p_valid, p_ready, seed=int(p_valid * 10 + p_ready * 100))
    for n, word in enumerate(got):
        assert word == n, f"p_valid {p_valid} p_ready {p_ready}: word {n}: got {word}"


def test_full_throughput():
    got, cycles = _run(1.0, 1.0, words=200)
    assert got == list(range(200))
    assert cycles == 201  # one cycle of latency, then one word per cycle
