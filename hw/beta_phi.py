"""BetaPhi pipeline: raw token words in, feature-mapped, normalised, scaled vectors and beta out.

The fixed-point definitions are golden/fixed.py's ``beta_phi`` and golden/nonlinear.py's tables;
this block computes the same bits. Words enter one per cycle, a vector at a time (the q, k and v
vectors of a head, then its beta logit and, when gated, its log decay g, each a vector of one),
and leave one per cycle in the same order.

Element pipeline (one word per cycle, all stages advance together):

1. short convolution: the channel's last ``conv_size - 1`` inputs (a history memory, cleared by
   ``first``) times the channel's weights (a memory written through ``conv_wr``), summed exactly
   and rounded into ``fmt_act`` (without convolution: the input re-rounded);
2. sigmoid from the table (one block RAM holding each entry and its slope, one multiplier for the
   interpolation), mirrored for negative inputs;
3. SiLU = x * sigmoid(x) into ``fmt_act`` (q, k) or ``fmt_v`` (v); ReLU and identity for q, k;
   beta = sigmoid(logit) (x 2 for ``neg_eigval``) or the constant, into ``fmt_beta``; g passes.

Vector stage (four buffers in rotation, so filling, normalising and draining overlap): while a
vector fills its buffer the sum of squares accumulates (each word's square registered first); a
small sequencer with one multiplier then computes the reciprocal square root (normalise to
[1, 4), table, Newton steps, query scale) and the buffer drains as x * r rounded into ``fmt_qk``.
v, beta and g vectors pass unchanged. ``saturated`` is a sticky flag: some word did not fit its
format (cleared by reset).
"""

import math

from amaranth import *
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.inputs import L2NORM_EPS
from ..golden.nonlinear import INTERNAL_FRAC, _rsqrt_lut, _sigmoid_lut
from .fixed import range_flags, requantize, round_finish, round_parts, shift_round

__all__ = ["BetaPhi", "Kind", "beta_phi_layouts"]

F = INTERNAL_FRAC


class Kind(enum.Enum, shape=3):
    Q = 0
    K = 1
    V = 2
    BETA = 3
    G = 4


def beta_phi_layouts(cfg):
    """Payload layouts of the input words, the output words and the convolution weight port."""
    d = max(cfg.d_k, cfg.d_v)
    in_width = max(cfg.fmt_input.width, cfg.fmt_gate.width)
    out_width = max(cfg.fmt_qk.width, cfg.fmt_v.width, cfg.fmt_beta.width, cfg.fmt_gate.width)
    word_in = data.StructLayout(
        {
            "kind": Kind,
            "head": range(cfg.heads),
            "chan": range(d),
            "first": 1,
            "last": 1,
            "data": signed(in_width),
        }
    )
    word_out = data.StructLayout(
        {
            "kind": Kind,
            "head": range(cfg.heads),
            "chan": range(d),
            "last": 1,
            "data": signed(out_width),
        }
    )
    conv = data.StructLayout(
        {
            "kind": Kind,
            "head": range(cfg.heads),
            "chan": range(d),
            "tap": range(cfg.conv_size),
            "data": signed(cfg.fmt_conv.width),
        }
    )
    return word_in, word_out, conv


def _stage(m, en, values, name):
    """Registers of the next pipeline stage, loaded from ``values`` whenever ``en``."""
    regs = {key: Signal(Value.cast(v).shape(), name=f"{name}_{key}") for key, v in values.items()}
    with m.If(en):
        m.d.sync += [regs[k].eq(Value.cast(v)) for k, v in values.items()]
    return regs


def _lut_rom(m, lut, name):
    """A read port on a ROM of (entry, slope) pairs of a golden table."""
    t = [int(v) for v in lut.table]
    width = max(abs(v) for v in t).bit_length() + 2
    init = [
        (t[i] & ((1 << width) - 1)) | (((t[i + 1] - t[i]) & ((1 << width) - 1)) << width)
        for i in range(len(t) - 1)
    ]
    mem = memory.Memory(shape=2 * width, depth=len(init), init=init)
    m.submodules[name] = mem
    return mem.read_port(domain="sync"), width


def _top_bit(x):
    """Index of the highest set bit of an unsigned value (0 for 0 and 1): a priority encoder as
    a tree of depth log2 of the width, not a chain."""
    x = Value.cast(x).as_unsigned()
    if len(x) == 1:
        return C(0, 0)  # no index bits
    bits = (len(x) - 1).bit_length()
    x = Cat(x, C(0, (1 << bits) - len(x)))  # padded to a power of two
    high, low = x[1 << (bits - 1) :], x[: 1 << (bits - 1)]
    return Cat(Mux(high.any(), _top_bit(high), _top_bit(low)), high.any())


def _pieces(v):
    """``v`` (signed) as hard-multiplier operands: ``[(piece, shift)]``, 17-bit unsigned low
    pieces and a signed top piece of at most 18 bits (ECP5 MULT18X18D, iCE40 SB_MAC16 inputs)."""
    v = Value.cast(v).as_signed()
    if len(v) <= 18:
        return [(v, 0)]
    return [(v[:17], 0)] + [(p, s + 17) for p, s in _pieces(v[17:].as_signed())]


def _partial_products(m, x, y, en, name):
    """``x * y`` as registered partial products (loaded when ``en``), one hard multiplier each
    and no adder before its register: ``[(product, shift)]``; their shifted sum is ``x * y``."""
    out = []
    for i, (a, sa) in enumerate(_pieces(x)):
        for j, (b, sb) in enumerate(_pieces(y)):
            part = Signal(signed(len(a) + len(b) + 1), name=f"{name}_{i}{j}")
            with m.If(en):
                m.d.sync += part.eq(a * b)
            out.append((part, sa + sb))
    return out


def _joined(partials):
    """The product :func:`_partial_products` split: the sum of its shifted parts."""
    return sum(part << shift for part, shift in partials)


def _lut_index(m, lut, x, x_frac, name):
    """Table index and fraction (and the fraction's bits) of ``x`` (clamped to the domain)."""
    lo = round(lut.lo * 2**x_frac)
    top = (1 << (lut.span_log2 + x_frac)) - 1
    sh = lut.span_log2 + x_frac - lut.bits
    assert sh > 0, "tables are finer than their inputs"
    offset = Signal(range(top + 1), name=f"{name}_offset")
    diff = Value.cast(x).as_signed() - lo
    with m.If(diff < 0):
        m.d.comb += offset.eq(0)
    with m.Elif(diff > top):
        m.d.comb += offset.eq(top)
    with m.Else():
        m.d.comb += offset.eq(diff)
    return offset[sh:], offset[:sh], sh


class BetaPhi(wiring.Component):
    """The beta/phi pipeline of a :class:`~deltanet_hw.config.CoreConfig`.

    Members
    -------
    i : In(stream.Signature(word_in))
        ``kind``, ``head``, ``chan``, ``first`` (first token of a sequence), ``last`` (last word
        of the vector), ``data`` (``fmt_input``, or ``fmt_gate`` for g).
    o : Out(stream.Signature(word_out))
        The same framing, ``data`` in ``fmt_qk`` (q, k), ``fmt_v`` (v), ``fmt_beta``, ``fmt_gate``.
    conv_wr : In(stream.Signature(conv_layout))
        Writes one convolution weight (``fmt_conv``) of a q, k or v channel; always ready.
    saturated : Out(1)
        Sticky: a word did not fit its format.
    """

    def __init__(self, cfg):
        if cfg.feature_map == "elu1" or cfg.qk_norm != "l2":
            self._MustUse__silence = True  # never built: no "created but never used" warning
        if cfg.feature_map == "elu1":
            raise ValueError(
                "feature_map='elu1' is not implemented in hardware (silu, relu, identity are)"
            )
        if cfg.qk_norm != "l2":
            raise ValueError("qk_norm must be 'l2' in hardware")
        self.cfg = cfg
        self.word_in, self.word_out, self.conv_layout = beta_phi_layouts(cfg)
        mant, self.scale_exp = math.frexp(cfg.query_scale)
        self.scale_mant = round(mant * 2**F)
        low = F - self.scale_exp - cfg.fmt_qk.frac_bits  # smallest output shift (p = -fa)
        if low < 0:
            raise ValueError(
                f"fmt_qk has {cfg.fmt_qk.frac_bits} fractional bits, more than the "
                f"normalisation's {F - self.scale_exp} internal ones"
            )
        super().__init__(
            {
                "i": In(stream.Signature(self.word_in)),
                "o": Out(stream.Signature(self.word_out)),
                "conv_wr": In(stream.Signature(self.conv_layout)),
                "saturated": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        d = max(cfg.d_k, cfg.d_v)
        W = cfg.conv_size
        fin, fa = cfg.fmt_input, cfg.fmt_act
        overflows = []  # one flag per rounding: it overflowed this cycle

        # ---------------- element pipeline ------------------------------------------------
        p1_valid = Signal()
        p1_ready = Signal()  # from the vector stage
        en = Signal()
        m.d.comb += [en.eq(~p1_valid | p1_ready), self.i.ready.eq(en)]

        def stage(values, name):
            return _stage(m, en, values, name)

        w_in = self.i.payload
        hb = (cfg.heads - 1).bit_length()
        cb = (d - 1).bit_length()

        def chan_addr(kind, head, chan):
            kind = Value.cast(kind)
            return Cat(chan[:cb] if cb else C(0, 0), head[:hb] if hb else C(0, 0), kind[:2])

        depth = 4 << (hb + cb)
        hist_mem = memory.Memory(shape=max(W - 1, 1) * fin.width, depth=depth, init=[])
        w_mem = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.fmt_conv.width), W), depth=depth, init=[]
        )
        m.submodules.history = hist_mem
        m.submodules.weights = w_mem
        hist_rd = hist_mem.read_port(domain="sync")
        hist_wr = hist_mem.write_port()
        w_rd = w_mem.read_port(domain="sync")
        w_wr = w_mem.write_port(granularity=1)  # one tap per write
        cw = self.conv_wr.payload
        m.d.comb += [
            self.conv_wr.ready.eq(1),
            w_wr.addr.eq(chan_addr(cw.kind, cw.head, cw.chan)),
            w_wr.data.eq(Cat(*[cw.data] * W)),
        ]
        for tap in range(W):
            m.d.comb += w_wr.en[tap].eq(self.conv_wr.valid & (cw.tap == tap))
        in_addr = chan_addr(w_in.kind, w_in.head, w_in.chan)
        m.d.comb += [
            hist_rd.addr.eq(in_addr),
            hist_rd.en.eq(en),
            w_rd.addr.eq(in_addr),
            w_rd.en.eq(en),
        ]

        s0 = stage(
            {
                "valid": self.i.valid,
                "kind": w_in.kind,
                "head": w_in.head,
                "chan": w_in.chan,
                "first": w_in.first,
                "last": w_in.last,
                "x": w_in.data,
            },
            "s0",
        )
        x0 = Signal(signed(fin.width))
        m.d.comb += x0.eq(s0["x"])
        conv_kind = (s0["kind"] == Kind.Q) | (s0["kind"] == Kind.K) | (s0["kind"] == Kind.V)
        # history: x[t-1], x[t-2], ... (zero at the first token of a sequence)
        hist = [Signal(signed(fin.width), name=f"hist_{i}") for i in range(W - 1)]
        for i, h in enumerate(hist):
            m.d.comb += h.eq(Mux(s0["first"], 0, hist_rd.data[i * fin.width : (i + 1) * fin.width]))
        m.d.comb += [
            hist_wr.addr.eq(chan_addr(s0["kind"], s0["head"], s0["chan"])),
            hist_wr.en.eq(s0["valid"] & en & conv_kind),
        ]
        if W > 1:
            m.d.comb += hist_wr.data.eq(Cat(x0, *hist[:-1]))
        # register the memory words (slow block-RAM outputs), then multiply
        taps = {f"t{lag}": v for lag, v in enumerate([x0, *hist])}  # t<lag> = x[t - lag]
        weights = {f"w{i}": w_rd.data[i] for i in range(W)} if cfg.short_conv else {}
        s0b = stage(
            {
                "valid": s0["valid"],
                "kind": s0["kind"],
                "head": s0["head"],
                "chan": s0["chan"],
                "last": s0["last"],
                **taps,
                **weights,
            },
            "s0b",
        )
        if cfg.short_conv:
            prods = {f"p{lag}": s0b[f"t{lag}"] * s0b[f"w{W - 1 - lag}"] for lag in range(W)}
        else:
            prods = {}
        s1 = stage(
            {
                "valid": s0b["valid"],
                "kind": s0b["kind"],
                "head": s0b["head"],
                "chan": s0b["chan"],
                "last": s0b["last"],
                "x": s0b["t0"],
                **prods,
            },
            "s1",
        )
        # the convolution sum in two levels: pairs of products, then the rest and the rounding
        pairs = (
            {f"q{i}": sum(s1[f"p{lag}"] for lag in range(i, min(i + 2, W))) for i in range(0, W, 2)}
            if cfg.short_conv
            else {}
        )
        s1 = stage(
            {k: s1[k] for k in ("valid", "kind", "head", "chan", "last", "x")} | pairs, "s1b"
        )
        if cfg.short_conv:
            acc = sum(s1[f"q{i}"] for i in range(0, W, 2))
            act, o_act = requantize(
                m, acc, fa, "conv_act", frac_in=fin.frac_bits + cfg.fmt_conv.frac_bits
            )
        else:
            act, o_act = requantize(m, s1["x"], fa, "conv_act", frac_in=fin.frac_bits)
        s1_conv = (s1["kind"] == Kind.Q) | (s1["kind"] == Kind.K) | (s1["kind"] == Kind.V)
        overflows.append(s1["valid"] & en & s1_conv & o_act)
        # the value the nonlinear part sees: activations for q, k, v; raw words for beta and g
        s2 = stage(
            {
                "valid": s1["valid"],
                "kind": s1["kind"],
                "head": s1["head"],
                "chan": s1["chan"],
                "last": s1["last"],
                "y": Mux(s1_conv, act, s1["x"]),
            },
            "s2",
        )

        # sigmoid: |y| registered, then the table index from it (activation or logit fractional
        # bits), registered before the table's address (timing)
        lut = _sigmoid_lut(cfg.lut_bits)
        rom, tw = _lut_rom(m, lut, "sigmoid_rom")
        y2 = s2["y"]
        s2a = stage(
            {key: s2[key] for key in ("valid", "kind", "head", "chan", "last", "y")}
            | {"ay": Mux(y2 < 0, -y2, y2).as_unsigned()},
            "s2a",
        )
        ay = s2a["ay"]
        idx_a, fr_a, sh_a = _lut_index(m, lut, ay, fa.frac_bits, "sig_act")
        idx_b, fr_b, sh_b = _lut_index(m, lut, ay, fin.frac_bits, "sig_logit")
        is_beta2 = s2a["kind"] == Kind.BETA
        s2b = stage(
            {
                "valid": s2a["valid"],
                "kind": s2a["kind"],
                "head": s2a["head"],
                "chan": s2a["chan"],
                "last": s2a["last"],
                "y": s2a["y"],
                "idx": Mux(is_beta2, idx_b, idx_a),
                "fr": Mux(is_beta2, fr_b, fr_a),
            },
            "s2b",
        )
        m.d.comb += [rom.addr.eq(s2b["idx"]), rom.en.eq(en)]
        s3 = stage(
            {key: s2b[key] for key in ("valid", "kind", "head", "chan", "last", "y", "fr")}, "s3"
        )
        s3b = stage(
            {
                "valid": s3["valid"],
                "kind": s3["kind"],
                "head": s3["head"],
                "chan": s3["chan"],
                "last": s3["last"],
                "y": s3["y"],
                "fr": s3["fr"],
                "base": rom.data[:tw].as_signed(),
                "slope": rom.data[tw:].as_signed(),
            },
            "s3b",
        )
        s4 = stage(
            {
                "valid": s3b["valid"],
                "kind": s3b["kind"],
                "head": s3b["head"],
                "chan": s3b["chan"],
                "last": s3b["last"],
                "y": s3b["y"],
                "base": s3b["base"],
                "interp": s3b["slope"] * s3b["fr"],
            },
            "s4",
        )
        is_beta4 = s4["kind"] == Kind.BETA
        r_a = shift_round(m, s4["interp"], sh_a, "half_up", len(s4["interp"]), "sig_round_a")
        r_b = shift_round(m, s4["interp"], sh_b, "half_up", len(s4["interp"]), "sig_round_b")
        pos = Signal(signed(F + 3))
        m.d.comb += pos.eq(s4["base"] + Mux(is_beta4, r_b, r_a))
        sig = Mux(s4["y"] < 0, (1 << F) - pos, pos)
        s5 = stage(
            {
                "valid": s4["valid"],
                "kind": s4["kind"],
                "head": s4["head"],
                "chan": s4["chan"],
                "last": s4["last"],
                "y": s4["y"],
                "sig": sig,
            },
            "s5",
        )
        s6 = stage(
            {
                "valid": s5["valid"],
                "kind": s5["kind"],
                "head": s5["head"],
                "chan": s5["chan"],
                "last": s5["last"],
                "y": s5["y"],
                "sig": s5["sig"],
                "silu": s5["y"] * s5["sig"],
            },
            "s6",
        )

        # output of the element pipeline, per kind
        silu_a, o_sa = requantize(m, s6["silu"], fa, "silu_act", frac_in=fa.frac_bits + F)
        silu_v, o_sv = requantize(m, s6["silu"], cfg.fmt_v, "silu_v", frac_in=fa.frac_bits + F)
        beta_frac = F - (cfg.beta_mode == "neg_eigval")
        beta_s, o_b = requantize(m, s6["sig"], cfg.fmt_beta, "beta", frac_in=beta_frac)
        # every case fits its format (18 bits on ECP5): the square below is one 18x18 multiplier
        value = Signal(signed(max(len(s6["y"]), len(silu_a), len(silu_v), len(beta_s))))
        over = Signal()
        with m.Switch(s6["kind"]):
            with m.Case(Kind.Q, Kind.K):
                if cfg.feature_map == "silu":
                    m.d.comb += [value.eq(silu_a), over.eq(o_sa)]
                elif cfg.feature_map == "relu":
                    m.d.comb += value.eq(Mux(s6["y"] < 0, 0, s6["y"]))
                else:
                    m.d.comb += value.eq(s6["y"])
            with m.Case(Kind.V):
                m.d.comb += [value.eq(silu_v), over.eq(o_sv)]
            with m.Case(Kind.BETA):
                if cfg.beta_mode == "constant":
                    m.d.comb += value.eq(cfg.fmt_beta.const(cfg.beta_constant, "beta_constant"))
                else:
                    m.d.comb += [value.eq(beta_s), over.eq(o_b)]
            with m.Default():
                m.d.comb += value.eq(s6["y"])
        overflows.append(s6["valid"] & en & over)
        s7 = stage(
            {
                "valid": s6["valid"],
                "kind": s6["kind"],
                "head": s6["head"],
                "chan": s6["chan"],
                "last": s6["last"],
                "value": value,
            },
            "s7",
        )
        # the square for the vector's sum of squares, registered (multiplier, then the add)
        s8 = stage(
            {
                "valid": s7["valid"],
                "kind": s7["kind"],
                "head": s7["head"],
                "last": s7["last"],
                "value": s7["value"],
                "square": (s7["value"] * s7["value"]).as_unsigned(),
            },
            "s8",
        )
        m.d.comb += p1_valid.eq(s8["valid"])

        # ---------------- vector stage: fill -> normalise -> drain, four buffers -----------
        self._vector_stage(m, s8, p1_valid, p1_ready, overflows)
        # each flag registered where it is made, then ORed into the sticky flag (a cycle later:
        # the roundings' range checks stay off the OR's path)
        flags = Signal(len(overflows))
        m.d.sync += flags.eq(Cat(*overflows))
        m.d.sync += self.saturated.eq(self.saturated | flags.any())
        return m

    def _vector_stage(self, m, s8, p1_valid, p1_ready, overflows):
        cfg = self.cfg
        d = max(cfg.d_k, cfg.d_v)
        NB = 4  # fill, normalise, drain, and one more to absorb the normalisation latency
        vw = len(s8["value"])
        buf = memory.Memory(shape=signed(vw), depth=NB * d, init=[])
        m.submodules.vectors = buf
        wr = buf.write_port()
        rd = buf.read_port(domain="sync")
        ss_width = 2 * vw + (d - 1).bit_length() + 1
        kinds = Array(Signal(Kind, name=f"buf_kind_{b}") for b in range(NB))
        heads = Array(Signal(range(cfg.heads), name=f"buf_head_{b}") for b in range(NB))
        counts = Array(Signal(range(d + 1), name=f"buf_count_{b}") for b in range(NB))
        sums = Array(Signal(ss_width, name=f"buf_ss_{b}") for b in range(NB))
        rs = Array(Signal(F + 2, name=f"buf_r_{b}") for b in range(NB))
        shifts = Array(Signal(range(64), name=f"buf_shift_{b}") for b in range(NB))
        meta = {"kind": kinds, "head": heads, "count": counts, "ss": sums, "r": rs, "shift": shifts}
        state = Array(Signal(2, name=f"state_{b}") for b in range(NB))  # 0 free 1 full 2 ready
        fill, norm, drain = (
            Signal(range(NB), name=n) for n in ("fill_ptr", "norm_ptr", "drain_ptr")
        )

        def nxt(p):
            return Mux(p == NB - 1, 0, p + 1)

        # fill: accept words while the buffer is free
        count = Signal(range(d + 1))
        ss = Signal(ss_width)
        m.d.comb += p1_ready.eq(state[fill] == 0)
        take = p1_valid & p1_ready
        m.d.comb += [wr.addr.eq(fill * d + count), wr.data.eq(s8["value"]), wr.en.eq(take)]
        with m.If(take):
            ss_next = ss + s8["square"]
            with m.If(s8["last"]):
                m.d.sync += [
                    kinds[fill].eq(s8["kind"]),
                    heads[fill].eq(s8["head"]),
                    counts[fill].eq(count + 1),
                    sums[fill].eq(ss_next),
                    state[fill].eq(1),
                    fill.eq(nxt(fill)),
                    count.eq(0),
                    ss.eq(0),
                ]
            with m.Else():
                m.d.sync += [count.eq(count + 1), ss.eq(ss_next)]

        # normalise: reciprocal square root of the full buffer at norm_ptr (q and k only)
        self._rsqrt_sequencer(m, meta, state, norm, nxt)

        # drain: read words of the ready buffer, multiply q/k words by r, round into fmt_qk
        en = Signal()
        out_valid = Signal()
        m.d.comb += [en.eq(~out_valid | self.o.ready), self.o.valid.eq(out_valid)]
        idx = Signal(range(d + 1))
        count_d = counts[drain]
        issue = Signal()
        m.d.comb += [
            issue.eq(en & (state[drain] == 2) & (idx < count_d)),
            rd.addr.eq(drain * d + idx),
            rd.en.eq(en),
        ]
        d1 = _stage(
            m,
            en,
            {
                "valid": issue,
                "kind": kinds[drain],
                "head": heads[drain],
                "chan": idx,
                "last": idx == count_d - 1,
                "r": rs[drain],
                "shift": shifts[drain],
            },
            "d1",
        )
        with m.If(issue):
            with m.If(idx == count_d - 1):
                m.d.sync += [idx.eq(0), state[drain].eq(0), drain.eq(nxt(drain))]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        frame = ("valid", "kind", "head", "chan", "last")
        # register the buffer word (slow block-RAM output), then multiply by r
        d2 = _stage(
            m,
            en,
            {**{k: d1[k] for k in frame}, "r": d1["r"], "shift": d1["shift"], "x": rd.data},
            "d2",
        )
        # x * r: registered partial products (one hard multiplier each), summed in the next stage
        partials = _partial_products(m, d2["x"], d2["r"].as_signed(), en, "normed_prod")
        d3a = _stage(
            m, en, {**{k: d2[k] for k in frame}, "shift": d2["shift"], "x": d2["x"]}, "d3a"
        )
        d3 = _stage(
            m,
            en,
            {
                **{k: d3a[k] for k in frame},
                "shift": d3a["shift"],
                "x": d3a["x"],
                "prod": _joined(partials),
            },
            "d3",
        )
        # round in three stages: the variable shift (floor and round-up bit), the range flags,
        # then add and saturate
        q, up = round_parts(m, d3["prod"], d3["shift"], cfg.fmt_qk.rounding, "normed")
        d3b = _stage(m, en, {**{k: d3[k] for k in frame}, "x": d3["x"], "q": q, "up": up}, "d3b")
        low, up, above, below = range_flags(m, d3b["q"], d3b["up"], cfg.fmt_qk, "normed")
        d4 = _stage(
            m,
            en,
            {
                **{k: d3b[k] for k in frame},
                "x": d3b["x"],
                "low": low,
                "up": up,
                "above": above,
                "below": below,
            },
            "d4",
        )
        normed, o_n = round_finish(
            m, d4["low"], d4["up"], d4["above"], d4["below"], cfg.fmt_qk, "normed"
        )
        is_qk = (d4["kind"] == Kind.Q) | (d4["kind"] == Kind.K)
        overflows.append(d4["valid"] & en & is_qk & o_n)
        out = self.o.payload
        with m.If(en):
            m.d.sync += [
                out_valid.eq(d4["valid"]),
                out.kind.eq(d4["kind"]),
                out.head.eq(d4["head"]),
                out.chan.eq(d4["chan"]),
                out.last.eq(d4["last"]),
                out.data.eq(Mux(is_qk, normed, d4["x"])),
            ]

    def _rsqrt_sequencer(self, m, meta, state, norm, nxt):
        """golden/nonlinear.py's ``rsqrt`` with one pipelined multiplier, per q/k vector.

        Every product takes three states: load the operand registers, multiply (registered),
        use the rounded product. A vector of d words gives the sequencer d cycles.
        """
        cfg = self.cfg
        fa = cfg.fmt_act.frac_bits
        s_frac = 2 * fa
        eps = round(L2NORM_EPS * 2.0**s_frac)
        lut = _rsqrt_lut(cfg.lut_bits)
        rom, tw = _lut_rom(m, lut, "rsqrt_rom")
        kind = meta["kind"][norm]
        ss_w = len(meta["ss"][0]) + 1
        s = Signal(ss_w, name="rsqrt_s")  # registered: sum of squares + eps, at least 1
        total = meta["ss"][norm] + eps
        # highest set bit (s >= 1) -> E, p: s = m 4**p with m in [1, 4)
        top = Signal(range(ss_w))
        m.d.comb += top.eq(_top_bit(s))
        E = Signal(signed(8))
        p = Signal(signed(8), name="rsqrt_p")
        m.d.comb += [E.eq(top - s_frac), p.eq(E >> 1)]
        mm = Signal(F + 3, name="rsqrt_m")  # m with F fractional bits
        r = Signal(F + 2, name="rsqrt_r")
        r2 = Signal(signed(F + 4), name="rsqrt_r2")
        base = Signal(signed(tw), name="rsqrt_base")
        p_q = Signal(signed(8))
        a = Signal(signed(F + 4))
        b = Signal(signed(F + 4))
        # the sequencer's one multiplier: registered partial products, summed where the product
        # is used
        partials = _partial_products(m, a, b, 1, "rsqrt_prod")
        prod = Signal(signed(2 * F + 8))
        m.d.comb += prod.eq(_joined(partials))
        idx, fr, sh = _lut_index(m, lut, mm, F, "rsqrt")
        m.d.comb += rom.addr.eq(idx)

        def rounded(shift, name):
            return shift_round(m, prod, shift, "half_up", len(prod), name)

        base_shift = fa + F - cfg.fmt_qk.frac_bits
        # (name, operand a, operand b, assignments from the product) in order
        steps = [
            (
                "interp",
                rom.data[tw:].as_signed(),
                fr,
                lambda: [r.eq(base + rounded(sh, "rsqrt_interp"))],
            )
        ]
        for n in range(cfg.rsqrt_newton):
            steps += [
                (f"newton{n}_rr", r, r, lambda n=n: [r2.eq(rounded(F, f"nr2_{n}"))]),
                (f"newton{n}_mrr", mm, r2, lambda n=n: [r2.eq(rounded(F, f"nmr_{n}"))]),
                (f"newton{n}_r", r, (3 << F) - r2, lambda n=n: [r.eq(rounded(F + 1, f"nr_{n}"))]),
            ]
        with m.FSM(name="rsqrt"):
            with m.State("IDLE"), m.If(state[norm] == 1):
                with m.If((kind == Kind.Q) | (kind == Kind.K)):
                    m.d.sync += s.eq(Mux(total < 1, 1, total))
                    m.next = "EXPONENT"
                with m.Else():
                    m.d.sync += [state[norm].eq(2), norm.eq(nxt(norm))]
            with m.State("EXPONENT"):
                m.d.sync += p_q.eq(p)
                m.next = "MANTISSA"
            with m.State("MANTISSA"):
                shifted = Signal(ss_w + F, name="rsqrt_shifted")
                m.d.comb += shifted.eq((s << F) >> (s_frac + 2 * p_q).as_unsigned())
                m.d.sync += mm.eq(shifted)
                m.next = "LUT"
            with m.State("LUT"):  # table read: entry and slope next cycle
                m.next = f"{steps[0][0]}_load"
            for i, (name, op_a, op_b, use) in enumerate(steps):
                after = f"{steps[i + 1][0]}_load" if i + 1 < len(steps) else "SCALE"
                with m.State(f"{name}_load"):
                    m.d.sync += [a.eq(op_a), b.eq(op_b)]
                    if name == "interp":
                        m.d.sync += base.eq(rom.data[:tw].as_signed())
                    m.next = f"{name}_mul"
                with m.State(f"{name}_mul"):
                    m.next = f"{name}_use"
                with m.State(f"{name}_use"):
                    m.d.sync += use()
                    m.next = after
            with m.State("SCALE"):  # q: r * scale (mantissa), the exponent joins the shift
                m.d.sync += [a.eq(r), b.eq(self.scale_mant)]
                with m.If((kind == Kind.Q) & (cfg.query_scale != 1.0)):
                    m.next = "SCALE_mul"
                with m.Else():
                    m.d.sync += [
                        meta["r"][norm].eq(r),
                        meta["shift"][norm].eq(base_shift + p_q),
                        state[norm].eq(2),
                        norm.eq(nxt(norm)),
                    ]
                    m.next = "IDLE"
            with m.State("SCALE_mul"):
                m.next = "SCALE_use"
            with m.State("SCALE_use"):
                m.d.sync += [
                    meta["r"][norm].eq(rounded(F, "q_scale")),
                    meta["shift"][norm].eq(base_shift + p_q - self.scale_exp),
                    state[norm].eq(2),
                    norm.eq(nxt(norm)),
                ]
                m.next = "IDLE"
