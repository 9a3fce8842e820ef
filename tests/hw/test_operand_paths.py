# amaranth: UnusedElaboratable=no
"""Chunk buffers feeding the MAC array: transposed reads, row scaling and causal masks, end to end.

The operands of three products of the chunk program are read from chunk buffers in the mode each
needs and streamed into the MAC array; the results must equal the golden exact products.
"""

import numpy as np
from amaranth import Elaboratable, Module
from amaranth.sim import Simulator

from deltanet_hw.config import preset
from deltanet_hw.golden.executor import masked
from deltanet_hw.golden.fixed import beta_phi
from deltanet_hw.golden.vectors import random_inputs
from deltanet_hw.hw.chunk_buffer import ChunkBuffer, ReadMode
from deltanet_hw.hw.mac_array import MacArray, Mask
from deltanet_hw.sim.amaranth_tb import stream_get, stream_put
from deltanet_hw.sim.vectors import buffer_banks, buffer_lanes


class Pair(Elaboratable):
    def __init__(self, *blocks):
        self.blocks = blocks

    def elaborate(self, platform):
        m = Module()
        for n, b in enumerate(self.blocks):
            m.submodules[f"b{n}"] = b
        return m


def test_buffer_modes_feed_the_products():
    cfg = preset("tiny")
    C, R = cfg.chunk_size, cfg.array_rows
    x = random_inputs(cfg, C, seed=5)
    words = beta_phi(cfg, x["q"], x["k"], x["v"], x["beta_logits"], None, x["conv_weights"])
    Q, K, V = (words[n][0, :, 0] for n in ("q", "k", "v"))  # [C, d] raw words of head 0
    beta = words["beta"][0, :, 0]
    width = max(cfg.fmt_qk.width, cfg.fmt_v.width, cfg.fmt_beta.width)
    bufs = {n: ChunkBuffer(C, cfg.d_k, R, width) for n in ("Q", "K", "V", "beta")}
    mac = MacArray(R, cfg.array_cols, width, width, 48)
    got = {}

    async def read(ctx, buf, mode, i, j, lane=0):
        await stream_put(ctx, buf.rd_cmd, {"mode": mode, "i": i, "j": j, "lane": lane})
        return buffer_lanes(await stream_get(ctx, buf.rd_data), R)

    async def product(ctx, name, steps, mask=Mask.FULL, row0=0, col0=0):
        for k, (a_read, b_read) in enumerate(steps):
            a = await read(ctx, *a_read)
            b = await read(ctx, *b_read)
            ctx.set(mac.b.payload, {"data": b})
            ctx.set(mac.b.valid, 1)
            await stream_put(
                ctx,
                mac.a,
                {
                    "data": a,
                    "last": int(k == len(steps) - 1),
                    "mask": mask,
                    "row0": row0,
                    "col0": col0,
                },
            )
            ctx.set(mac.b.valid, 0)
        got[name] = [[int(v) for v in (await stream_get(ctx, mac.c)).data] for _ in range(R)]

    async def tb(ctx):
        for name, mat in (("Q", Q), ("K", K), ("V", V), ("beta", beta[:, None])):
            for i in range(C):
                for j in range(0, mat.shape[1], R):
                    seg = mat[i, j : j + R]
                    await stream_put(
                        ctx,
                        bufs[name].wr,
                        {
                            "mode": ReadMode.ROW,
                            "i": i,
                            "j": j,
                            "data": buffer_banks(seg, i, j, R),
                        },
                    )
        r0, c0 = 4, 8
        B = ReadMode
        # K^T V (the state update's shape): A from transposed (ROW) reads of K
        await product(
            ctx, "KtV", [((bufs["K"], B.ROW, k, r0), (bufs["V"], B.ROW, k, c0)) for k in range(C)]
        )
        # diag(beta) V (row scaling): A from DIAG reads of the beta column
        await product(
            ctx,
            "bV",
            [((bufs["beta"], B.DIAG, r0, 0, k), (bufs["V"], B.ROW, r0 + k, c0)) for k in range(R)],
        )
        # causal Q K^T: A from COLUMN reads of Q, B from COLUMN reads of K, lower mask at (8, 4)
        await product(
            ctx,
            "QKt",
            [((bufs["Q"], B.COLUMN, 8, k), (bufs["K"], B.COLUMN, 4, k)) for k in range(cfg.d_k)],
            Mask.LOWER,
            8,
            4,
        )

    sim = Simulator(Pair(mac, *bufs.values()))
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    r0, c0 = 4, 8
    np.testing.assert_array_equal(got["KtV"], (K.T @ V)[r0 : r0 + R, c0 : c0 + R])
    np.testing.assert_array_equal(got["bV"], beta[r0 : r0 + R, None] * V[r0 : r0 + R, c0 : c0 + R])
    np.testing.assert_array_equal(got["QKt"], masked((Q @ K.T)[8:12, 4:8], "lower", 8, 4))
