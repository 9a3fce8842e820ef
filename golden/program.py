"""The chunk program: the per-chunk list of coarse operations that every executor runs.

One program, generated from the config, drives the float64 executor (which equals
``chunk_delta_rule``), the bit-exact fixed-point executor, the cycle model and the hardware
scheduler. An operation names its operands and its destination; each destination is a
quantization point with the config format the operation names (``fmt``).

Operations (all batched over heads):

``Decay``
    From the log gates g: G = in-chunk cumsum (exact), Gamma_ij = exp(G_i - G_j) for i >= j
    (masked before the exp), exp(G), exp(G_C - G), exp(G_C).
``Scale``
    ``dest = src * factor``: ``rows`` multiplies row i of src by factor[i]; ``elements``
    multiplies element by element.
``Product``
    ``dest = sum of +-(a @ b) (optionally transposed) [masked] + add_scale * add``: products are
    accumulated exactly, then the sum is rounded once. The mask zeroes (hardware: skips) the
    triangle outside ``lower`` (diagonal included) or ``strict_lower``.
``Solve``
    ``dest = (I + src)^-1`` of a strictly lower-triangular src by forward substitution, one row
    at a time from the rows above it; each row is rounded as it is written.

Chunk form (C rows; gated-only operations marked [g]; ungated, Attn = QK, Qg = Q, Kd = K)::

    [g] Decay g -> Gamma, eG, eGCG, eGC          [g] bG = beta * eG;  bGamma = beta (rows) Gamma
    Kb = bG (rows) K (ungated beta)    Vb = beta (rows) V
    [g] KK = strict_lower(K K^T); A = KK * bGamma    (ungated: A = strict_lower(Kb K^T), fla's
                                                      ``k_beta @ k.T``)
    T  = (I + A)^-1
    W  = T Kb                     U  = T Vb
    QK = lower(Q K^T)             [g] Attn = QK * Gamma;  Qg = eG (rows) Q;  Kd = eGCG (rows) K
    Vn = U - W S                  O  = Qg S + Attn Vn       S = eGC S + Kd^T Vn

Decode form (one token: T = 1, so W = Kb and U = Vb need no operation)::

    [g] Decay g -> eG, eGC        [g] bG = beta * eG;  Qg = eG Q
    Kb = bG K   Vb = beta V       QK = q k^T (1 x 1)
    Vn = Vb - Kb S                O = Qg S + QK Vn          S = eGC S + K^T Vn
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

__all__ = [
    "Decay",
    "Product",
    "Program",
    "Scale",
    "Solve",
    "Term",
    "check_accumulators",
    "chunk_program",
    "operand_shapes",
]

# Formats of the program's inputs (config fields); everything else is an operation's destination.
INPUT_FORMATS = {
    "Q": "fmt_qk",
    "K": "fmt_qk",
    "V": "fmt_v",
    "beta": "fmt_beta",
    "g": "fmt_gate",
    "S": "fmt_state",
}


@dataclass(frozen=True)
class Term:
    """One matrix product ``sign * op(a) @ op(b)`` where op transposes when asked."""

    a: str
    b: str
    ta: bool = False
    tb: bool = False
    sign: int = 1


@dataclass(frozen=True)
class Product:
    dest: str
    fmt: str
    terms: tuple[Term, ...]
    mask: str = "full"  # full | lower | strict_lower
    add: str | None = None
    add_scale: str | None = None


@dataclass(frozen=True)
class Scale:
    dest: str
    fmt: str
    src: str
    factor: str
    how: str  # rows | elements


@dataclass(frozen=True)
class Solve:
    dest: str
    fmt: str
    src: str


@dataclass(frozen=True)
class Decay:
    src: str
    fmt: str
    outputs: tuple[str, ...]  # subset of Gamma, eG, eGCG, eGC


Op = Product | Scale | Solve | Decay


@dataclass(frozen=True)
class Program:
    """The operations of one chunk (``rows`` tokens) of one head; ``decode`` for one token."""

    rows: int
    gated: bool
    decode: bool
    ops: tuple[Op, ...]

    def formats(self) -> dict[str, str]:
        """Config format field of every named value (inputs and destinations)."""
        out = dict(INPUT_FORMATS)
        for op in self.ops:
            if isinstance(op, Decay):
                out.update({name: op.fmt for name in op.outputs})
            else:
                out[op.dest] = op.fmt
        return out


@cache
def chunk_program(rows: int, gated: bool, decode: bool = False) -> Program:
    """The program of one chunk of ``rows`` tokens (a short tail chunk has fewer rows).

    ``decode=True`` (rows must be 1) gives the recurrent form used for token-by-token decode.
    """
    if rows < 1:
        raise ValueError(f"a chunk has at least one row, not {rows}")
    if decode and rows != 1:
        raise ValueError(f"the decode program has one row, not {rows}")
    ops: list[Op] = []
    beta_k = "bG" if gated else "beta"
    if decode:
        if gated:
            ops += [
                Decay("g", "fmt_decay", ("eG", "eGC")),
                Scale("bG", "fmt_beta", "beta", "eG", "elements"),
                Scale("Qg", "fmt_qk", "Q", "eG", "rows"),
            ]
        ops += [
            Scale("Kb", "fmt_qk", "K", beta_k, "rows"),
            Scale("Vb", "fmt_v", "V", "beta", "rows"),
            Product("QK", "fmt_attn", (Term("Q", "K", tb=True),), mask="lower"),
            Product("Vn", "fmt_vnew", (Term("Kb", "S", sign=-1),), add="Vb"),
        ]
        attn, qg, kd = "QK", ("Qg" if gated else "Q"), "K"
    else:
        if gated:
            ops += [
                Decay("g", "fmt_decay", ("Gamma", "eG", "eGCG", "eGC")),
                Scale("bG", "fmt_beta", "beta", "eG", "elements"),
                Scale("bGamma", "fmt_beta", "Gamma", "beta", "rows"),
            ]
        ops += [
            Scale("Kb", "fmt_qk", "K", beta_k, "rows"),
            Scale("Vb", "fmt_v", "V", "beta", "rows"),
        ]
        if gated:
            ops += [
                Product("KK", "fmt_a", (Term("K", "K", tb=True),), mask="strict_lower"),
                Scale("A", "fmt_a", "KK", "bGamma", "elements"),
            ]
        else:  # fla's A = k_beta @ k.T: one product of the rounded beta k
            ops += [Product("A", "fmt_a", (Term("Kb", "K", tb=True),), mask="strict_lower")]
        ops += [
            Solve("T", "fmt_t", "A"),
            Product("W", "fmt_w", (Term("T", "Kb"),)),
            Product("U", "fmt_u", (Term("T", "Vb"),)),
            Product("QK", "fmt_attn", (Term("Q", "K", tb=True),), mask="lower"),
        ]
        if gated:
            ops += [
                Scale("Attn", "fmt_attn", "QK", "Gamma", "elements"),
                Scale("Qg", "fmt_qk", "Q", "eG", "rows"),
                Scale("Kd", "fmt_qk", "K", "eGCG", "rows"),
            ]
        ops += [Product("Vn", "fmt_vnew", (Term("W", "S", sign=-1),), add="U")]
        attn, qg, kd = ("Attn", "Qg", "Kd") if gated else ("QK", "Q", "K")
    ops += [
        Product("O", "fmt_o", (Term(qg, "S"), Term(attn, "Vn"))),
        Product(
            "S",
            "fmt_state",
            (Term(kd, "Vn", ta=True),),
            add="S",
            add_scale="eGC" if gated else None,
        ),
    ]
    return Program(rows=rows, gated=gated, decode=decode, ops=tuple(ops))


def operand_shapes(rows: int, d_k: int, d_v: int) -> dict[str, tuple[int, ...]]:
    """Shape (per head) of every named value of a program with ``rows`` rows."""
    m = rows
    shapes = {n: (m, d_k) for n in ("Q", "K", "Kb", "Qg", "Kd", "W")}
    shapes |= {n: (m, d_v) for n in ("V", "Vb", "U", "Vn", "O")}
    shapes |= {n: (m, m) for n in ("KK", "A", "T", "QK", "Attn", "Gamma", "bGamma")}
    shapes |= {n: (m,) for n in ("beta", "g", "eG", "eGCG", "bG")}
    shapes |= {"S": (d_k, d_v), "eGC": ()}
    return shapes


def _contraction(term: Term, shapes) -> int:
    a = shapes[term.a]
    return a[0] if term.ta else a[-1]


def accumulator_bits(program: Program, cfg) -> dict[str, int]:
    """Bits (sign included) each operation's exact sum needs, from the operand formats."""
    fmts = {name: getattr(cfg, field) for name, field in program.formats().items()}
    shapes = operand_shapes(program.rows, cfg.d_k, cfg.d_v)
    need = {}
    for op in program.ops:
        if isinstance(op, Product):
            parts = []  # (bits, frac) of each summand
            for t in op.terms:
                n = _contraction(t, shapes)
                parts.append(
                    (
                        fmts[t.a].width + fmts[t.b].width + math.ceil(math.log2(n))
                        if n > 1
                        else fmts[t.a].width + fmts[t.b].width,
                        fmts[t.a].frac_bits + fmts[t.b].frac_bits,
                    )
                )
            if op.add:
                scale = fmts[op.add_scale] if op.add_scale else None
                parts.append(
                    (
                        fmts[op.add].width + (scale.width if scale else 0),
                        fmts[op.add].frac_bits + (scale.frac_bits if scale else 0),
                    )
                )
            frac = max(f for _, f in parts)
            bits = max(b + frac - f for b, f in parts)
            need[op.dest] = bits + math.ceil(math.log2(len(parts)))
        elif isinstance(op, Scale):
            need[op.dest] = fmts[op.src].width + fmts[op.factor].width
        elif isinstance(op, Solve):
            n = max(program.rows - 1, 1)
            need[op.dest] = fmts[op.src].width + cfg.fmt_t.width + math.ceil(math.log2(n)) + 1
    return need


def check_accumulators(cfg) -> None:
    """Raise a ``ValueError`` if ``cfg.acc_bits`` cannot hold an exact sum of the programs."""
    for program in (chunk_program(cfg.chunk_size, cfg.gated), chunk_program(1, cfg.gated, True)):
        for dest, bits in accumulator_bits(program, cfg).items():
            if bits > cfg.acc_bits:
                form = "decode" if program.decode else "chunk"
                raise ValueError(
                    f"acc_bits must be >= {bits} for the exact sum of {dest!r} in "
                    f"the {form} program (formats and dimensions of {cfg.name!r}); "
                    f"it is {cfg.acc_bits} (max 62)"
                )
