"""Chunk scheduler: runs the microcode (hw/microcode.py) of every head of a chunk on the MAC array.

Three parts, elaborated into the core's module by :class:`Scheduler`:

* **sequencer and fetch**: walks the array's instructions (``pc``), each for every head, and
  their tiles (i0, j0, term, k) exactly as :func:`~deltanet_hw.hw.microcode.tiles` lists them
  (the solve runs on the solver, hw/solver.py, beside the array); each cycle it may issue one
  step: a read of the A operand and of the B operand from their buffers. ``READ_LATENCY``
  (three) cycles later both words enter a small step FIFO that feeds the array (credits keep the
  FIFO from overflowing, so the buffers never wait). An instruction marked ``wait`` starts only
  when every tile issued before it has been written; one that reads T also waits, head by head,
  for the solver.
* **MAC array** (hw/mac_array.py), with the tile's mask and position on its last step.
* **epilogue**: a fixed eight-stage pipeline on the drained rows (never stalls): a first term's rows
  wait in a partial-sum FIFO for the second term; the addend (U, Vb or S) is read (three cycles: the
  buffer's command register, block RAM, then its output register) and rotated into lane order
  (one more); the terms are aligned to the exact sum's fractional bits and added or subtracted by
  their signs (the array only adds); the sum is rounded into the instruction's format (the
  rounding bit and the range first, then the carry and the saturation); the row segment is
  written (in the buffers' bank order; rows and columns outside the result are dropped). Every
  rounding that saturates sets the sticky ``saturated``.

The scheduler holds no memory of its own: the buffers belong to the core (hw/core.py) and the
scheduler asks for their ports through :class:`PortMux`.
"""

import contextlib

from amaranth import *
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered

from .banks import READ_LATENCY, delay_line
from .chunk_buffer import (
    ReadMode,
    bank_rotation,
    in_bank_order,
    in_lane_order,
    rotation_shape,
)
from .fixed import bound, round_bounds
from .mac_array import (
    FEED_DEPTH,
    ArrayFeed,
    MacArray,
    Mask,
    operand_widths,
    product_multipliers,
    state_half,
)
from .microcode import CHUNK_INPUTS, core_program, dim_value
from .solver import Solver

__all__ = ["EPILOGUE_STAGES", "PortMux", "Scheduler", "hard_multipliers"]

CTX_FIFO_DEPTH = 16
EPILOGUE_STAGES = 5 + READ_LATENCY  # drained row -> written (the cycle model reads it)
MASKS = {"full": Mask.FULL, "lower": Mask.LOWER, "strict_lower": Mask.STRICT_LOWER}


def hard_multipliers(cfg) -> int:
    """18 x 18 hard multipliers (ECP5 MULT18X18D) of the MAC array and the solver row of
    ``cfg``: two per processing element when the state is wider than one multiplier and enters
    at once (``state_passes = 1``), one otherwise. BetaPhi's few are not counted."""
    solve = next(i for i in core_program(cfg, "chunk") if i.solve)
    array = cfg.array_rows * product_multipliers(*operand_widths(cfg))
    row = product_multipliers(*Solver.operand_widths(cfg, solve))
    return cfg.array_cols * (array + row)


class PortMux:
    """Requests to memory command ports from several places (at most one active per cycle).

    A port is valid when a request's ``cond`` holds; its payload comes from the first request
    whose ``cond`` holds, in the order added. A request may give a ``select`` for the payload
    instead: ``cond`` without its late part (the scheduler's issue decision), true whenever
    ``cond`` is; the selects of one port exclude each other. Those requests come after the others
    (which keep priority) and the last one is the default, so a late ``cond`` drives ``valid``
    but never the address path (timing).
    """

    def __init__(self):
        self.requests = {}

    def add(self, port, cond, fields: dict, *, select=None):
        self.requests.setdefault(id(port), (port, []))[1].append((cond, fields, select))

    def build(self, m):
        for port, reqs in self.requests.values():
            m.d.comb += port.valid.eq(Cat(*[c for c, _, _ in reqs]).any())
            reqs = sorted(reqs, key=lambda r: r[2] is not None)  # stable: selects last
            for n, (cond, fields, select) in enumerate(reqs):
                pick = cond if select is None else select
                if n == len(reqs) - 1:  # the default: with no request active, any payload
                    ctx = m.Else() if n else contextlib.nullcontext()
                else:
                    ctx = m.Elif(pick) if n else m.If(pick)
                with ctx:
                    for name, value in fields.items():
                        m.d.comb += port.payload[name].eq(value)


class Scheduler:
    """The chunk scheduler of a core (see the module docstring).

    Parameters
    ----------
    cfg : CoreConfig
    buffers : dict
        name -> ChunkBuffer (``Q`` ``K`` ``Kt`` ``Kb`` ``Vb`` ``A`` ``T`` ``Ts`` ``W`` ``U``
        ``QK`` ``Vn`` ``O``) or the StateSram (``S``); shared with the solver (hw/solver.py).
    reads, writes : PortMux
        Where the scheduler asks for command and write ports.

    Signals (create with the object, drive or read them in the core):
    ``start`` (in, pulse: run one chunk), ``mode`` (in: 0 chunk program, 1 decode program),
    ``rows`` (in: m), ``half`` (in), ``heads`` (in), ``clear`` (in: zero the counters),
    ``done`` (out, pulse: every write of the chunk landed), ``saturated`` (out, sticky),
    ``busy_cycles`` (one counter per array instruction: cycles spent on it), ``counters``
    (those and the solver's, in the order of ``microcode.op_counter_names``).
    """

    def __init__(self, cfg, buffers, reads, writes):
        self.cfg = cfg
        chunk, decode = core_program(cfg, "chunk"), core_program(cfg, "recurrent")
        solve = next(i for i in chunk if i.solve)
        chunk = tuple(i for i in chunk if not i.solve)  # the array's instructions
        self.instrs = chunk + decode
        self.entry = (0, len(chunk))  # first instruction of each mode
        self.exit = (len(chunk) - 1, len(self.instrs) - 1)
        self.solver = Solver(cfg, solve, buffers, reads, writes)
        self.buffers, self.reads, self.writes = buffers, reads, writes
        self.array = MacArray.from_config(cfg)
        C = cfg.chunk_size
        self.start = Signal()
        self.mode = Signal()
        self.rows = Signal(range(C + 1))
        self.half = Signal()
        self.heads = Signal(range(cfg.heads + 1))
        self.done = Signal()
        self.saturated = Signal()
        self.clear = Signal()
        self.busy_cycles = [Signal(32, name=f"cycles_{ins.name}") for ins in self.instrs]
        # every counter in the order of microcode.op_counter_names
        n = len(chunk)
        self.counters = [*self.busy_cycles[:n], self.solver.busy_cycles, *self.busy_cycles[n:]]

    # ------------------------------------------------------------------ helpers
    def _base(self, name, half, head):
        """First row of ``name``'s region for (half, head)."""
        cfg = self.cfg
        if name in CHUNK_INPUTS or name == "O":
            return (half * cfg.heads + head) * cfg.chunk_size
        return head * cfg.chunk_size  # one head's intermediates

    def elaborate(self, m):
        cfg = self.cfg
        R, Cc = cfg.array_rows, cfg.array_cols
        instrs = self.instrs
        arr = self.array
        m.submodules.mac_array = arr
        kmax = max(cfg.d_k, cfg.d_v, cfg.chunk_size)

        # ---------------- sequencer ---------------------------------------------------
        pc = Signal(range(len(instrs)))
        head = Signal(range(cfg.heads))
        i0 = Signal(range(kmax + R))
        j0 = Signal(range(kmax + Cc))
        term = Signal()
        k = Signal(range(kmax + 1))
        # i0 + R and k + 1, kept in registers beside i0 and k: the step-issue decision (the last
        # step of a tile?) compares them without an adder in front (the routed ecp5 core's
        # critical path ran through both adders and the minimum of the two bounds)
        i0_end = Signal(range(kmax + 2 * R), init=R)
        k_next = Signal(range(kmax + 2), init=1)
        i0s, ks = (i0, i0_end), (k, k_next)
        high = Signal()  # a two-pass state step's second pass: the high half of the words
        two_pass = Signal()  # the current term reads the state in two passes
        k_done = Signal()  # k is the current tile's last k
        running = Signal()  # a chunk is being issued
        draining = Signal()  # every step issued; waiting for the last writes
        waiting = Signal()  # the current instruction waits for the writes before it
        outstanding = Signal(range(CTX_FIFO_DEPTH + 8))
        tile_issued = Signal()
        tile_written = Signal()
        # the issue decision only selects between two sums computed without it (timing)
        written_out = Signal.like(outstanding)
        m.d.comb += written_out.eq(outstanding - tile_written)
        m.d.sync += outstanding.eq(Mux(tile_issued, written_out + 1, written_out))
        head_end = Signal()
        # no tile in flight; read only while waiting or draining, when nothing issues, so the
        # issue decision stays off the paths to ``done`` and the core's registers (timing)
        idle = Signal()
        m.d.comb += idle.eq(outstanding == 0)
        mrows = Signal.like(self.rows)
        half = Signal()
        heads = Signal.like(self.heads)

        ctx_layout = data.StructLayout(
            {
                "pc": range(len(instrs)),
                "term": 1,
                "i0": range(kmax + R),
                "j0": range(kmax + Cc),
                "head": range(cfg.heads),
                "half": 1,
                "m": range(cfg.chunk_size + 1),
                "head_end": 1,  # the last tile of the instruction for this head
            }
        )
        m.submodules.ctx_fifo = ctx_fifo = SyncFIFOBuffered(
            width=ctx_layout.size, depth=CTX_FIFO_DEPTH
        )

        # k range of the current tile
        with m.Switch(pc):
            for n, ins in enumerate(instrs):
                with m.Case(n):
                    for t, st in enumerate(ins.steps):
                        with m.If(term == t):
                            m.d.comb += two_pass.eq(st.passes == 2)
                            n_k = dim_value(self.cfg, st.k_dim, mrows)
                            # k + 1 reached min(i0 + R, n_k) (lower-triangular A) or n_k
                            done = k_next >= n_k
                            if st.a_lower:
                                done = done | (k_next >= i0_end)
                            m.d.comb += k_done.eq(done)

        issue = Signal()
        feed = ArrayFeed(m, arr, issue, FEED_DEPTH, "step_fifo", Cc)
        # instructions that read T wait, head by head, for the solver's rows
        solver = self.solver
        solver.elaborate(m)
        blocked = Signal()
        for n, ins in enumerate(instrs):
            if ins.reads_t:
                with m.If(pc == n):
                    m.d.comb += blocked.eq(solver.t_done <= head)
        can_issue = Signal()
        m.d.comb += can_issue.eq(
            running & ~waiting & ~blocked & (feed.in_flight < FEED_DEPTH) & ctx_fifo.w_rdy
        )
        m.d.comb += issue.eq(can_issue)
        last = Signal()
        m.d.comb += last.eq(k_done & (high | ~two_pass))
        m.d.comb += tile_issued.eq(issue & last)

        # reads of the operands of the step
        for n, ins in enumerate(instrs):
            for t, st in enumerate(ins.steps):
                here = (pc == n) & (term == t)  # the operand address: registered state only
                cond = issue & here
                a_base = self._base(st.a.buf, half, head)
                a_cmd = {
                    "col": {"mode": ReadMode.COLUMN, "i": a_base + i0, "j": k},
                    "row": {"mode": ReadMode.ROW, "i": a_base + k, "j": i0},
                }[st.a.mode]
                self.reads.add(self.buffers[st.a.buf].rd_cmd, cond, a_cmd, select=here)
                b_base = self._base(st.b.buf, half, head)
                if st.b.mode == "sram":
                    b_cmd = {"head": head, "row": k, "tile": j0 // Cc}
                else:
                    b_cmd = {
                        "row": {"mode": ReadMode.ROW, "i": b_base + k, "j": j0},
                        "col": {"mode": ReadMode.COLUMN, "i": b_base + j0, "j": k},
                    }[st.b.mode]
                self.reads.add(self.buffers[st.b.buf].rd_cmd, cond, b_cmd, select=here)

        # the step's control now, its operands READ_LATENCY cycles later with the read data
        pc_q = delay_line(m, pc, READ_LATENCY, "pc_read")[-1]
        term_q = delay_line(m, term, READ_LATENCY, "term_read")[-1]
        for n, ins in enumerate(instrs):
            with m.If(pc == n):
                m.d.comb += feed.ctl.mask.eq(MASKS[ins.mask])
        m.d.comb += [
            feed.ctl.last.eq(last),
            feed.ctl.row0.eq(i0),
            feed.ctl.col0.eq(j0),
        ]
        if arr.high_shift:
            m.d.comb += feed.ctl.high.eq(high)
        for n, ins in enumerate(instrs):
            for t, st in enumerate(ins.steps):
                with m.If((pc_q == n) & (term_q == t)):
                    # in bank order: the feed rotates the selected words into lane order
                    a_data = self.buffers[st.a.buf].rd_data.payload
                    b_data = self.buffers[st.b.buf].rd_data.payload
                    m.d.comb += [feed.a_words[r].eq(a_data.banks[r]) for r in range(Cc)]
                    m.d.comb += feed.a_rot.eq(a_data.rot)
                    if st.b.mode == "sram" and st.passes == 2:  # in lane order, in halves
                        half_words = [state_half(b_data[c], feed.ctl_read.high) for c in range(Cc)]
                        m.d.comb += [feed.b_words[c].eq(w) for c, w in enumerate(half_words)]
                    elif st.b.mode == "sram":  # the state SRAM's words are in lane order
                        m.d.comb += [feed.b_words[c].eq(b_data[c]) for c in range(Cc)]
                    else:
                        m.d.comb += [feed.b_words[c].eq(b_data.banks[c]) for c in range(Cc)]
                        m.d.comb += feed.b_rot.eq(b_data.rot)

        # tile context, pushed with the tile's last step
        ctx_w = Signal(ctx_layout)
        m.d.comb += [
            ctx_w.pc.eq(pc),
            ctx_w.term.eq(term),
            ctx_w.i0.eq(i0),
            ctx_w.j0.eq(j0),
            ctx_w.head.eq(head),
            ctx_w.half.eq(half),
            ctx_w.m.eq(mrows),
            ctx_w.head_end.eq(head_end),
            ctx_fifo.w_data.eq(ctx_w),
            ctx_fifo.w_en.eq(tile_issued),
        ]

        # loop counters
        for n, counter in enumerate(self.busy_cycles):
            with m.If(self.clear):
                m.d.sync += counter.eq(0)
            with m.Elif(running & (pc == n)):
                m.d.sync += counter.eq(counter + 1)

        def next_instr():
            """Counters for the next head of the instruction, or the next instruction."""
            m.d.comb += head_end.eq(1)
            m.d.sync += [i0.eq(0), j0.eq(0), k.eq(0), term.eq(0), high.eq(0)]
            m.d.sync += [i0_end.eq(R), k_next.eq(1)]
            with m.If(head + 1 < heads):
                m.d.sync += head.eq(head + 1)
            with m.Else():
                m.d.sync += head.eq(0)
                for n in range(len(instrs)):
                    with m.If(pc == n):
                        if n in self.exit:
                            m.d.sync += [running.eq(0), draining.eq(1)]
                        else:
                            m.d.sync += [pc.eq(n + 1), waiting.eq(instrs[n + 1].wait)]

        with m.If(self.start):
            m.d.sync += [
                running.eq(1),
                pc.eq(Mux(self.mode, self.entry[1], self.entry[0])),
                head.eq(0),
                i0.eq(0),
                i0_end.eq(R),
                j0.eq(0),
                k.eq(0),
                k_next.eq(1),
                term.eq(0),
                high.eq(0),
                mrows.eq(self.rows),
                half.eq(self.half),
                heads.eq(self.heads),
                waiting.eq(1),
            ]
        with m.Elif(waiting), m.If(idle):
            m.d.sync += waiting.eq(0)
        with m.Elif(issue):
            with m.If(~last & two_pass & ~high):
                m.d.sync += high.eq(1)  # the same k again: the high half
            with m.Elif(~last):
                m.d.sync += [k.eq(k + 1), k_next.eq(k_next + 1), high.eq(0)]
            with m.Else():
                m.d.sync += high.eq(0)
                for n, ins in enumerate(instrs):
                    with m.If(pc == n):
                        self._advance(m, ins, i0s, j0, term, ks, mrows, next_instr)
        m.d.comb += self.done.eq(draining & idle)
        # for testbenches and waveforms
        self.probe = {
            "pc": pc,
            "head": head,
            "running": running,
            "waiting": waiting,
            "draining": draining,
            "outstanding": outstanding,
            "i0": i0,
            "j0": j0,
            "k": k,
            "high": high,
            "term": term,
        }
        with m.If(self.done):
            m.d.sync += draining.eq(0)

        self._epilogue(m, ctx_fifo, ctx_layout, tile_written)
        m.d.comb += [
            solver.start.eq(self.start & ~self.mode),
            solver.rows.eq(self.rows),
            solver.heads.eq(self.heads),
            solver.clear.eq(self.clear),
        ]
        with m.If(solver.saturated):
            m.d.sync += self.saturated.eq(1)

    def _advance(self, m, ins, i0s, j0, term, ks, mrows, next_instr):
        """After the last step of a tile of ``ins``: the next tile (or head, or instruction).
        ``i0s`` is (i0, i0 + R), ``ks`` (k, k + 1)."""
        R, Cc = self.cfg.array_rows, self.cfg.array_cols
        (i0, i0_end), (k, k_next) = i0s, ks
        rows = dim_value(self.cfg, ins.rows_dim, mrows)
        cols = dim_value(self.cfg, ins.cols_dim, mrows)
        nj = j0 + Cc
        more_cols = nj < cols
        if ins.skip_upper:
            more_cols = more_cols & (nj < i0_end)
        m.d.sync += [k.eq(0), k_next.eq(1)]
        with m.If(term + 1 < len(ins.steps)):
            m.d.sync += term.eq(term + 1)
        with m.Elif(more_cols):
            m.d.sync += [term.eq(0), j0.eq(nj)]
        with m.Elif(i0_end < rows):
            m.d.sync += [term.eq(0), j0.eq(0), i0.eq(i0_end), i0_end.eq(i0_end + R)]
        with m.Else():
            next_instr()

    # ------------------------------------------------------------------ epilogue
    def _epilogue(self, m, ctx_fifo, ctx_layout, tile_written):
        cfg = self.cfg
        R, Cc = cfg.array_rows, cfg.array_cols
        instrs = self.instrs
        arr = self.array
        acc = arr.acc_width
        c = arr.c
        m.d.comb += c.ready.eq(1)  # the epilogue never stalls
        ctx = data.View(ctx_layout, ctx_fifo.r_data)
        m.d.comb += ctx_fifo.r_en.eq(c.valid & c.payload.last)

        # partial sums of first terms (two-term instructions)
        row_layout = data.ArrayLayout(signed(acc), Cc)
        m.submodules.partial_fifo = pfifo = SyncFIFOBuffered(width=row_layout.size, depth=2 * R)
        two_term = Cat(*[ctx.pc == n for n, ins in enumerate(instrs) if len(ins.steps) == 2])
        is_two = Signal()
        m.d.comb += is_two.eq(two_term.any() if len(two_term) else 0)
        m.d.comb += [
            pfifo.w_data.eq(c.payload.data),
            pfifo.w_en.eq(c.valid & is_two & (ctx.term == 0)),
            pfifo.r_en.eq(c.valid & is_two & (ctx.term == 1)),
        ]

        # stage 1: the drained row, its place, the addend read
        out_row = Signal(range(max(cfg.d_k, cfg.chunk_size) + R))
        m.d.comb += out_row.eq(ctx.i0 + c.payload.row)
        s1 = Signal(
            data.StructLayout(
                {
                    "valid": 1,  # a final row of a tile (written if inside the result)
                    "tile_end": 1,
                    "pc": range(len(instrs)),
                    "row": range(max(cfg.d_k, cfg.chunk_size) + R),
                    "j0": ctx_layout["j0"].shape,
                    "head": range(cfg.heads),
                    "half": 1,
                    "m": range(cfg.chunk_size + 1),
                    "head_end": 1,
                    "value": row_layout,
                    "partial": row_layout,
                }
            )
        )
        final = c.valid & (~is_two | (ctx.term == 1))
        m.d.sync += [
            s1.valid.eq(final),
            s1.tile_end.eq(c.valid & c.payload.last),
            s1.pc.eq(ctx.pc),
            s1.row.eq(out_row),
            s1.j0.eq(ctx.j0),
            s1.head.eq(ctx.head),
            s1.half.eq(ctx.half),
            s1.m.eq(ctx.m),
            s1.head_end.eq(ctx.head_end),
            s1.value.eq(c.payload.data),
            s1.partial.eq(pfifo.r_data),
        ]
        for n, ins in enumerate(instrs):
            if ins.add:
                cond = final & (ctx.pc == n)
                if ins.add == "S":
                    cmd = {"head": ctx.head, "row": out_row, "tile": ctx.j0 // Cc}
                else:
                    base = self._base(ins.add, ctx.half, ctx.head)
                    cmd = {"mode": ReadMode.ROW, "i": base + out_row, "j": ctx.j0}
                self.reads.add(self.buffers[ins.add].rd_cmd, cond, cmd)

        # stage 2: the addend's read takes READ_LATENCY cycles (the buffer's command register,
        # block RAM, then its output register), then one more: its words rotated into lane
        # order and registered; s1 waits beside it
        s1a = delay_line(m, s1, READ_LATENCY - 1, "s1_read")[-1]
        s1b = Signal.like(s1)
        m.d.sync += s1b.eq(s1a)

        # stage 3: the exact sum at the instruction's fractional bits
        s2_meta = Signal.like(s1)
        m.d.sync += s2_meta.eq(s1b)
        # instructions that align their terms by the same shifts share one adder per column
        # (and signs: the array adds products; a term's sign is applied here, once per column)
        sums = {}
        for n, ins in enumerate(instrs):
            value, partial = ins.steps[-1], ins.steps[0] if len(ins.steps) == 2 else None
            key = (
                (ins.top_frac - value.frac, value.sign),
                (ins.top_frac - partial.frac, partial.sign) if partial else None,
                ins.top_frac - ins.add_frac if ins.add else None,
            )
            sums.setdefault(key, []).append(n)
        exact = []  # per group: its members and each column's sum
        for g, ((value, partial, add_shift), members) in enumerate(sums.items()):
            if add_shift is not None:  # the word to add: read from the instruction's buffer
                sources = []
                for n in members:
                    src = self.buffers[instrs[n].add].rd_data.payload
                    # a chunk buffer's words come in bank order, the state SRAM's in lane order
                    sources.append((src, 0) if instrs[n].add == "S" else (src.banks, src.rot))
                width = max(len(words[0]) for words, _ in sources)
                banks = Signal(data.ArrayLayout(signed(width), Cc), name=f"s2_banks{g}")
                rot = Signal(rotation_shape(Cc), name=f"s2_rot{g}")
                for n, (words, words_rot) in zip(members, sources, strict=True):
                    with m.If(s1a.pc == n):
                        m.d.comb += [banks[col].eq(words[col]) for col in range(Cc)]
                        m.d.comb += rot.eq(words_rot)
                add = Signal(data.ArrayLayout(signed(width), Cc), name=f"s2_add{g}")
                lanes = in_lane_order(m, banks, rot, f"s2_add{g}")
                m.d.sync += [add[col].eq(word) for col, word in enumerate(lanes)]
            cols = []
            for col in range(Cc):
                terms = [(s1b.value[col].shift_left(value[0]), value[1])]
                if partial is not None:
                    terms.append((s1b.partial[col].shift_left(partial[0]), partial[1]))
                if add_shift is not None:
                    terms.append((add[col].shift_left(add_shift), 1))
                (first, first_sign), *rest = terms  # not sum(): its 0 start would add a bit
                total = first if first_sign > 0 else -first
                for term, sign in rest:
                    total = total + term if sign > 0 else total - term
                cols.append(total)
            exact.append((members, cols))
        # as wide as the widest group's sum: each operation's result width holds it exactly (a
        # term's shift widens only that term: U's 18 bits 30 up are not a 58-bit sum 30 up)
        wide = max(len(total) for _, cols in exact for total in cols)
        s2_sum = Signal(data.ArrayLayout(signed(wide), Cc))
        for members, cols in exact:
            with m.If(Cat(*[s1b.pc == n for n in members]).any()):
                m.d.sync += [s2_sum[col].eq(total) for col, total in enumerate(cols)]

        # stage 4: the rounding bit and the range of the instruction's format (one
        # round_bounds per distinct rounding: the shift to the format's fraction and the
        # format's width, sign, rounding and overflow modes; the instruction's own registered)
        groups = {}
        for n, ins in enumerate(instrs):
            f = getattr(cfg, ins.fmt)
            key = (ins.top_frac - f.frac_bits, f.width, f.signed, f.rounding, f.overflow)
            groups.setdefault(key, (f, []))[1].append(n)
        fmts = [f for f, _ in groups.values()]
        W = max(fmt.width for fmt in fmts)
        s3_low = Signal(data.ArrayLayout(W, Cc))
        s3_up, s3_above, s3_below = Signal(Cc), Signal(Cc), Signal(Cc)
        s3_group = Signal(range(len(groups)))
        s3_meta = Signal.like(s1)
        m.d.sync += s3_meta.eq(s2_meta)
        for g, ((shift, *_), (fmt, members)) in enumerate(groups.items()):
            parts = [
                round_bounds(m, s2_sum[col], fmt, f"round{g}_{col}", shift=shift)
                for col in range(Cc)
            ]
            with m.If(Cat(*[s2_meta.pc == n for n in members]).any()):
                m.d.sync += s3_group.eq(g)
                for col, (low, up, above, below) in enumerate(parts):
                    m.d.sync += [
                        s3_low[col].eq(low),
                        s3_up[col].eq(up),
                        s3_above[col].eq(above),
                        s3_below[col].eq(below),
                    ]

        # stage 5: rounded and saturated (one adder per column, shared by the formats)
        s4_raw = Signal(data.ArrayLayout(signed(W + 1), Cc))
        s4_over = Signal(Cc)
        s4_meta = Signal.like(s1)
        s4_rot = Signal(rotation_shape(Cc))
        m.d.sync += [s4_meta.eq(s3_meta), s4_rot.eq(bank_rotation(s3_meta.row, 0, Cc))]
        for col in range(Cc):
            value = Signal(W, name=f"rounded_{col}")
            m.d.comb += value.eq(s3_low[col] + s3_up[col])
            m.d.sync += s4_over[col].eq(s3_above[col] | s3_below[col])
            flags = (s3_above[col], s3_below[col])
            raws = [
                bound(m, value[: fmt.width], *flags, fmt, f"bound{g}_{col}")[0]
                for g, fmt in enumerate(fmts)
            ]
            with m.Switch(s3_group):
                for g, raw in enumerate(raws):
                    with m.Case(g):
                        m.d.sync += s4_raw[col].eq(raw)

        # stage 6: write the row segment (inside the result only); to a chunk buffer in its bank
        # order, rotated once for every destination: the regions start at multiples of
        # chunk_size, a multiple of array_cols (check_core_config) as j0 is, so the rotation is
        # the row's (registered in stage 5)
        banked = in_bank_order(m, s4_raw, s4_rot, "wr")
        sat = []
        for n, ins in enumerate(instrs):
            rows = dim_value(self.cfg, ins.rows_dim, s4_meta.m)
            cols = dim_value(self.cfg, ins.cols_dim, s4_meta.m)
            here = s4_meta.valid & (s4_meta.pc == n) & (s4_meta.row < rows)
            lanes_in = Cat(*[s4_meta.j0 + col < cols for col in range(Cc)])
            sat.append(here & (s4_over & lanes_in).any())
            dest = self.buffers[ins.dest]
            if ins.dest == "S":
                fields = {"head": s4_meta.head, "row": s4_meta.row, "tile": s4_meta.j0 // Cc}
            else:
                base = self._base(ins.dest, s4_meta.half, s4_meta.head)
                fields = {"mode": ReadMode.ROW, "i": base + s4_meta.row, "j": s4_meta.j0}
            seg = Signal(dest.wr.payload.data.shape(), name=f"wr_{ins.name}")
            words = s4_raw if ins.dest == "S" else banked
            m.d.comb += [seg[col].eq(words[col]) for col in range(Cc)]
            self.writes.add(dest.wr, here, fields | {"data": seg})
        with m.If(Cat(*sat).any()):
            m.d.sync += self.saturated.eq(1)
        m.d.comb += tile_written.eq(s4_meta.tile_end)
        # heads whose A (what the solve reads) is written: the solver may start on them
        src = self.solver.ins.steps[0].a.buf
        a_pc = next(n for n, ins in enumerate(instrs) if ins.dest == src)
        with m.If(self.start):
            m.d.sync += self.solver.a_done.eq(0)
        with m.Elif(s4_meta.tile_end & s4_meta.head_end & (s4_meta.pc == a_pc)):
            m.d.sync += self.solver.a_done.eq(self.solver.a_done + 1)
