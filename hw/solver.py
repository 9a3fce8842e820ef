"""Triangular solver: T = (I + A)^-1 of every head of a chunk, beside the MAC array.

The solve is a chain of short dependent steps: row i of T needs rows 0 .. i - 1 rounded first.
On the R x C array each of its tiles would hold the whole array for its drain; here it runs on a
1 x C row of multipliers of its own (a :class:`~deltanet_hw.hw.mac_array.MacArray` with one
row) while the array computes the other instructions, so the solve's cost hides behind them.

For head h (once its rows of A are written, ``a_done > h``), row i, column tile j0 <= i:
``T[i, j0:j0+C] = round(e_i - sum_{j0 <= k < max(i, j0 + 1)} A[i, k] T[k, j0:j0+C])``, lower
mask (zeros above the diagonal), exactly the tiles of the solve instruction
(:func:`~deltanet_hw.hw.microcode.tiles`). Row i + 1 starts when row i is written. T is written
twice: ``T`` (read by the array's W = T Kb and U = T Vb) and ``Ts`` (this solver's own reads), so
the two never share a read port. ``t_done`` counts the heads solved in this chunk.
"""

from amaranth import *
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered

from .chunk_buffer import ReadMode, bank_rotation, first_lane, in_bank_order
from .fixed import round_bounds, round_finish
from .mac_array import FEED_DEPTH, ArrayFeed, MacArray, Mask
from .microcode import BUFFER_FORMATS

__all__ = ["Solver"]

EPILOGUE_STAGES = 3  # drained row -> written


class Solver:
    """The solver of a core (see the module docstring); elaborated into the core's module.

    Signals: ``start`` (in, pulse: a chunk begins), ``rows`` (in: m), ``heads`` (in),
    ``a_done`` (in: heads whose A is written), ``t_done`` (out: heads whose T is written),
    ``saturated`` (out, sticky), ``clear`` (in), ``busy_cycles`` (out: cycles with work).
    """

    def __init__(self, cfg, ins, buffers, reads, writes):
        self.cfg, self.ins = cfg, ins
        self.buffers, self.reads, self.writes = buffers, reads, writes
        self.array = MacArray(
            1, cfg.array_cols, *self.operand_widths(cfg, ins), cfg.acc_bits, cfg.acc_part_bits
        )
        H, C = cfg.heads, cfg.chunk_size
        self.start = Signal()
        self.rows = Signal(range(C + 1))
        self.heads = Signal(range(H + 1))
        self.a_done = Signal(range(H + 1))
        self.t_done = Signal(range(H + 1))
        self.saturated = Signal()
        self.clear = Signal()
        self.busy_cycles = Signal(32)

    @staticmethod
    def operand_widths(cfg, ins) -> tuple[int, int]:
        """The widths of the A and B operands of the solve instruction ``ins``."""
        return getattr(cfg, BUFFER_FORMATS[ins.steps[0].a.buf]).width, cfg.fmt_t.width

    def elaborate(self, m):
        cfg, ins = self.cfg, self.ins
        Cc, C = cfg.array_cols, cfg.chunk_size
        arr = self.array
        m.submodules.solver_row = arr
        head = Signal(range(cfg.heads))
        row = Signal(range(C + 1))
        j0 = Signal(range(C + Cc))
        k = Signal(range(C + 1))
        m_rows = Signal.like(self.rows)
        heads = Signal.like(self.heads)
        active = Signal()
        waiting = Signal()
        outstanding = Signal(range(2 * FEED_DEPTH + 8))
        tile_issued, tile_written = Signal(), Signal()
        m.d.sync += outstanding.eq(outstanding + tile_issued - tile_written)

        k_hi = Signal.like(k)
        m.d.comb += k_hi.eq(Mux(row > j0, row, j0 + 1))
        last = Signal()
        m.d.comb += last.eq(k + 1 >= k_hi)
        ctx_layout = data.StructLayout(
            {"head": range(cfg.heads), "row": range(C + 1), "j0": range(C + Cc), "end": 1}
        )
        m.submodules.solver_ctx = ctx_fifo = SyncFIFOBuffered(
            width=ctx_layout.size, depth=2 * FEED_DEPTH + 4
        )
        issue = Signal()
        feed = ArrayFeed(m, arr, issue, FEED_DEPTH, "solver_steps", 1)
        m.d.comb += issue.eq(
            active
            & ~waiting
            & (self.a_done > head)
            & (feed.in_flight < FEED_DEPTH)
            & ctx_fifo.w_rdy
        )
        m.d.comb += tile_issued.eq(issue & last)
        base = head * C
        a_buf, t_buf = self.buffers[ins.steps[0].a.buf], self.buffers["Ts"]
        self.reads.add(a_buf.rd_cmd, issue, {"mode": ReadMode.COLUMN, "i": base + row, "j": k})
        self.reads.add(t_buf.rd_cmd, issue, {"mode": ReadMode.ROW, "i": base + k, "j": j0})
        m.d.comb += [
            feed.ctl.last.eq(last),
            feed.ctl.mask.eq(Mask.LOWER),
            feed.ctl.row0.eq(row),
            feed.ctl.col0.eq(j0),
            # lane 0 of the column read; the row read is rotated by the feed
            feed.a_words[0].eq(first_lane(a_buf.rd_data.payload)),
            feed.b_words.eq(t_buf.rd_data.payload.banks),
            feed.b_rot.eq(t_buf.rd_data.payload.rot),
        ]
        ctx_w = Signal(ctx_layout)
        head_end = (j0 + Cc > row) & (row + 1 == m_rows)
        m.d.comb += [
            ctx_w.head.eq(head),
            ctx_w.row.eq(row),
            ctx_w.j0.eq(j0),
            ctx_w.end.eq(head_end),
            ctx_fifo.w_data.eq(ctx_w),
            ctx_fifo.w_en.eq(tile_issued),
        ]

        # loops: head, row, column tile, k
        with m.If(self.start):
            m.d.sync += [
                active.eq(1),
                head.eq(0),
                row.eq(0),
                j0.eq(0),
                k.eq(0),
                m_rows.eq(self.rows),
                heads.eq(self.heads),
                waiting.eq(0),
            ]
        with m.Elif(waiting), m.If((outstanding == 0) & ~tile_written):
            m.d.sync += waiting.eq(0)
        with m.Elif(issue):
            with m.If(~last):
                m.d.sync += k.eq(k + 1)
            with m.Elif(j0 + Cc <= row):
                m.d.sync += [j0.eq(j0 + Cc), k.eq(j0 + Cc)]
            with m.Else():  # the row's last tile: wait for its writes
                m.d.sync += [j0.eq(0), k.eq(0), waiting.eq(1)]
                with m.If(row + 1 < m_rows):
                    m.d.sync += row.eq(row + 1)
                with m.Elif(head + 1 < heads):
                    m.d.sync += [row.eq(0), head.eq(head + 1)]
                with m.Else():
                    m.d.sync += active.eq(0)
        with m.If(self.clear):
            m.d.sync += self.busy_cycles.eq(0)
        with m.Elif(active | (outstanding != 0)):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)

        # epilogue: - sum (+ 1 on the diagonal), rounded into fmt_t, written to T and Ts
        c = arr.c
        ctx = data.View(ctx_layout, ctx_fifo.r_data)
        m.d.comb += [c.ready.eq(1), ctx_fifo.r_en.eq(c.valid)]
        top = ins.top_frac
        wide = arr.acc_width + 1
        s1 = Signal(
            data.StructLayout(
                {"valid": 1, "ctx": ctx_layout, "sum": data.ArrayLayout(signed(wide), Cc)}
            )
        )
        m.d.sync += [s1.valid.eq(c.valid), s1.ctx.eq(ctx)]
        for col in range(Cc):
            one = Mux(ctx.j0 + col == ctx.row, 1 << top, 0)
            m.d.sync += s1.sum[col].eq(one - c.payload.data[col])
        # s2: the rounding bit and the range flags; s3: rounded and saturated (hw/fixed.py)
        fmt = getattr(cfg, ins.fmt)
        s2 = Signal(
            data.StructLayout(
                {
                    "valid": 1,
                    "ctx": ctx_layout,
                    "low": data.ArrayLayout(fmt.width, Cc),
                    "up": Cc,
                    "above": Cc,
                    "below": Cc,
                }
            )
        )
        m.d.sync += [s2.valid.eq(s1.valid), s2.ctx.eq(s1.ctx)]
        for col in range(Cc):
            low, up, above, below = round_bounds(
                m, s1.sum[col], fmt, f"solve_round_{col}", frac_in=top
            )
            m.d.sync += [
                s2.low[col].eq(low),
                s2.up[col].eq(up),
                s2.above[col].eq(above),
                s2.below[col].eq(below),
            ]
        s3 = Signal(
            data.StructLayout(
                {"valid": 1, "ctx": ctx_layout, "words": data.ArrayLayout(signed(fmt.width), Cc)}
            )
        )
        m.d.sync += [s3.valid.eq(s2.valid), s3.ctx.eq(s2.ctx)]
        over = Signal(Cc)
        for col in range(Cc):
            raw, ovf = round_finish(
                m, s2.low[col], s2.up[col], s2.above[col], s2.below[col], fmt, f"solve_{col}"
            )
            m.d.sync += s3.words[col].eq(raw)
            m.d.comb += over[col].eq(ovf & (s2.ctx.j0 + col < m_rows))
        with m.If(s2.valid & over.any()):
            m.d.sync += self.saturated.eq(1)
        i, j = s3.ctx.head * C + s3.ctx.row, s3.ctx.j0
        # i's region starts at a multiple of C (a multiple of Cc), and j0 is one: the row's rotation
        banks = in_bank_order(m, s3.words, bank_rotation(s3.ctx.row, 0, Cc), "solve_wr")
        for name in ("T", "Ts"):
            self.writes.add(
                self.buffers[name].wr,
                s3.valid,
                {"mode": ReadMode.ROW, "i": i, "j": j, "data": Cat(*banks)},
            )
        m.d.comb += tile_written.eq(s3.valid)
        with m.If(self.start):
            m.d.sync += self.t_done.eq(0)
        with m.Elif(s3.valid & s3.ctx.end):
            m.d.sync += self.t_done.eq(self.t_done + 1)
