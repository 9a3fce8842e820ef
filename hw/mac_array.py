"""Systolic MAC array: R x C processing elements with exact wide accumulators.

Output-stationary dataflow. Every accepted beat is one step k of a tile product
``C[R x C] = A[R x K] @ B[K x C]``: the ``a`` beat carries column k of A (one value per row)
and the control bits of the step, the ``b`` beat carries row k of B (one value per column). Inputs
are skewed so that processing element (r, c) sees ``a[r, k]`` and ``b[k, c]`` in the same cycle;
``a`` values and control travel right, ``b`` values travel down.

Each processing element registers its product (one signed multiplier in hard DSPs: one SB_MAC16 for
16 x 16 bits on iCE40, two MULT18X18D for 18 x 32 bits on ECP5, or one in two steps: ``high`` below)
and adds it to its accumulator; ``last`` ends the tile: the finished sum is copied out and the
accumulator clears (its flip-flops' synchronous reset), so every tile's sum starts from zero. The
accumulator is carry-save in parts of at most ``part_bits`` bits (no long carry chain in the loop);
the copy keeps each part's carry out, and the drain resolves them for the one row it reads (one
full-width add per column, not one per element). Signs are the reader's: a term to subtract is
subtracted where the rows are used (the epilogue's adders), not in every element. Results leave
through the ``c`` stream one row per beat while the next tile already accumulates, so long products
keep the array busy: a tile's last beat is accepted only once the previous tile's results have left
(tiles shorter than ``min_tile_steps`` wait for that).

With ``high_shift`` (``state_passes = 2``) the ``a`` beat carries a ``high`` bit: the step's
products weigh ``2**high_shift``. A state word then enters as two steps of the same k, its low
17 bits (non-negative) and its high bits (signed): one 18 x 18 multiplier per element.

The drain applies the tile's triangular mask, given with the last beat as a mode and the tile's
position (``row0``, ``col0``) in the whole matrix: ``lower`` keeps elements with i >= j,
``strict_lower`` those with i > j; masked elements come out as 0.
"""

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .banks import READ_LATENCY, delay_line
from .chunk_buffer import in_lane_order, rotation_shape

# steps an ArrayFeed's FIFO holds: enough for one step per cycle (issue -> READ_LATENCY -> FIFO
# -> array -> credit back), with one to spare
FEED_DEPTH = READ_LATENCY + 3

__all__ = [
    "FEED_DEPTH",
    "LOW_BITS",
    "MULT_WIDTH",
    "ArrayFeed",
    "MacArray",
    "Mask",
    "mac_layouts",
    "operand_widths",
    "product_multipliers",
    "state_half",
]

PART_BITS = 14  # default longest carry chain of the accumulators
# Wider B operands (the 32-bit state) are split into a low part of LOW_BITS bits (non-negative, so
# a signed MULT_WIDTH operand) and a high part: one hard multiplier each (ECP5 MULT18X18D; iCE40
# presets keep every operand at 16 bits), or one multiplier in two steps (state_passes = 2)
MULT_WIDTH = 18
LOW_BITS = MULT_WIDTH - 1
OFFSET_BITS = 10  # row0 / col0: position of a tile in its matrix (chunks <= 256 rows)


class Mask(enum.Enum, shape=2):
    FULL = 0
    LOWER = 1
    STRICT_LOWER = 2


class MacArray(wiring.Component):
    """Systolic array of ``rows`` x ``cols`` signed multiply-accumulate elements.

    Parameters
    ----------
    rows, cols : int
        Array shape (R x C).
    a_width, b_width : int
        Signed operand widths (A values enter from the left, B values from the top).
    acc_width : int
        Signed accumulator width; sums must fit (the config checks every product of the program).
    part_bits : int
        Longest carry chain of the carry-save accumulators (timing only; results are exact).
    split_b : int or None
        Split B operands at this bit: two partial products registered apart, joined one cycle
        later (timing only).
    high_shift : int or None
        The ``a`` beat gets a ``high`` bit: the step's products weigh ``2**high_shift`` (they
        multiply the high half of a wider B word; the low half came in the step before:
        ``state_passes = 2``).

    Members
    -------
    a : In(stream.Signature(a_layout))
        ``data`` (R signed values), ``last``, and with the last beat
        ``mask``, ``row0``, ``col0``.
    b : In(stream.Signature(b_layout))
        ``data`` (C signed values). Transferred together with ``a``.
    c : Out(stream.Signature(c_layout))
        One result row per beat: ``data`` (C accumulator values), ``row``, ``last``.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        a_width: int,
        b_width: int,
        acc_width: int,
        part_bits: int = PART_BITS,
        split_b: int | None = None,
        high_shift: int | None = None,
    ):
        for name, value, lo in (
            ("rows", rows, 1),
            ("cols", cols, 1),
            ("a_width", a_width, 2),
            ("b_width", b_width, 2),
            ("acc_width", acc_width, 2),
        ):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
        if acc_width < a_width + b_width:
            raise ValueError(
                f"acc_width ({acc_width}) must hold one product ({a_width} + {b_width} bits)"
            )
        if split_b is not None and not 1 <= split_b < b_width:
            raise ValueError(f"split_b must be in [1, b_width), not {split_b!r}")
        if high_shift is not None and (split_b is not None or high_shift < 1):
            raise ValueError(f"high_shift must be >= 1 and without split_b, not {high_shift!r}")
        self.rows, self.cols, self.part_bits, self.split_b = rows, cols, part_bits, split_b
        self.high_shift = high_shift
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self.a_layout, self.b_layout, self.c_layout = mac_layouts(
            rows, cols, a_width, b_width, acc_width, high=high_shift is not None
        )
        super().__init__(
            {
                "a": In(stream.Signature(self.a_layout)),
                "b": In(stream.Signature(self.b_layout)),
                "c": Out(stream.Signature(self.c_layout)),
            }
        )

    @classmethod
    def from_config(cls, cfg):
        """The array a :class:`~deltanet_hw.config.CoreConfig` describes."""
        a_width, b_width = operand_widths(cfg)
        split = LOW_BITS if b_width > MULT_WIDTH else None
        high = LOW_BITS if cfg.state_passes == 2 else None
        return cls(
            cfg.array_rows,
            cfg.array_cols,
            a_width,
            b_width,
            cfg.acc_bits,
            cfg.acc_part_bits,
            split,
            high,
        )

    @property
    def min_tile_steps(self) -> int:
        """Tiles of at least this many steps follow each other without a bubble."""
        return self.latency + self.rows

    @property
    def latency(self) -> int:
        """Cycles from accepting a tile's last beat to its first result row being available.

        Row 0's last element has its copy ``cols + 2`` cycles after the beat (one more with split
        products); the drain's mask counters are ready 4 cycles after it at the earliest."""
        return max(self.cols + 2 + (1 if self.split_b else 0), 4)

    @property
    def parts(self) -> int:
        """Carry-save parts of each accumulator."""
        return -(-self.acc_width // self.part_bits)

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        busy = Signal()  # a tile's results are in flight or draining
        cap = Signal()  # a last beat was accepted in the previous cycle
        step = Signal()
        m.d.comb += step.eq(self.a.valid & self.b.valid & ~(self.a.payload.last & (busy | cap)))
        m.d.comb += [self.a.ready.eq(step), self.b.ready.eq(step)]

        # input stage and skew lines: lane r of a is delayed r cycles, lane c of b c cycles
        ctl = data.StructLayout({"valid": 1, "last": 1, "high": 1})
        a_in, b_in = [], []
        for r in range(R):
            val = Signal(signed(self.a_width), name=f"a_skew_{r}_0")
            cv = Signal(ctl, name=f"ctl_skew_{r}_0")
            m.d.sync += [
                val.eq(self.a.payload.data[r]),
                cv.eq(
                    Cat(step, self.a.payload.last, self.a.payload.high if self.high_shift else 0)
                ),
            ]
            for i in range(r):
                nval = Signal(signed(self.a_width), name=f"a_skew_{r}_{i + 1}")
                ncv = Signal(ctl, name=f"ctl_skew_{r}_{i + 1}")
                m.d.sync += [nval.eq(val), ncv.eq(cv)]
                val, cv = nval, ncv
            a_in.append((val, cv))
        for c in range(C):
            val = Signal(signed(self.b_width), name=f"b_skew_{c}_0")
            m.d.sync += val.eq(self.b.payload.data[c])
            for i in range(c):
                nval = Signal(signed(self.b_width), name=f"b_skew_{c}_{i + 1}")
                m.d.sync += nval.eq(val)
                val = nval
            b_in.append(val)

        # processing elements
        res = [[None] * C for _ in range(R)]
        part_len = -(-self.acc_width // self.parts)
        bounds = [
            (lo, min(lo + part_len, self.acc_width)) for lo in range(0, self.acc_width, part_len)
        ]
        b_down = list(b_in)
        for r in range(R):
            a_val, a_ctl = a_in[r]
            for c in range(C):
                b_val = b_down[c]
                prod = Signal(signed(self.a_width + self.b_width), name=f"prod_{r}_{c}")
                pctl = Signal(ctl, name=f"pctl_{r}_{c}")
                if self.split_b:
                    # B wider than one hard multiplier: the two partial products are registered
                    # on their own (each a DSP), and joined in the next cycle
                    L = self.split_b
                    p_lo = Signal(signed(self.a_width + L + 1), name=f"plo_{r}_{c}")
                    p_hi = Signal(signed(self.a_width + self.b_width - L), name=f"phi_{r}_{c}")
                    ctl0 = Signal(ctl, name=f"pctl0_{r}_{c}")
                    m.d.sync += [
                        p_lo.eq(a_val * Cat(b_val[:L], Const(0, 1)).as_signed()),
                        p_hi.eq(a_val * b_val[L:].as_signed()),
                        ctl0.eq(a_ctl),
                    ]
                    joined = (p_hi << L) + p_lo
                    m.d.sync += [prod.eq(joined), pctl.eq(ctl0)]
                else:
                    m.d.sync += [prod.eq(a_val * b_val), pctl.eq(a_ctl)]
                # carry-save accumulator in parts of at most part_bits: the carry out of each
                # part joins the next part one step later, so no carry chain in the loop is
                # longer than a part; the drain resolves the carries of the copy (one add)
                wide = Signal(signed(self.acc_width), name=f"wide_{r}_{c}")
                if self.high_shift:
                    m.d.comb += wide.eq(Mux(pctl.high, prod.shift_left(self.high_shift), prod))
                else:
                    m.d.comb += wide.eq(prod)
                # the sum starts from zero: the accumulator clears as a tile's last step is
                # added (the FFs' synchronous reset, no gate in front of the adder), and the copy
                # the drain reads is taken from the adders' outputs (parts and their carries out)
                done = pctl.valid & pctl.last
                carries, copies = [], []
                for i, (lo, hi) in enumerate(bounds):
                    top = i == len(bounds) - 1
                    part = Signal(signed(hi - lo) if top else hi - lo, name=f"acc{i}_{r}_{c}")
                    cin = carries[i - 1] if i else 0
                    term = wide[lo:hi].as_signed() if top else wide[lo:hi]
                    total = Signal(signed(hi - lo) if top else hi - lo + 1, name=f"sum{i}_{r}_{c}")
                    m.d.comb += total.eq(part + term + cin)
                    copy = Signal(hi - lo if top else hi - lo + 1, name=f"copy{i}_{r}_{c}")
                    with m.If(done):
                        m.d.sync += [part.eq(0), copy.eq(total)]
                    with m.Elif(pctl.valid):
                        m.d.sync += part.eq(total[: hi - lo])
                    if not top:
                        carry = Signal(name=f"carry{i}_{r}_{c}")
                        with m.If(done):
                            m.d.sync += carry.eq(0)
                        with m.Elif(pctl.valid):
                            m.d.sync += carry.eq(total[hi - lo])
                        carries.append(carry)
                    copies.append(copy)
                res[r][c] = Cat(*copies)
                # pass a (with control) right and b down
                a_next = Signal(signed(self.a_width), name=f"a_{r}_{c}")
                ctl_next = Signal(ctl, name=f"ctl_{r}_{c}")
                b_next = Signal(signed(self.b_width), name=f"b_{r}_{c}")
                m.d.sync += [a_next.eq(a_val), ctl_next.eq(a_ctl), b_next.eq(b_val)]
                a_val, a_ctl = a_next, ctl_next
                b_down[c] = b_next

        # drain: wait for row 0, then copy one row per cycle (masked by the tile's position)
        # into the output register while the next tile accumulates
        # keep[c] of the row being copied is the sign of t[c] = (row0 + row) - (col0 + c) - strict,
        # kept in a register and stepped by one per row: no comparator on the drain path
        mask = Signal(Mask)
        row0 = Signal(OFFSET_BITS)
        col0 = Signal(OFFSET_BITS)
        start = Signal(2)
        diag = Signal(signed(OFFSET_BITS + 2))
        full = Signal()
        t = [Signal(signed(OFFSET_BITS + 2), name=f"mask_t_{c}") for c in range(C)]
        wait = Signal(range(self.latency))
        row = Signal(range(R))
        draining = Signal()
        # the tile's mask and position, registered every cycle (no enable: nothing waits on the
        # handshake); one cycle after a last beat they are its values
        info = Signal(data.StructLayout({"mask": Mask, "row0": OFFSET_BITS, "col0": OFFSET_BITS}))
        p = self.a.payload
        m.d.sync += [cap.eq(step & p.last), info.eq(Cat(p.mask, p.row0, p.col0))]
        with m.If(cap):
            m.d.sync += [
                busy.eq(1),
                wait.eq(self.latency - 3),
                row.eq(0),
                mask.eq(info.mask),
                row0.eq(info.row0),
                col0.eq(info.col0),
                start.eq(1),
            ]
        with m.Elif(busy & ~draining):
            # two cycles after the capture (long before the first row): the mask counters
            m.d.sync += start.eq(start << 1)
            with m.If(start[0]):
                m.d.sync += [
                    full.eq(mask == Mask.FULL),
                    diag.eq(row0 - col0 - (mask == Mask.STRICT_LOWER)),
                ]
            with m.If(start[1]):
                m.d.sync += [t[c].eq(diag - c) for c in range(C)]
            with m.If(wait == 0):
                m.d.sync += draining.eq(1)
            with m.Else():
                m.d.sync += wait.eq(wait - 1)

        out_valid = Signal()
        load = Signal()
        m.d.comb += [load.eq(draining & (~out_valid | self.c.ready)), self.c.valid.eq(out_valid)]
        with m.If(load):
            m.d.sync += [
                out_valid.eq(1),
                self.c.payload.row.eq(row),
                self.c.payload.last.eq(row == R - 1),
            ]
            with m.If(row == R - 1):
                m.d.sync += [draining.eq(0), busy.eq(0)]
            with m.Else():
                m.d.sync += row.eq(row + 1)
            m.d.sync += [t[c].eq(t[c] + 1) for c in range(C)]
        with m.Elif(self.c.ready):
            m.d.sync += out_valid.eq(0)
        for c in range(C):
            keep = Signal(name=f"keep_{c}")
            m.d.comb += keep.eq(full | ~t[c][-1])
            held = Signal(len(res[0][c]), name=f"drain_{c}")
            with m.Switch(row):
                for r in range(R):
                    with m.Case(r):
                        m.d.comb += held.eq(res[r][c])
            # the copy's parts, each with its carry out above it: the carries join the next part
            parts, carries, pos = [], 0, 0
            for lo, hi in bounds:
                parts.append(held[pos : pos + hi - lo])
                if hi < self.acc_width:
                    carries += held[pos + hi - lo] << hi
                pos += hi - lo + 1
            value = Signal(signed(self.acc_width), name=f"value_{c}")
            m.d.comb += value.eq(Cat(*parts) + carries)
            with m.If(load):
                m.d.sync += self.c.payload.data[c].eq(Mux(keep, value, 0))
        return m


class ArrayFeed:
    """Steps into a :class:`MacArray` from the banked memories (hw/banks.py), through a FIFO.

    In the cycle a step is issued (``issue``), drive ``ctl`` (the ``a`` payload's control: last,
    mask, row0, col0, high) and the memory read commands; ``READ_LATENCY`` cycles later
    (``ctl_read`` is then the step's control) drive
    ``a_words`` (``a_lanes`` words) and ``b_words`` (``cols`` words) with the read data, in
    the chunk buffers' bank order with their rotations ``a_rot`` and ``b_rot`` (0 for words
    already in lane order): they are rotated into lane order as they leave the FIFO (one
    rotator per side for every buffer the reader selects from), and the array takes the first
    ``rows`` lanes of A. Issue only while ``in_flight`` (steps issued and not yet taken by the
    array) is below ``depth``: then the FIFO never overflows and the memories never wait.
    """

    def __init__(self, m, arr: MacArray, issue, depth: int, name: str, a_lanes: int):
        ctl_layout = data.StructLayout({n: f.shape for n, f in arr.a_layout if n != "data"})
        a_words = data.ArrayLayout(signed(arr.a_width), a_lanes)
        b_words = arr.b_layout["data"].shape
        step = data.StructLayout(
            {
                "ctl": ctl_layout,
                "a": a_words,
                "a_rot": rotation_shape(a_lanes),
                "b": b_words,
                "b_rot": rotation_shape(arr.cols),
            }
        )
        self.depth = depth
        self.ctl = Signal(ctl_layout, name=f"{name}_ctl")
        self.a_words = Signal(a_words, name=f"{name}_a_words")
        self.b_words = Signal(b_words, name=f"{name}_b_words")
        self.a_rot = Signal(rotation_shape(a_lanes), name=f"{name}_a_rot")
        self.b_rot = Signal(rotation_shape(arr.cols), name=f"{name}_b_rot")
        self.in_flight = Signal(range(depth + READ_LATENCY + 1), name=f"{name}_in_flight")
        fifo = SyncFIFOBuffered(width=step.size, depth=depth)
        m.submodules[name] = fifo
        issued = delay_line(m, issue, READ_LATENCY, f"{name}_issued")  # delayed with the reads
        ctl = delay_line(m, self.ctl, READ_LATENCY, f"{name}_ctl")[-1]
        self.ctl_read = ctl  # the step's control as its read data arrives
        w = Signal(step, name=f"{name}_w")
        m.d.comb += [
            w.ctl.eq(ctl),
            w.a.eq(self.a_words),
            w.a_rot.eq(self.a_rot),
            w.b.eq(self.b_words),
            w.b_rot.eq(self.b_rot),
            fifo.w_data.eq(w),
            fifo.w_en.eq(issued[-1]),
            self.in_flight.eq(fifo.level + sum(issued[1:])),
        ]
        r = data.View(step, fifo.r_data)
        a_lanes = in_lane_order(m, r.a, r.a_rot, f"{name}_a")
        b_lanes = in_lane_order(m, r.b, r.b_rot, f"{name}_b")
        m.d.comb += [
            arr.a.valid.eq(fifo.r_rdy),
            arr.b.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(arr.a.ready),
        ]
        m.d.comb += [arr.a.payload[n].eq(r.ctl[n]) for n, _ in ctl_layout]
        m.d.comb += [arr.a.payload.data[i].eq(a_lanes[i]) for i in range(arr.rows)]
        m.d.comb += [arr.b.payload.data[i].eq(b_lanes[i]) for i in range(arr.cols)]


def state_half(word, high):
    """A two-pass state step's B operand (``state_passes = 2``): the low ``LOW_BITS`` bits of
    ``word`` as a non-negative number, or (``high``) the bits above them, signed."""
    return Mux(high, word[LOW_BITS:].as_signed(), Cat(word[:LOW_BITS], Const(0, 1)).as_signed())


def mac_layouts(rows, cols, a_width, b_width, acc_width, high=False):
    """Payload layouts of the ``a``, ``b`` and ``c`` streams (also used by testbenches)."""
    a = data.StructLayout(
        {
            "data": data.ArrayLayout(signed(a_width), rows),
            "last": 1,
            "mask": Mask,
            "row0": OFFSET_BITS,
            "col0": OFFSET_BITS,
        }
        | ({"high": 1} if high else {})
    )
    b = data.StructLayout({"data": data.ArrayLayout(signed(b_width), cols)})
    c = data.StructLayout(
        {
            "data": data.ArrayLayout(signed(acc_width), cols),
            "row": range(rows),
            "last": 1,
        }
    )
    return a, b, c


def product_multipliers(a_width: int, b_width: int, mult_width: int = MULT_WIDTH) -> int:
    """Signed ``mult_width`` x ``mult_width`` hard multipliers (ECP5 MULT18X18D: 18; iCE40
    SB_MAC16: 16) one signed ``a_width`` x ``b_width`` product takes: an operand wider than one
    multiplier splits into non-negative low parts of ``mult_width - 1`` bits and a signed top
    part, as the array splits the state, and the product takes one multiplier per pair of
    parts."""

    def parts(width):
        return 1 + max(0, -(-(width - mult_width) // (mult_width - 1)))

    return parts(a_width) * parts(b_width)


def operand_widths(cfg) -> tuple[int, int]:
    """Widest A operand and widest B operand over the chunk and decode programs of ``cfg``
    (with ``state_passes = 2`` a state word enters in halves of at most ``MULT_WIDTH`` bits)."""
    from deltanet_hw.golden.program import Product, chunk_program

    a_width = b_width = 2
    for program in (chunk_program(cfg.chunk_size, cfg.gated), chunk_program(1, cfg.gated, True)):
        fmts = program.formats()
        for op in program.ops:
            if isinstance(op, Product):
                for t in op.terms:
                    a_width = max(a_width, getattr(cfg, fmts[t.a]).width)
                    b = getattr(cfg, fmts[t.b]).width
                    if t.b == "S" and cfg.state_passes == 2:
                        b = MULT_WIDTH  # a half: the low bits unsigned, or the high bits
                    b_width = max(b_width, b)
    return a_width, b_width
