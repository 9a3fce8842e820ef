"""The DeltaNet core: token stream in, output stream out, state on chip.

Blocks: the framer tags each input word (head, vector, channel) for the BetaPhi pipeline
(hw/beta_phi.py); the loader writes BetaPhi's words into the chunk buffers (computing
Kb = beta k and Vb = beta v on the way); the chunk scheduler (hw/scheduler.py) runs the
microcode on the MAC array; the output streamer sends O in token order. Two buffer halves let
chunk n + 1 load while chunk n computes and chunk n - 1 leaves.

Ports (AXI4-Stream compatible: ``data``, ``valid``, ``ready``, ``last``):

``tok_in``
    One ``fmt_input`` word per beat. A token is, for each head in turn: the beta logit (ignored
    when ``beta_mode`` is constant), then q (d_k words), k (d_k words), v (d_v words). ``last``
    marks the final word of the sequence (token SEQ_LEN - 1, head HEADS - 1, v[d_v - 1]).
``tok_out``
    One ``fmt_o`` word per beat: for each token, for each head, o (d_v words); ``last`` on the
    final word of the sequence.
``state_in``, ``state_out``
    The state of every configured head, one ``fmt_state`` word per beat, in the order head, row
    k, column v; ``last`` on the final word. Load while idle; read back with CTRL.READ_STATE.
``conv_wr``
    Short-convolution weights (BetaPhi's port).
``csr``
    Registers: ``addr``, ``w_en``, ``w_data`` (32 bits) in, ``r_data`` out (combinational).

Registers (word addresses, :data:`REGISTERS`): CTRL (write 1 to act: bit 0 START, bit 1
ZERO_STATE with START, bit 2 READ_STATE, bit 3 CLEAR_ERRORS), SEQ_LEN, HEADS, MODE (0 chunkwise
prefill, 1 recurrent decode), STATUS (bit 0 BUSY, 1 DONE, 2 ERROR, 3 READING, 4 ABORTED),
ERRORS (sticky, :data:`ERROR_BITS`), CYCLES (first input accepted to last output sent, inclusive,
of the last run), and from OP_CYCLES on one counter per microcode instruction (cycles the
scheduler spent on it in the last run).

Errors: a START with SEQ_LEN 0 or above ``max_tokens`` (BAD_LENGTH) or HEADS 0 or above the
configured heads (BAD_HEADS) does not start; START, READ_STATE or a state load while busy sets
BUSY and is ignored (the state load waits); ``tok_in.last`` on any word but the final one, or
missing on the final one, sets FRAMING and aborts the run (STATUS.ABORTED; reset the core);
a wrong ``state_in.last`` sets STATE_FRAMING. SATURATED: some value did not fit its format.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .banks import READ_LATENCY
from .beta_phi import BetaPhi, Kind, beta_phi_layouts
from .chunk_buffer import ChunkBuffer, ReadMode, bank_rotation, first_lane, in_bank_order
from .fixed import requantize
from .microcode import BUFFER_FORMATS, CHUNK_INPUTS, check_core_config
from .scheduler import PortMux, Scheduler
from .skid_buffer import SkidBuffer
from .state_sram import StateSram

__all__ = ["ERROR_BITS", "LOADER_STAGES", "REGISTERS", "DeltaNetCore", "token_words"]

LOADER_STAGES = 2  # registers from BetaPhi's output to the chunk buffers' write ports

REGISTERS = {
    "CTRL": 0,
    "SEQ_LEN": 1,
    "HEADS": 2,
    "MODE": 3,
    "STATUS": 4,
    "ERRORS": 5,
    "CYCLES": 6,
    "OP_CYCLES": 16,
}
CTRL_BITS = {"START": 0, "ZERO_STATE": 1, "READ_STATE": 2, "CLEAR_ERRORS": 3}
STATUS_BITS = {"BUSY": 0, "DONE": 1, "ERROR": 2, "READING": 3, "ABORTED": 4}
ERROR_BITS = {
    "SATURATED": 0,
    "BAD_LENGTH": 1,
    "BAD_HEADS": 2,
    "FRAMING": 3,
    "BUSY": 4,
    "STATE_FRAMING": 5,
}


def token_words(cfg):
    """The vectors of one head of a token on ``tok_in``: (kind, length) in order."""
    return ((Kind.BETA, 1), (Kind.Q, cfg.d_k), (Kind.K, cfg.d_k), (Kind.V, cfg.d_v))


class DeltaNetCore(wiring.Component):
    """The whole core of a :class:`~deltanet_hw.config.CoreConfig` (see the module docstring)."""

    def __init__(self, cfg):
        try:
            check_core_config(cfg)
            self.beta_phi = BetaPhi(cfg)  # refuses what BetaPhi cannot compute (elu1)
        except ValueError:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        self.cfg = cfg
        word = lambda width: data.StructLayout({"data": signed(width), "last": 1})  # noqa: E731
        super().__init__(
            {
                "tok_in": In(stream.Signature(word(cfg.fmt_input.width))),
                "tok_out": Out(stream.Signature(word(cfg.fmt_o.width))),
                "state_in": In(stream.Signature(word(cfg.fmt_state.width))),
                "state_out": Out(stream.Signature(word(cfg.fmt_state.width))),
                "conv_wr": In(stream.Signature(beta_phi_layouts(cfg)[2])),
                "csr": In(
                    wiring.Signature(
                        {"addr": Out(8), "w_en": Out(1), "w_data": Out(32), "r_data": In(32)}
                    )
                ),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        H, C, L = cfg.heads, cfg.chunk_size, cfg.array_cols
        dmax = max(cfg.d_k, cfg.d_v)
        m.submodules.beta_phi = bp = self.beta_phi
        wiring.connect(m, wiring.flipped(self.conv_wr), bp.conv_wr)
        # the framer's words reach BetaPhi through a register stage (placed apart: timing)
        m.submodules.beta_phi_in = bp_in = SkidBuffer(bp.word_in)
        wiring.connect(m, bp_in.o, bp.i)

        # ---------------- buffers ---------------------------------------------------------
        def width(name):
            return getattr(cfg, BUFFER_FORMATS[name]).width

        bufs = {}
        for name in CHUNK_INPUTS:
            cols = cfg.d_v if name == "Vb" else cfg.d_k
            bufs[name] = ChunkBuffer(2 * H * C, cols, L, width(name))
        for name, cols in (
            ("A", C),
            ("T", C),
            ("Ts", C),
            ("QK", C),
            ("W", cfg.d_k),
            ("U", cfg.d_v),
            ("Vn", cfg.d_v),
        ):
            bufs[name] = ChunkBuffer(H * C, cols, L, width(name))  # one region per head
        bufs["O"] = ChunkBuffer(2 * H * C, cfg.d_v, L, width("O"))
        bufs["S"] = StateSram.from_config(cfg)
        for name, buf in bufs.items():
            m.submodules[f"buf_{name}"] = buf
            if name not in ("O",):
                m.d.comb += buf.rd_data.ready.eq(1)  # every reader takes the word at once
        reads, writes = PortMux(), PortMux()

        # ---------------- registers -------------------------------------------------------
        seq_len = Signal(32)
        heads = Signal(8, init=H)
        mode = Signal()
        errors = Signal(len(ERROR_BITS))
        err = {name: Signal(name=f"err_{name.lower()}") for name in ERROR_BITS}
        m.d.sync += errors.eq(errors | Cat(*[err[n] for n in ERROR_BITS]))
        busy = Signal()
        done = Signal()
        aborted = Signal()
        reading = Signal()
        cycles = Signal(32)
        csr = self.csr
        ctrl = Signal(4)
        m.d.comb += ctrl.eq(Mux(csr.w_en & (csr.addr == REGISTERS["CTRL"]), csr.w_data[:4], 0))
        with m.If(csr.w_en), m.Switch(csr.addr):
            with m.Case(REGISTERS["SEQ_LEN"]):
                m.d.sync += seq_len.eq(csr.w_data)
            with m.Case(REGISTERS["HEADS"]):
                m.d.sync += heads.eq(csr.w_data)
            with m.Case(REGISTERS["MODE"]):
                m.d.sync += mode.eq(csr.w_data[0])
        with m.If(ctrl[CTRL_BITS["CLEAR_ERRORS"]]):
            m.d.sync += errors.eq(0)
        sched = self.scheduler = Scheduler(cfg, bufs, reads, writes)
        go = Signal()  # registered START: the run's counters clear the cycle after the write
        status = Cat(busy | go, done & ~go, errors.any(), reading, aborted)
        with m.Switch(csr.addr):
            for name, value in (
                ("SEQ_LEN", seq_len),
                ("HEADS", heads),
                ("MODE", mode),
                ("STATUS", status),
                ("ERRORS", errors),
                ("CYCLES", cycles),
            ):
                with m.Case(REGISTERS[name]):
                    m.d.comb += csr.r_data.eq(value)
            for n, counter in enumerate(sched.counters):
                with m.Case(REGISTERS["OP_CYCLES"] + n):
                    m.d.comb += csr.r_data.eq(counter)

        # ---------------- run control ------------------------------------------------------
        start = ctrl[CTRL_BITS["START"]]
        bad_len = (seq_len == 0) | (seq_len > cfg.max_tokens)
        bad_heads = (heads == 0) | (heads > H)
        # A valid START latches the run's parameters (``launch``, from the register write) and
        # sets ``go`` for the next cycle: ``go`` clears every counter of the core, so it comes
        # from a flip-flop rather than from the bus's decode (a path across the die otherwise).
        launch = Signal()
        idle = ~busy & ~reading & ~aborted & ~go
        m.d.comb += [
            err["BAD_LENGTH"].eq(start & bad_len),
            err["BAD_HEADS"].eq(start & bad_heads),
            err["BUSY"].eq((start | ctrl[CTRL_BITS["READ_STATE"]]) & ~idle),
            launch.eq(start & ~bad_len & ~bad_heads & idle),
        ]
        m.d.sync += go.eq(launch)
        T = Signal(range(cfg.max_tokens + 1))
        Hr = Signal(range(H + 1))
        decode = Signal()
        zero = Signal()  # ZERO_STATE came with the START
        chunk_len = Signal(range(C + 1))  # tokens per chunk of this run
        m.d.comb += chunk_len.eq(Mux(decode, 1, C))
        clearing = Signal()  # zeroing the state before the run
        clr_addr = Signal(range(H * cfg.d_k * bufs["S"].tiles + 1))
        with m.If(launch):
            m.d.sync += [
                T.eq(seq_len),
                Hr.eq(heads),
                decode.eq(mode),
                zero.eq(ctrl[CTRL_BITS["ZERO_STATE"]]),
            ]
        with m.If(go):
            m.d.sync += [busy.eq(1), done.eq(0), clearing.eq(zero), clr_addr.eq(0)]
        m.d.comb += sched.clear.eq(go)

        # state zeroing: one row segment per cycle
        S = bufs["S"]
        tiles = S.tiles

        def segment(n):
            """State SRAM address of row segment number n (head-major, then row, then tile)."""
            return {
                "head": n // (cfg.d_k * tiles),
                "row": (n // tiles) % cfg.d_k,
                "tile": n % tiles,
            }

        writes.add(
            S.wr,
            clearing,
            segment(clr_addr) | {"data": 0},
        )
        with m.If(clearing):
            m.d.sync += clr_addr.eq(clr_addr + 1)
            with m.If(clr_addr == H * cfg.d_k * tiles - 1):
                m.d.sync += clearing.eq(0)

        # ---------------- framer: tok_in -> BetaPhi ---------------------------------------
        frame = token_words(cfg)
        in_tok = Signal(range(cfg.max_tokens + 1))
        in_head = Signal(range(H))
        in_vec = Signal(range(len(frame)))
        in_chan = Signal(range(dmax))
        in_done = Signal()  # every word of the run accepted
        vec_len = Signal(range(dmax + 1))
        with m.Switch(in_vec):
            for n, (_, length) in enumerate(frame):
                with m.Case(n):
                    m.d.comb += vec_len.eq(length)
        kinds = Array([Const(kind.value, 3) for kind, _ in frame])
        vec_end = Signal()  # the vector's last word
        final_word = Signal()
        m.d.comb += [
            vec_end.eq(in_chan == vec_len - 1),
            final_word.eq(
                (in_tok == T - 1) & (in_head == Hr - 1) & (in_vec == len(frame) - 1) & vec_end
            ),
        ]
        accepting = busy & ~in_done & ~aborted
        m.d.comb += [
            bp_in.i.valid.eq(self.tok_in.valid & accepting),
            self.tok_in.ready.eq(bp_in.i.ready & accepting),
            bp_in.i.payload.kind.eq(kinds[in_vec]),
            bp_in.i.payload.head.eq(in_head),
            bp_in.i.payload.chan.eq(in_chan),
            bp_in.i.payload.first.eq(in_tok == 0),
            bp_in.i.payload.last.eq(vec_end),
            bp_in.i.payload.data.eq(self.tok_in.payload.data),
        ]
        accept = self.tok_in.valid & self.tok_in.ready
        with m.If(accept):
            with m.If(self.tok_in.payload.last != final_word):
                m.d.comb += err["FRAMING"].eq(1)
                m.d.sync += [aborted.eq(1), busy.eq(0)]
            with m.If(final_word):
                m.d.sync += in_done.eq(1)
            with m.If(vec_end):
                m.d.sync += in_chan.eq(0)
                with m.If(in_vec == len(frame) - 1):
                    m.d.sync += in_vec.eq(0)
                    with m.If(in_head == Hr - 1):
                        m.d.sync += [in_head.eq(0), in_tok.eq(in_tok + 1)]
                    with m.Else():
                        m.d.sync += in_head.eq(in_head + 1)
                with m.Else():
                    m.d.sync += in_vec.eq(in_vec + 1)
            with m.Else():
                m.d.sync += in_chan.eq(in_chan + 1)
        with m.If(go):
            m.d.sync += [in_tok.eq(0), in_head.eq(0), in_vec.eq(0), in_chan.eq(0), in_done.eq(0)]

        # ---------------- loader: BetaPhi -> chunk buffers ----------------------------------
        # LOADER_STAGES registers between BetaPhi's output and the buffers' write ports: stage
        # p holds BetaPhi's word and its product with beta; it is rounded into its row segment,
        # and a whole segment's write is registered in stage w. A chunk is ``loaded`` the cycle
        # after its last write landed.
        loaded = Signal(2)  # a half holds a whole chunk for the scheduler
        rows_of = Array([Signal(range(C + 1), name=f"rows_{h}") for h in range(2)])
        ld_half = Signal()
        ld_row = Signal(range(C))
        ld_tokens = Signal(range(cfg.max_tokens + 1))  # tokens of finished chunks
        # tokens in the chunk being loaded, and whether ld_row is its last row: registered (two
        # cycles behind ld_tokens, one behind ld_row; both change only at a token's end, and
        # tokens end at least four words apart), so the chunk-end test off BetaPhi's ready is
        # short and the tokens left are subtracted in a cycle of their own
        ld_rows = Signal(range(C + 1))
        ld_last_row = Signal()
        left = Signal.like(ld_tokens)
        m.d.sync += left.eq(T - ld_tokens)
        rows_now = Mux(left < chunk_len, left, chunk_len)
        m.d.sync += [ld_rows.eq(rows_now), ld_last_row.eq(ld_row + 1 == rows_now)]
        beta_cur = Signal(signed(cfg.fmt_beta.width))
        o = bp.o.payload
        p_valid = Signal()  # stage p: BetaPhi's word and its product with beta
        p = Signal.like(o, name="p_word")
        p_prod = Signal(signed(len(o.data) + len(beta_cur)))
        p_token_end = p_valid & (p.kind == Kind.V) & p.last & (p.head == Hr - 1)
        p_chunk_end = p_token_end & ld_last_row
        # a chunk's last word holds the next one back until ld_half has moved on
        m.d.comb += bp.o.ready.eq(~loaded.bit_select(ld_half, 1) & ~p_chunk_end)
        take = bp.o.valid & bp.o.ready
        m.d.sync += p_valid.eq(take)
        with m.If(take):
            m.d.sync += [p.eq(o), p_prod.eq(o.data * beta_cur)]
        with m.If(take & (o.kind == Kind.BETA)):
            m.d.sync += beta_cur.eq(o.data)

        base = (ld_half * H + p.head) * C + ld_row
        seg = Signal(data.ArrayLayout(signed(max(width(n) for n in CHUNK_INPUTS)), L))
        seg_b = Signal(data.ArrayLayout(signed(max(width("Kb"), width("Vb"))), L))
        lane = p.chan[: (L - 1).bit_length()] if L > 1 else Const(0, 1)
        fb = cfg.fmt_beta.frac_bits
        kb, kb_over = requantize(
            m, p_prod, cfg.fmt_qk, "loader_kb", frac_in=cfg.fmt_qk.frac_bits + fb
        )
        vb, vb_over = requantize(
            m, p_prod, cfg.fmt_v, "loader_vb", frac_in=cfg.fmt_v.frac_bits + fb
        )
        scaled = Signal.like(seg_b[0])
        m.d.comb += scaled.eq(Mux(p.kind == Kind.V, vb, kb))
        with m.If(
            p_valid
            & ((p.kind == Kind.K) | (p.kind == Kind.V))
            & Mux(p.kind == Kind.V, vb_over, kb_over)
        ):
            m.d.comb += err["SATURATED"].eq(1)
        with m.If(p_valid):
            m.d.sync += [seg[lane].eq(p.data), seg_b[lane].eq(scaled)]
        # stage w: a whole row segment, written into the buffers of its kind
        w_valid = Signal()
        w_kind = Signal.like(p.kind)
        w_i = Signal.like(bufs["Q"].wr.payload.i)
        w_j = Signal(range(dmax))
        w_seg = Signal.like(seg)
        w_seg_b = Signal.like(seg_b)
        m.d.sync += w_valid.eq(p_valid & (lane == L - 1))
        with m.If(p_valid & (lane == L - 1)):
            m.d.sync += [w_kind.eq(p.kind), w_i.eq(base), w_j.eq(p.chan - (L - 1))]
            for t in range(L):
                last_word = (p.data, scaled) if t == L - 1 else (seg[t], seg_b[t])
                m.d.sync += [w_seg[t].eq(last_word[0]), w_seg_b[t].eq(last_word[1])]
        # both segments in the buffers' bank order, rotated once for the buffers they go to
        rot = bank_rotation(w_i, 0, L)  # w_j is a multiple of L: the row's rotation
        w_banks = in_bank_order(m, w_seg, rot, "load")
        w_banks_b = in_bank_order(m, w_seg_b, rot, "load_b")
        for name, kind, src in (
            ("Q", Kind.Q, w_banks),
            ("K", Kind.K, w_banks),
            ("Kt", Kind.K, w_banks),
            ("Kb", Kind.K, w_banks_b),
            ("Vb", Kind.V, w_banks_b),
        ):
            buf = bufs[name]
            words = Signal(buf.wr.payload.data.shape(), name=f"load_{name}")
            m.d.comb += [words[t].eq(src[t]) for t in range(L)]
            m.d.comb += [
                buf.wr.valid.eq(w_valid & (w_kind == kind)),
                buf.wr.payload.mode.eq(ReadMode.ROW),
                buf.wr.payload.i.eq(w_i),
                buf.wr.payload.j.eq(w_j),
                buf.wr.payload.data.eq(words),
            ]
        filled = Signal()  # the chunk's last segment is in stage w
        filled_half = Signal()
        m.d.sync += filled.eq(p_chunk_end)
        with m.If(filled):
            m.d.sync += loaded.bit_select(filled_half, 1).eq(1)
        with m.If(p_token_end):
            with m.If(ld_last_row):
                m.d.sync += [
                    ld_row.eq(0),
                    ld_half.eq(~ld_half),
                    ld_tokens.eq(ld_tokens + ld_rows),
                    rows_of[ld_half].eq(ld_rows),
                    filled_half.eq(ld_half),
                ]
            with m.Else():
                m.d.sync += ld_row.eq(ld_row + 1)
        with m.If(go):
            m.d.sync += [ld_row.eq(0), ld_half.eq(0), ld_tokens.eq(0), p_valid.eq(0)]
            m.d.sync += [w_valid.eq(0), filled.eq(0)]

        # ---------------- compute: one chunk at a time ---------------------------------------
        out_full = Signal(2)  # a half of O holds a computed chunk
        out_rows = Array([Signal(range(C + 1), name=f"out_rows_{h}") for h in range(2)])
        cp_half = Signal()
        cp_busy = Signal()
        cp_tokens = Signal(range(cfg.max_tokens + 1))
        sched.elaborate(m)
        ready_to_compute = (
            busy
            & ~cp_busy
            & ~clearing
            & loaded.bit_select(cp_half, 1)
            & ~out_full.bit_select(cp_half, 1)
            & (cp_tokens < T)
        )
        m.d.comb += [
            sched.start.eq(ready_to_compute),
            sched.mode.eq(decode),
            sched.rows.eq(rows_of[cp_half]),
            sched.half.eq(cp_half),
            sched.heads.eq(Hr),
        ]
        with m.If(ready_to_compute):
            m.d.sync += cp_busy.eq(1)
        with m.If(sched.done):
            m.d.sync += [
                cp_busy.eq(0),
                cp_half.eq(~cp_half),
                cp_tokens.eq(cp_tokens + rows_of[cp_half]),
                out_rows[cp_half].eq(rows_of[cp_half]),
                out_full.bit_select(cp_half, 1).eq(1),
            ]
            m.d.sync += loaded.bit_select(cp_half, 1).eq(0)  # the loader may refill it
        with m.If(sched.saturated | bp.saturated):
            m.d.comb += err["SATURATED"].eq(1)
        with m.If(go):
            m.d.sync += [cp_half.eq(0), cp_tokens.eq(0), loaded.eq(0), out_full.eq(0)]

        # ---------------- output streamer ---------------------------------------------------
        obuf = bufs["O"]
        st_half = Signal()
        st_row = Signal(range(C))
        st_head = Signal(range(H))
        st_chan = Signal(range(cfg.d_v))
        st_tokens = Signal(range(cfg.max_tokens + 1))
        want = busy & out_full.bit_select(st_half, 1)
        reads.add(
            obuf.rd_cmd,
            want,
            {"mode": ReadMode.ROW, "i": (st_half * H + st_head) * C + st_row, "j": st_chan},
        )
        o_take = obuf.rd_cmd.valid & obuf.rd_cmd.ready
        # the sequence's last word: its read was taken and it is the only one left in the buffer's
        # read pipeline (READ_LATENCY deep)
        st_last_taken = Signal()
        st_reads = Signal(range(READ_LATENCY + 1))  # reads taken, words not yet sent
        seq_end = (st_tokens + st_row == T - 1) & (st_head == Hr - 1) & (st_chan == cfg.d_v - 1)
        with m.If(o_take & seq_end):
            m.d.sync += st_last_taken.eq(1)
        m.d.sync += st_reads.eq(st_reads + o_take - (self.tok_out.valid & self.tok_out.ready))
        m.d.comb += [
            self.tok_out.valid.eq(obuf.rd_data.valid),
            self.tok_out.payload.data.eq(first_lane(obuf.rd_data.payload)),
            self.tok_out.payload.last.eq(st_last_taken & (st_reads == 1)),
            obuf.rd_data.ready.eq(self.tok_out.ready),
        ]
        with m.If(o_take):
            with m.If(st_chan == cfg.d_v - 1):
                m.d.sync += st_chan.eq(0)
                with m.If(st_head == Hr - 1):
                    m.d.sync += st_head.eq(0)
                    with m.If(st_row + 1 == out_rows[st_half]):
                        m.d.sync += [
                            st_row.eq(0),
                            st_half.eq(~st_half),
                            st_tokens.eq(st_tokens + out_rows[st_half]),
                            out_full.bit_select(st_half, 1).eq(0),
                        ]
                    with m.Else():
                        m.d.sync += st_row.eq(st_row + 1)
                with m.Else():
                    m.d.sync += st_head.eq(st_head + 1)
            with m.Else():
                m.d.sync += st_chan.eq(st_chan + 1)
        out_sent = self.tok_out.valid & self.tok_out.ready
        with m.If(out_sent & self.tok_out.payload.last):
            m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(go):
            m.d.sync += [
                st_half.eq(0),
                st_row.eq(0),
                st_head.eq(0),
                st_chan.eq(0),
                st_tokens.eq(0),
                st_last_taken.eq(0),
            ]

        # cycles: first input accepted .. last output sent, inclusive
        counting = Signal()
        started = Signal()
        with m.If(go):
            m.d.sync += [cycles.eq(0), counting.eq(0), started.eq(0)]
        with m.Elif(accept & ~started):
            m.d.sync += [cycles.eq(1), counting.eq(1), started.eq(1)]
        with m.Elif(counting):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(out_sent & self.tok_out.payload.last):
                m.d.sync += counting.eq(0)

        # ---------------- state load and read-back ------------------------------------------
        n_state = H * cfg.d_k * cfg.d_v
        sl_idx = Signal(range(n_state))
        sl_seg = Signal(data.ArrayLayout(signed(cfg.fmt_state.width), L))
        sl_lane = sl_idx % L
        m.d.comb += self.state_in.ready.eq(idle & ~launch)
        sl_take = self.state_in.valid & self.state_in.ready
        sl_full = Signal.like(sl_seg)
        for t in range(L):
            m.d.comb += sl_full[t].eq(Mux(sl_lane == t, self.state_in.payload.data, sl_seg[t]))
        with m.If(sl_take):
            m.d.sync += sl_seg[sl_lane].eq(self.state_in.payload.data)
            m.d.sync += sl_idx.eq(Mux(sl_idx == n_state - 1, 0, sl_idx + 1))
            with m.If(self.state_in.payload.last != (sl_idx == n_state - 1)):
                m.d.comb += err["STATE_FRAMING"].eq(1)
                m.d.sync += sl_idx.eq(0)
        per_head = cfg.d_k * cfg.d_v
        writes.add(
            S.wr,
            sl_take & (sl_lane == L - 1),
            {
                "head": sl_idx // per_head,
                "row": (sl_idx // cfg.d_v) % cfg.d_k,
                "tile": (sl_idx % cfg.d_v) // L,
                "data": sl_full,
            },
        )

        rb_seg = Signal(range(H * cfg.d_k * tiles + 1))  # next row segment to read
        rb_have = Signal()  # the segment's words are in rb_words
        rb_pending = Signal()  # a read was issued, its words not yet in rb_words
        rb_lane = Signal(range(L))
        rb_words = Signal(data.ArrayLayout(signed(cfg.fmt_state.width), L))
        with m.If(ctrl[CTRL_BITS["READ_STATE"]] & idle):
            m.d.sync += [reading.eq(1), rb_seg.eq(0), rb_have.eq(0), rb_lane.eq(0)]
        issue_rb = reading & ~rb_have & ~rb_pending & (rb_seg < H * cfg.d_k * tiles)
        reads.add(
            S.rd_cmd,
            issue_rb,
            segment(rb_seg),
        )
        with m.If(issue_rb):
            m.d.sync += rb_pending.eq(1)
        with m.If(rb_pending & S.rd_data.valid):  # nothing else reads S while reading
            m.d.sync += [
                rb_pending.eq(0),
                rb_words.eq(S.rd_data.payload),
                rb_have.eq(1),
                rb_seg.eq(rb_seg + 1),
            ]
        rb_final = (rb_seg == H * cfg.d_k * tiles) & (rb_lane == L - 1)
        m.d.comb += [  # d_v is a multiple of L: every lane of a segment is a state word
            self.state_out.valid.eq(rb_have),
            self.state_out.payload.data.eq(rb_words[rb_lane]),
            self.state_out.payload.last.eq(rb_final),
        ]
        with m.If(rb_have & self.state_out.ready):
            m.d.sync += rb_lane.eq(rb_lane + 1)
            with m.If(rb_lane == L - 1):
                m.d.sync += [rb_have.eq(0), rb_lane.eq(0)]
                with m.If(rb_final):
                    m.d.sync += reading.eq(0)

        reads.build(m)
        writes.build(m)
        self.probe = {  # run-control signals, for Amaranth-simulator debugging
            "busy": busy,
            "loaded": loaded,
            "out_full": out_full,
            "errors": errors,
            "ld_row": ld_row,
            "ld_half": ld_half,
            "cp_busy": cp_busy,
        }
        return m
