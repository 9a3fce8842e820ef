"""Cycle model of the core: cycles of a run predicted from the microcode and the config alone.

It walks the same tiles the scheduler issues (:func:`deltanet_hw.hw.microcode.tiles`) with the
timing rules of the hardware, without simulating signals:

* the fetch issues one step per cycle; a step reaches the array ``FETCH_LATENCY`` cycles later;
* the MAC array accepts a tile's last step only ``min_tile_steps`` cycles after the previous
  tile's last step (its results must have left), otherwise one step per cycle;
* a tile's results are written ``array.latency + R + EPILOGUE_STAGES`` cycles after its last
  step; an instruction marked ``wait`` (and every solve row) issues its first step
  ``RESTART`` cycles after the last write it waits for;
* chunks: chunk n computes when it is loaded (one input word per cycle through BetaPhi, whose
  words per cycle and latency are those of the block) and the output half is free; outputs leave
  one word per cycle.

Figures (ARCHITECTURE.md section 4): ``utilization`` = minimal MACs (ALGORITHM.md section 6,
triangles skipped) / (multipliers x cycles); ``efficiency`` = 3 K V x tokens x heads /
(multipliers x cycles); ``tokens_per_cycle``. Multipliers = the array's R x C.
"""

from __future__ import annotations

from functools import cache

from ..hw.mac_array import MacArray
from ..hw.microcode import core_program, tiles

__all__ = ["figures", "minimal_macs", "predict_chunk", "predict_run"]

FETCH_LATENCY = 3  # issue -> read data -> step FIFO -> array
EPILOGUE_STAGES = 5  # drained row -> written
RESTART = 1  # last write -> next step issued
BETA_PHI_LATENCY = 40  # first input word -> first word in the chunk buffers (beta/phi pipeline)
OUTPUT_LATENCY = 2


def minimal_macs(cfg, tokens: int, heads: int, mode: str) -> int:
    """MACs the algorithm minimally needs (ALGORITHM.md section 6; triangles skipped)."""
    K, V = cfg.d_k, cfg.d_v
    if mode == "recurrent":
        return 3 * K * V * tokens * heads
    total = 0
    for lo in range(0, tokens, cfg.chunk_size):
        m = min(cfg.chunk_size, tokens - lo)
        tri = m * (m + 1) // 2
        total += (
            K * m * (m - 1) // 2  # K K^T, strict lower
            + (m - 2) * (m - 1) * m // 6 * (m >= 2)  # forward substitution
            + (K + V) * tri  # W, U
            + K * tri  # Q K^T, lower
            + V * tri  # (Q K^T) Vn
            + 3 * K * V * m  # W S, Q S, K^T Vn
        )
    return total * heads


def figures(cfg, tokens: int, heads: int, cycles: int, mode: str = "chunk") -> dict:
    mults = cfg.array_rows * cfg.array_cols
    return {
        "multipliers": mults,
        "utilization": minimal_macs(cfg, tokens, heads, mode) / (mults * cycles),
        "efficiency": 3 * cfg.d_k * cfg.d_v * tokens * heads / (mults * cycles),
        "tokens_per_cycle": tokens / cycles,
    }


@cache
def _array(cfg):
    arr = MacArray.from_config(cfg)
    arr._MustUse__silence = True  # only its timing is read (Amaranth's unused-elaboratable check)
    return arr


def predict_chunk(cfg, m: int, heads: int, mode: str) -> tuple[int, dict]:
    """Cycles the scheduler spends on one chunk of ``m`` rows, and per instruction."""
    arr = _array(cfg)
    lat = arr.latency + cfg.array_rows + EPILOGUE_STAGES
    instrs = core_program(cfg, mode)
    t = 0  # next free issue cycle
    last_step = -(10**9)  # array cycle of the previous tile's last step
    written = 0  # cycle the latest issued tile is written
    per_op: dict[str, int] = {}
    for ins in instrs:
        begin = t
        if ins.wait:
            t = max(t, written + RESTART)
        prev_row = None
        for _h, _i0, _j0, row, _term, k_lo, k_hi in tiles(cfg, ins, m, heads):
            if ins.solve and prev_row is not None and row != prev_row:
                t = max(t, written + RESTART)
            prev_row = row
            # array cycle of the last step: steps back to back, but not before the drain
            arrive = t + FETCH_LATENCY + k_hi - k_lo - 1
            last = max(arrive, last_step + arr.min_tile_steps)
            t = last - FETCH_LATENCY + 1
            last_step = last
            written = last + lat
        per_op[ins.name] = per_op.get(ins.name, 0) + t - begin
    end = written + 1
    return end, per_op


def predict_run(cfg, tokens: int, heads: int, mode: str) -> dict:
    """Predicted cycles of one run (first input accepted to last output sent, inclusive)."""
    step = cfg.chunk_size if mode == "chunk" else 1
    words = heads * (1 + 2 * cfg.d_k + cfg.d_v)
    loaded = []  # cycle chunk n is in the buffers
    t_in = 0
    compute_end = []
    out_end = []
    op_cycles: dict[str, int] = {}
    chunks = [(lo, min(step, tokens - lo)) for lo in range(0, tokens, step)]
    for n, (_lo, m) in enumerate(chunks):
        # the loader waits for its half to be free (chunk n - 2 computed)
        start_load = max(t_in, compute_end[n - 2] if n >= 2 else 0)
        t_in = start_load + m * words
        loaded.append(t_in + BETA_PHI_LATENCY)
        begin = max(loaded[n], compute_end[n - 1] if n else 0, out_end[n - 2] if n >= 2 else 0)
        length, per_op = predict_chunk(cfg, m, heads, mode)
        for name, c in per_op.items():
            op_cycles[name] = op_cycles.get(name, 0) + c
        compute_end.append(begin + length)
        out_start = max(compute_end[n], out_end[n - 1] if n else 0)
        out_end.append(out_start + OUTPUT_LATENCY + m * heads * cfg.d_v)
    return {"cycles": out_end[-1], "op_cycles": op_cycles}
