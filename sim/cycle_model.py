"""Cycle model of the core: cycles of a run predicted from the microcode and the config alone.

It walks the same tiles the scheduler issues (:func:`deltanet_hw.hw.microcode.tiles`) with the
timing rules of the hardware, without simulating signals:

* the fetch issues one step per cycle; a step reaches the array ``FETCH_LATENCY`` cycles later;
* the MAC array accepts a tile's last step only ``min_tile_steps`` cycles after the previous
  tile's last step (its results must have left), otherwise one step per cycle;
* a tile's results are written ``array.latency + R + EPILOGUE_STAGES`` cycles after its last
  step; an instruction marked ``wait`` issues its first step ``RESTART`` cycles after the last
  write it waits for;
* the solver (hw/solver.py) is a second engine with the same rules on its 1 x C row: head h
  starts once head h's ``A`` tiles are written, each row waits for the row before; ``W`` and
  ``U`` of head h wait for head h's last solver row;
* chunks: chunk n computes when it is loaded (one input word per cycle through BetaPhi, whose
  words per cycle and latency are those of the block) and the output half is free; outputs leave
  one word per cycle.

Figures (ARCHITECTURE.md section 4): ``utilization`` = minimal MACs (ALGORITHM.md section 6,
triangles skipped) / (multipliers x cycles); ``efficiency`` = 3 K V x tokens x heads /
(multipliers x cycles); ``tokens_per_cycle``. Multipliers = the array's R x C (the solver's
extra C multipliers are counted in ``utilization_with_solver``; BetaPhi's, the loader's and the
epilogue's multipliers do scalings and nonlinear functions, not MACs of the algorithm).
"""

from __future__ import annotations

from functools import cache

from ..hw.banks import READ_LATENCY
from ..hw.core import LOADER_STAGES
from ..hw.mac_array import MacArray
from ..hw.microcode import core_program, tiles
from ..hw.scheduler import EPILOGUE_STAGES
from ..hw.solver import EPILOGUE_STAGES as SOLVER_EPILOGUE_STAGES
from ..hw.solver import Solver

__all__ = ["figures", "minimal_macs", "predict_chunk", "predict_run"]

FETCH_LATENCY = READ_LATENCY + 2  # issue -> read data -> step FIFO -> array
RESTART = 1  # last write -> next step issued
# an input word -> out of BetaPhi (the framer's skid buffer and BetaPhi's pipeline), then
# LOADER_STAGES
BETA_PHI_LATENCY = 42
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
    """ARCHITECTURE.md section 4 figures of a run; multipliers = the array's R x C.

    ``utilization_with_solver`` also counts the solver's C multipliers (hw/solver.py), which do
    the solve's MACs beside the array.
    """
    mults = cfg.array_rows * cfg.array_cols
    need = minimal_macs(cfg, tokens, heads, mode)
    return {
        "multipliers": mults,
        "utilization": need / (mults * cycles),
        "utilization_with_solver": need / ((mults + cfg.array_cols) * cycles),
        "efficiency": 3 * cfg.d_k * cfg.d_v * tokens * heads / (mults * cycles),
        "tokens_per_cycle": tokens / cycles,
    }


class _Engine:
    """Issue timing of one MAC array (the R x C array, or the solver's 1 x C row)."""

    def __init__(self, arr, epilogue_stages):
        self.min_tile = arr.min_tile_steps
        self.lat = arr.latency + arr.rows + epilogue_stages  # last step -> written
        self.t = 0  # next free issue cycle
        self.last_step = -(10**9)  # array cycle of the previous tile's last step
        self.written = 0  # cycle the latest tile is written

    def wait_writes(self):
        self.t = max(self.t, self.written + RESTART)

    def wait_until(self, cycle):
        self.t = max(self.t, cycle)

    def tile(self, steps):
        # the last step reaches the array after the others, but not before the previous drain
        arrive = self.t + FETCH_LATENCY + steps - 1
        last = max(arrive, self.last_step + self.min_tile)
        self.t = last - FETCH_LATENCY + 1
        self.last_step = last
        self.written = last + self.lat


@cache
def _arrays(cfg):
    arr = MacArray.from_config(cfg)
    row = Solver(cfg, next(i for i in core_program(cfg, "chunk") if i.solve), {}, None, None).array
    for a in (arr, row):
        a._MustUse__silence = True  # only their timing is read (Amaranth's unused check)
    return arr, row


def predict_chunk(cfg, m: int, heads: int, mode: str) -> tuple[int, dict]:
    """Cycles the scheduler spends on one chunk of ``m`` rows, and per instruction."""
    arr, row_arr = _arrays(cfg)
    main = _Engine(arr, EPILOGUE_STAGES)
    instrs = core_program(cfg, mode)
    per_op: dict[str, int] = {}
    a_written: list[int] = []  # per head: its A rows are written
    t_written: list[int] = []  # per head: its T rows are written
    solve_src = next(i.steps[0].a.buf for i in instrs if i.solve) if mode == "chunk" else None
    for ins in instrs:
        if ins.solve:  # the solver's own row of multipliers, beside the array
            solver = _Engine(row_arr, SOLVER_EPILOGUE_STAGES)
            prev = (None, None)
            for h, _i0, _j0, row, _term, k_lo, k_hi in tiles(cfg, ins, m, heads):
                if (h, row) != prev and prev[0] is not None:
                    solver.wait_writes()  # the row before is written
                if h != prev[0]:
                    if prev[0] is not None:
                        t_written.append(solver.written)
                    solver.wait_until(a_written[h] + 1)
                prev = (h, row)
                solver.tile(k_hi - k_lo)
            t_written.append(solver.written)
            per_op[ins.name] = solver.written
            continue
        begin = main.t
        if ins.wait:
            main.wait_writes()
        prev_head = None
        for h, _i0, _j0, _row, term, k_lo, k_hi in tiles(cfg, ins, m, heads):
            if prev_head is not None and h != prev_head and ins.dest == solve_src:
                a_written.append(main.written)  # the previous head's last A tile
            if ins.reads_t and h != prev_head:
                main.wait_until(t_written[h] + 1)
            prev_head = h
            main.tile((k_hi - k_lo) * ins.steps[term].passes)
        if ins.dest == solve_src:
            a_written.append(main.written)
        per_op[ins.name] = per_op.get(ins.name, 0) + main.t - begin
    return main.written + 1, per_op


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
        loaded.append(t_in + BETA_PHI_LATENCY + LOADER_STAGES)
        begin = max(loaded[n], compute_end[n - 1] if n else 0, out_end[n - 2] if n >= 2 else 0)
        length, per_op = predict_chunk(cfg, m, heads, mode)
        for name, c in per_op.items():
            op_cycles[name] = op_cycles.get(name, 0) + c
        compute_end.append(begin + length)
        out_start = max(compute_end[n], out_end[n - 1] if n else 0)
        out_end.append(out_start + OUTPUT_LATENCY + m * heads * cfg.d_v)
    return {"cycles": out_end[-1], "op_cycles": op_cycles}
