"""Executors of the chunk program: float64, and bit-exact fixed point (int64).

Both walk the same program (golden/program.py) over the same environment of named arrays,
batched over heads (``Q [H, m, d_k]``, ``S [H, d_k, d_v]``, ``beta [H, m]`` ...); they differ
only in arithmetic. :func:`run_sequence` runs a whole sequence chunk by chunk (or token by
token in decode mode), carrying the state.

Fixed point: values are raw int64 words in the format the program names. A product is summed
exactly (in tiles of the contraction axis: the tile size cannot change a bit) and rounded once;
every rounding saturates and counts the values that did not fit, per destination.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .chunkwise import unit_lower_inverse
from .nonlinear import exp_neg
from .program import Decay, Product, Program, Scale, Solve, chunk_program

__all__ = ["FixedArith", "FloatArith", "masked", "run_program", "run_sequence"]

MASK_DIAGONALS = {"lower": 0, "strict_lower": -1}  # kept: i - j >= -diagonal


def _operand(env, name, transpose):
    x = env[name]
    return x.swapaxes(-1, -2) if transpose else x


def masked(x, mask: str, row0: int = 0, col0: int = 0):
    """Zero the elements outside ``mask`` ("full", "lower" i >= j, "strict_lower" i > j).

    ``x`` is a tile whose element [r, c] sits at (row0 + r, col0 + c) of the whole matrix.
    """
    if mask == "full":
        return x
    i = row0 + np.arange(x.shape[-2])[:, None]
    j = col0 + np.arange(x.shape[-1])[None, :]
    return np.where(i - j >= -MASK_DIAGONALS[mask], x, 0)


def _scale(src, factor, how):
    return src * factor[..., None] if how == "rows" else src * factor


class FloatArith:
    """float64 arithmetic: the program's math without rounding."""

    def product(self, env, op: Product, program: Program):
        acc = sum(t.sign * (_operand(env, t.a, t.ta) @ _operand(env, t.b, t.tb)) for t in op.terms)
        acc = masked(acc, op.mask)
        if op.add:
            add = env[op.add]
            acc = acc + (add * env[op.add_scale][:, None, None] if op.add_scale else add)
        env[op.dest] = acc

    def scale(self, env, op: Scale, program: Program):
        env[op.dest] = _scale(env[op.src], env[op.factor], op.how)

    def solve(self, env, op: Solve, program: Program):
        env[op.dest] = unit_lower_inverse(env[op.src])

    def decay(self, env, op: Decay, program: Program):
        _decay_values(env, op, np.cumsum(env[op.src], axis=-1), np.exp)


def _decay_values(env, op: Decay, G, exp):
    """Gamma, exp(G), exp(G_C - G), exp(G_C) from the cumulative gates G (masked before exp)."""
    want = set(op.outputs)
    if "Gamma" in want:
        m = G.shape[-1]
        lower = np.tri(m, m, 0, dtype=bool)
        diff = np.where(lower, G[..., :, None] - G[..., None, :], 0)
        env["Gamma"] = np.where(lower, exp(diff), 0)
    if "eG" in want:
        env["eG"] = exp(G)
    if "eGCG" in want:
        env["eGCG"] = exp(G[..., -1:] - G)
    if "eGC" in want:
        env["eGC"] = exp(G[..., -1])


class FixedArith:
    """Bit-exact fixed-point arithmetic defined by ``cfg``'s formats.

    Parameters
    ----------
    cfg : CoreConfig
    tile : int or None
        Contraction tile of the products (None: one tile). Results do not depend on it.
    """

    def __init__(self, cfg, tile: int | None = None):
        self.cfg = cfg
        self.tile = tile
        self.saturations: Counter[str] = Counter()

    def fmt(self, program: Program, name: str):
        return getattr(self.cfg, program.formats()[name])

    def _matmul(self, a, b):
        n = a.shape[-1]
        step = self.tile or n
        acc = np.zeros((*a.shape[:-1], b.shape[-1]), dtype=np.int64)
        for lo in range(0, n, step):
            acc += a[..., lo : lo + step] @ b[..., lo : lo + step, :]
        return acc

    def _round(self, program, dest, value, frac):
        raw, over = getattr(self.cfg, program.formats()[dest]).requantize(value, frac)
        self.saturations[dest] += over
        return raw

    def product(self, env, op: Product, program: Program):
        parts = []  # (exact integer, fractional bits)
        for t in op.terms:
            frac = self.fmt(program, t.a).frac_bits + self.fmt(program, t.b).frac_bits
            p = self._matmul(_operand(env, t.a, t.ta), _operand(env, t.b, t.tb))
            parts.append((t.sign * masked(p, op.mask), frac))
        if op.add:
            add, frac = env[op.add], self.fmt(program, op.add).frac_bits
            if op.add_scale:
                add = add * env[op.add_scale][:, None, None]
                frac += self.fmt(program, op.add_scale).frac_bits
            parts.append((add, frac))
        top = max(f for _, f in parts)
        acc = sum(v << np.int64(top - f) for v, f in parts)
        env[op.dest] = self._round(program, op.dest, acc, top)

    def scale(self, env, op: Scale, program: Program):
        frac = self.fmt(program, op.src).frac_bits + self.fmt(program, op.factor).frac_bits
        env[op.dest] = self._round(
            program, op.dest, _scale(env[op.src], env[op.factor], op.how), frac
        )

    def solve(self, env, op: Solve, program: Program):
        A = env[op.src]
        fa = self.fmt(program, op.src).frac_bits
        ft = self.fmt(program, op.dest).frac_bits
        m = A.shape[-1]
        X = np.zeros_like(A)
        one = np.int64(1) << np.int64(fa + ft)
        for i in range(m):
            row = -(A[..., i : i + 1, :i] @ X[..., :i, :])[..., 0, :]  # exact, frac fa + ft
            row[..., i] += one
            X[..., i, :] = self._round(program, op.dest, row, fa + ft)
        env[op.dest] = X

    def decay(self, env, op: Decay, program: Program):
        fg = self.fmt(program, op.src).frac_bits
        fmt = getattr(self.cfg, op.fmt)
        counts = []

        def exp(x):
            raw, over = exp_neg(x, fg, fmt, self.cfg.lut_bits)
            counts.append(over)
            return raw

        _decay_values(env, op, np.cumsum(env[op.src], axis=-1), exp)
        self.saturations["decay"] += sum(counts)


def run_program(program: Program, env: dict, arith) -> dict:
    """Run every operation of ``program`` on ``env`` (updated in place and returned)."""
    for op in program.ops:
        method = {
            Product: arith.product,
            Scale: arith.scale,
            Solve: arith.solve,
            Decay: arith.decay,
        }[type(op)]
        method(env, op, program)
    return env


def run_sequence(cfg, arith, Q, K, V, beta, g, S, *, mode: str = "chunk"):
    """Run one sequence of every head: ``Q [H, T, d_k]`` ... ``S [H, d_k, d_v]`` -> ``(O, S)``.

    ``mode="chunk"`` runs the chunk program on chunks of ``cfg.chunk_size`` tokens (the last one
    short when T is not a multiple); ``mode="recurrent"`` runs the decode program per token.
    """
    if mode not in ("chunk", "recurrent"):
        raise ValueError(f"mode must be 'chunk' or 'recurrent', not {mode!r}")
    H, T, _ = K.shape
    step = cfg.chunk_size if mode == "chunk" else 1
    out = np.zeros((H, T, V.shape[-1]), dtype=V.dtype)
    for lo in range(0, T, step):
        hi = min(lo + step, T)
        program = chunk_program(hi - lo, cfg.gated, decode=mode == "recurrent")
        env = {"Q": Q[:, lo:hi], "K": K[:, lo:hi], "V": V[:, lo:hi], "beta": beta[:, lo:hi], "S": S}
        if cfg.gated:
            env["g"] = g[:, lo:hi]
        run_program(program, env, arith)
        out[:, lo:hi] = env["O"]
        S = env["S"]
    return out, S
