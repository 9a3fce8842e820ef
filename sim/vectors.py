"""Block-level test vectors for the hardware, with expected outputs from the golden model.

One source for both test tiers: the Amaranth simulator tests and the cocotb tests of the
generated Verilog take the same beats and compare against the same expected words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..golden.executor import masked

__all__ = [
    "BetaPhiVectors",
    "BufferVectors",
    "CoreVectors",
    "MacTile",
    "StateSramVectors",
    "beta_phi_vectors",
    "buffer_banks",
    "buffer_lanes",
    "chunk_buffer_vectors",
    "conv_weight_writes",
    "core_vectors",
    "mac_tiles",
    "state_sram_vectors",
]

MASK_NAMES = ("full", "lower", "strict_lower")  # index = hw.mac_array.Mask value


@dataclass
class MacTile:
    """One tile product on the MAC array: K steps in, R result rows out."""

    a: np.ndarray  # [K, R] int64: column k of A at step k
    b: np.ndarray  # [K, C] int64: row k of B at step k
    mask: int
    row0: int
    col0: int
    high: np.ndarray | None = None  # [K] 0/1: step k's products weigh 2**high_shift
    high_shift: int = 0

    def a_beats(self):
        K = len(self.a)
        return [
            {
                "data": self.a[k].tolist(),
                "last": int(k == K - 1),
                "mask": self.mask,
                "row0": self.row0,
                "col0": self.col0,
            }
            | ({} if self.high is None else {"high": int(self.high[k])})
            for k in range(K)
        ]

    def sums(self) -> np.ndarray:
        """The exact [R, C] sums of the tile's steps."""
        if self.high is None:
            return self.a.T @ self.b
        return self.a.T @ (self.b << (self.high[:, None] * self.high_shift))

    def b_beats(self):
        return [{"data": row.tolist()} for row in self.b]


def expected_rows(tiles: list[MacTile]) -> list[np.ndarray]:
    """Result rows of every tile, in order: the exact (masked) sums the golden model defines."""
    rows = []
    for t in tiles:
        rows.extend(masked(t.sums(), MASK_NAMES[t.mask], t.row0, t.col0))
    return rows


def mac_tiles(rng, rows, cols, a_width, b_width, n_tiles, k_range=(1, 12), high_shift=None):
    """Random tiles with extreme operand values mixed in, random masks and offsets (and, with
    ``high_shift``, random high steps)."""
    tiles = []
    for _ in range(n_tiles):
        K = int(rng.integers(k_range[0], k_range[1] + 1))
        a = _operands(rng, (K, rows), a_width)
        b = _operands(rng, (K, cols), b_width)
        tiles.append(
            MacTile(
                a=a,
                b=b,
                mask=int(rng.integers(0, 3)),
                row0=int(rng.integers(0, 3)) * rows,
                col0=int(rng.integers(0, 3)) * cols,
                high=None if high_shift is None else rng.integers(0, 2, size=K),
                high_shift=high_shift or 0,
            )
        )
    return tiles, expected_rows(tiles)


def _operands(rng, shape, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    extreme = rng.random(shape) < 0.1
    return np.where(extreme, rng.choice([lo, hi], size=shape), x)


@dataclass
class StateSramVectors:
    """A golden final state written row segment by row segment, then read back in random order."""

    addr_layout: object
    row_layout: object
    write_layout: object
    writes: list
    reads: list
    expected: list


def state_sram_vectors(config: str, seed: int) -> StateSramVectors:
    """The fixed-point model's final state (raw words) for random inputs of a preset."""
    from ..config import preset
    from ..golden.fixed import fixed_delta_rule
    from ..golden.vectors import random_inputs
    from ..hw.state_sram import sram_layouts

    cfg = preset(config)
    L = cfg.array_cols
    NT = -(-cfg.d_v // L)
    layouts = sram_layouts(cfg.heads, cfg.d_k, cfg.d_v, L, cfg.fmt_state.width)
    state = fixed_delta_rule(
        **random_inputs(cfg, 3 * cfg.chunk_size + 5, seed=seed), cfg=cfg
    ).final_state_raw[0]  # [H, K, V]
    padded = np.zeros((cfg.heads, cfg.d_k, NT * L), dtype=np.int64)
    padded[..., : cfg.d_v] = state
    rng = np.random.default_rng(seed)
    addrs = [
        {"head": h, "row": k, "tile": t}
        for h in range(cfg.heads)
        for k in range(cfg.d_k)
        for t in range(NT)
    ]
    writes = [
        {**a, "data": padded[a["head"], a["row"], a["tile"] * L : (a["tile"] + 1) * L].tolist()}
        for a in addrs
    ]
    reads = [addrs[i] for i in rng.permutation(len(addrs))]
    expected = [padded[a["head"], a["row"], a["tile"] * L : (a["tile"] + 1) * L] for a in reads]
    return StateSramVectors(*layouts, writes, reads, expected)


@dataclass
class BufferVectors:
    """Writes into a chunk buffer and random reads in every mode, with the expected words."""

    layouts: tuple
    writes: list
    reads: list
    expected: list


def chunk_buffer_vectors(config: str, rows: int, cols: int, lanes: int, seed: int):
    """Golden q and k words (the fixed model's beta/phi outputs) written by rows and by columns."""
    from ..config import preset
    from ..golden.fixed import beta_phi
    from ..golden.vectors import random_inputs
    from ..hw.chunk_buffer import ReadMode, buffer_layouts

    cfg = preset(config).replace(d_k=cols)
    x = random_inputs(cfg, rows, seed=seed)
    words = beta_phi(
        cfg, x["q"], x["k"], x["v"], x["beta_logits"], x.get("g"), x.get("conv_weights")
    )
    q, k = words["q"][0, :, 0], words["k"][0, :, 0]  # [rows, cols] of head 0
    rng = np.random.default_rng(seed)
    model = np.zeros((rows, cols), dtype=np.int64)
    writes = []
    for i in range(rows - 1):  # the last row stays unwritten: it must read 0
        for j in range(0, cols, lanes):
            seg = q[i, j : j + lanes]
            model[i, j : j + len(seg)] = seg
            writes.append(
                {"mode": ReadMode.ROW, "i": i, "j": j, "data": buffer_banks(seg, i, j, lanes)}
            )
    for j in rng.choice(cols, size=max(1, cols // 3), replace=False):
        for i in range(0, rows, lanes):
            seg = k[i : i + lanes, j]
            model[i : i + len(seg), j] = seg
            writes.append(
                {
                    "mode": ReadMode.COLUMN,
                    "i": i,
                    "j": int(j),
                    "data": buffer_banks(seg, i, j, lanes),
                }
            )
    padded = np.zeros((rows + lanes, cols + lanes), dtype=np.int64)
    padded[:rows, :cols] = model
    reads, expected = [], []
    for _ in range(6 * rows):
        mode = ReadMode(int(rng.integers(0, 3)))
        lane = int(rng.integers(0, lanes))
        if mode == ReadMode.ROW:
            i, j = int(rng.integers(0, rows)), int(rng.integers(0, cols))
            want = padded[i, j : j + lanes]
        else:
            i, j = int(rng.integers(0, -(-rows // lanes))) * lanes, int(rng.integers(0, cols))
            want = padded[i : i + lanes, j].copy()
            if mode == ReadMode.DIAG:
                want[np.arange(lanes) != lane] = 0
        reads.append({"mode": mode, "i": i, "j": j, "lane": lane})
        expected.append(want)
    return BufferVectors(
        buffer_layouts(rows, cols, lanes, cfg.fmt_qk.width), writes, reads, expected
    )


def buffer_banks(segment, i, j, lanes) -> list:
    """A write's lane-order ``segment`` in the chunk buffer's bank order (bank b: lane b - rot)."""
    words = np.pad(segment, (0, lanes - len(segment)))
    return np.roll(words, (i + j) % lanes).tolist()


def buffer_lanes(beat, lanes: int) -> list:
    """A chunk buffer's read beat (``banks``, ``rot``) in lane order: lane t is bank t + rot."""
    rot = int(beat.rot)
    return [int(beat.banks[(t + rot) % lanes]) for t in range(lanes)]


@dataclass
class BetaPhiVectors:
    """Raw token words, convolution weights, and the golden beta/phi outputs in stream order."""

    conv_writes: list
    words: list
    expected: list  # (kind, head, chan, last, data)


def conv_weight_writes(cfg, conv_weights):
    """Short-convolution weights ``{q, k, v: [H, d, W]}`` rounded into ``fmt_conv``.

    Returns the ``conv_wr`` beats of every head, channel and tap, and the rounded weights as
    exact floats (what the fixed-point model is given, so nothing is rounded twice).
    """
    from ..hw.beta_phi import Kind

    writes, exact = [], {}
    for name, kind in (("q", Kind.Q), ("k", Kind.K), ("v", Kind.V)):
        w = cfg.fmt_conv.from_float(conv_weights[name], name)[0]  # [H, d, W]
        exact[name] = cfg.fmt_conv.to_float(w)
        writes += [
            {"kind": kind, "head": h, "chan": c, "tap": t, "data": int(w[h, c, t])}
            for h in range(w.shape[0])
            for c in range(w.shape[1])
            for t in range(w.shape[2])
        ]
    return writes, exact


def beta_phi_vectors(cfg, tokens: int, seed: int) -> BetaPhiVectors:
    """Random core inputs through the golden fixed-point beta/phi stages (one sequence)."""
    from ..golden.fixed import beta_phi
    from ..golden.vectors import random_inputs
    from ..hw.beta_phi import Kind

    x = random_inputs(cfg, tokens, seed=seed)
    out = beta_phi(cfg, x["q"], x["k"], x["v"], x["beta_logits"], x.get("g"), x.get("conv_weights"))
    raw = {n: cfg.fmt_input.from_float(x[n])[0][0] for n in ("q", "k", "v", "beta_logits")}
    if cfg.gated:
        raw["g"] = cfg.fmt_gate.from_float(x["g"])[0][0]
    conv_writes = conv_weight_writes(cfg, x["conv_weights"])[0] if cfg.short_conv else []
    words, expected = [], []
    vectors = [
        ("q", Kind.Q, "q"),
        ("k", Kind.K, "k"),
        ("v", Kind.V, "v"),
        ("beta_logits", Kind.BETA, "beta"),
    ] + ([("g", Kind.G, "g")] if cfg.gated else [])
    for t in range(tokens):
        for h in range(cfg.heads):
            for name, kind, out_name in vectors:
                vec = np.atleast_1d(raw[name][t, h])
                res = np.atleast_1d(out[out_name][0, t, h])
                for c, (word, want) in enumerate(zip(vec, res, strict=True)):
                    last = int(c == len(vec) - 1)
                    words.append(
                        {
                            "kind": kind,
                            "head": h,
                            "chan": c,
                            "first": int(t == 0),
                            "last": last,
                            "data": int(word),
                        }
                    )
                    expected.append((kind, h, c, last, int(want)))
    return BetaPhiVectors(conv_writes, words, expected)


@dataclass
class CoreVectors:
    """One sequence through the whole core: stream beats in, expected words out.

    ``words``: ``tok_in`` beats (``data``, ``last``) in the framing of ``hw.core.token_words``;
    ``state_words``: the initial state of every configured head (``state_in`` order), or None for
    a zeroed state; ``expected_o``: the ``tok_out`` words; ``expected_state``: the final state of
    every configured head (heads beyond the run's keep their initial state);
    ``labels``: (token, head, index) of each expected output word; ``saturations``: the model's
    per-stage counts (the core's SATURATED flag is set exactly when their sum is not zero).
    """

    words: list
    conv_writes: list
    state_words: list | None
    expected_o: list
    expected_state: list
    labels: list
    saturations: dict


def core_vectors(cfg, tokens, *, heads=None, seed=0, mode="chunk", inputs=None, h0=None):
    """Random (or given ``inputs``) tokens of one sequence through the fixed-point model.

    ``h0``: initial state ``[cfg.heads, d_k, d_v]`` (floats; rounded into ``fmt_state``), or
    None for zero. ``inputs``: keyword arguments of ``random_inputs``' form (batch of one).
    """
    from dataclasses import replace

    from ..golden.fixed import fixed_delta_rule
    from ..golden.vectors import random_inputs
    from ..hw.beta_phi import Kind
    from ..hw.core import token_words

    H = cfg.heads if heads is None else heads
    run_cfg = replace(cfg, heads=H)
    x = inputs if inputs is not None else random_inputs(cfg, tokens, heads=H, seed=seed)
    fin = cfg.fmt_input
    raw = {n: fin.from_float(x[n][0], n)[0] for n in ("q", "k", "v", "beta_logits")}
    exact = {n: fin.to_float(r)[None] for n, r in raw.items()}
    conv, conv_writes = None, []
    if cfg.short_conv:
        conv_writes, conv = conv_weight_writes(cfg, x["conv_weights"])
    state_raw = np.zeros((cfg.heads, cfg.d_k, cfg.d_v), dtype=np.int64)
    if h0 is not None:
        state_raw = cfg.fmt_state.from_float(np.asarray(h0), "initial_state")[0]
    res = fixed_delta_rule(
        exact["q"],
        exact["k"],
        exact["v"],
        exact["beta_logits"],
        cfg=run_cfg,
        conv_weights=conv,
        initial_state=cfg.fmt_state.to_float(state_raw[None, :H]),
        mode=mode,
    )
    vec = {Kind.BETA: "beta_logits", Kind.Q: "q", Kind.K: "k", Kind.V: "v"}
    words = []
    for t in range(tokens):
        for h in range(H):
            for kind, _ in token_words(cfg):
                for word in np.atleast_1d(raw[vec[kind]][t, h]):
                    words.append({"data": int(word), "last": 0})
    words[-1]["last"] = 1
    o = res.o_raw[0]  # [T, H, d_v]
    labels = [(t, h, j) for t in range(tokens) for h in range(H) for j in range(cfg.d_v)]
    final = state_raw.copy()
    final[:H] = res.final_state_raw[0]
    return CoreVectors(
        words=words,
        conv_writes=conv_writes,
        state_words=None if h0 is None else [int(w) for w in state_raw.ravel()],
        expected_o=[int(w) for w in o.ravel()],
        expected_state=[int(w) for w in final.ravel()],
        labels=labels,
        saturations=res.saturations,
    )
