"""Validation and preparation of delta-rule inputs, shared by the recurrent and chunkwise forms.

Both forms take fla's arguments (shapes ``[B, T, H, K]`` etc.), so both start here: every check
of shape, dtype and finiteness, the in-kernel L2 normalisation of q and k, the query scale, value
heads sharing key heads (GVA), the stability check of the delta rule, and the split of a batch into
the sequences that are run independently (``cu_seqlens``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "L2NORM_EPS",
    "STABILITY_MODES",
    "Prepared",
    "check_array",
    "check_gates",
    "l2norm",
    "prepare",
    "run",
]

L2NORM_EPS = 1e-6  # fla's l2norm: x / sqrt(sum(x^2) + eps), eps inside the square root
STABILITY_MODES = ("raise", "warn", "ignore")
# beta * ||k||^2 must lie in [0, 2]; this slack only absorbs float rounding of normalised keys.
_STABILITY_SLACK = 1e-9


def check_array(name: str, x, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a float64 array, or raise a ``ValueError`` naming the argument."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # objects NumPy cannot read at all
        raise ValueError(f"{name} must be an array of floats ({exc})") from None
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must have a floating-point dtype, not {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)})"
        )
    return arr.astype(np.float64, copy=False)


def check_gates(g, shape) -> np.ndarray:
    """Log decays ``g``: float, finite, of ``shape`` and <= 0, else a ``ValueError``."""
    g = check_array("g", g, 3)
    if g.shape != tuple(shape):
        raise ValueError(f"g must have shape [B, T, HV] = {tuple(shape)}, not {g.shape}")
    if np.any(g > 0):
        raise ValueError("g is a log decay and must be <= 0 (alpha = exp(g) in (0, 1])")
    return g


def l2norm(x: np.ndarray, eps: float = L2NORM_EPS) -> np.ndarray:
    """fla's L2 normalisation over the last axis: ``x / sqrt(sum(x**2) + eps)``."""
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + eps)


@dataclass(frozen=True)
class Prepared:
    """Validated inputs in head-major layout ``[B, H, T, ...]``, q already scaled."""

    q: np.ndarray  # [B, HV, T, K], scaled
    k: np.ndarray  # [B, HV, T, K]
    v: np.ndarray  # [B, HV, T, V]
    beta: np.ndarray  # [B, HV, T]
    g: np.ndarray | None  # [B, HV, T] natural-log decay, or None (ungated)
    h0: np.ndarray  # [N, HV, K, V]
    cu_seqlens: np.ndarray | None
    output_final_state: bool
    stability: str


def prepare(
    q,
    k,
    v,
    beta,
    g,
    *,
    scale,
    initial_state,
    output_final_state,
    cu_seqlens,
    use_qk_l2norm_in_kernel,
    stability,
) -> Prepared:
    """Check every argument of the fla-style entry points and bring them into one layout."""
    if stability not in STABILITY_MODES:
        raise ValueError(
            f"stability must be one of {', '.join(STABILITY_MODES)}, not {stability!r}"
        )
    q = check_array("q", q, 4)
    k = check_array("k", k, 4)
    v = check_array("v", v, 4)
    if q.shape != k.shape:
        raise ValueError(
            f"q and k must have the same shape [B, T, H, K], not {q.shape} and {k.shape}"
        )
    B, T, H, K = k.shape
    if v.shape[:2] != (B, T):
        raise ValueError(f"v must have shape [B, T, HV, V] with B={B}, T={T}, not {v.shape}")
    HV, V = v.shape[2], v.shape[3]
    if min(H, K, V, HV) < 1:
        raise ValueError(
            f"q, k, v must have non-empty head and feature axes, not {k.shape}, {v.shape}"
        )
    if HV % H:
        raise ValueError(f"v heads ({HV}) must be a multiple of q/k heads ({H})")
    beta = check_array("beta", beta, 3)
    if beta.shape != (B, T, HV):
        raise ValueError(f"beta must have shape [B, T, HV] = {(B, T, HV)}, not {beta.shape}")
    if g is not None:
        g = check_gates(g, (B, T, HV))
    if scale is None:
        scale = K**-0.5
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.floating):
        raise ValueError(f"scale must be a number, not {scale!r}")
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, not {scale!r}")

    if cu_seqlens is not None:
        cu = np.asarray(cu_seqlens)
        if cu.dtype.kind not in "iu" or cu.ndim != 1 or cu.size < 2:
            raise ValueError(f"cu_seqlens must be a 1-D integer array [N+1], not {cu!r}")
        if B != 1:
            raise ValueError(f"cu_seqlens needs batch size B = 1, not {B}")
        if cu[0] != 0 or cu[-1] != T or np.any(np.diff(cu) < 0):
            raise ValueError(f"cu_seqlens must rise from 0 to T = {T}, not {cu.tolist()}")
        cu_seqlens = cu.astype(np.int64)
        N = cu.size - 1
    else:
        N = B
    if initial_state is None:
        h0 = np.zeros((N, HV, K, V))
    else:
        h0 = check_array("initial_state", initial_state, 4)
        if h0.shape != (N, HV, K, V):
            raise ValueError(
                f"initial_state must have shape [N, HV, K, V] = {(N, HV, K, V)}, not {h0.shape}"
            )

    if use_qk_l2norm_in_kernel:
        q, k = l2norm(q), l2norm(k)
    if HV != H:  # value head j reads key head j // (HV / H)
        q, k = (np.repeat(x, HV // H, axis=2) for x in (q, k))
    strength = beta * np.sum(k * k, axis=-1)
    bad = (strength > 2 + _STABILITY_SLACK) | (strength < 0)
    if np.any(bad) and stability != "ignore":
        b, t, h = (int(i) for i in np.argwhere(bad)[0])
        msg = (
            f"beta * ||k||^2 = {strength[b, t, h]:.4g} at batch {b}, token {t}, head {h} is "
            f"outside [0, 2] ({int(bad.sum())} such tokens): the delta rule diverges. "
            "L2-normalise the keys (use_qk_l2norm_in_kernel=True) and keep beta in [0, 2]"
        )
        if stability == "raise":
            raise ValueError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def head_major(x):
        return np.ascontiguousarray(np.moveaxis(x, 2, 1))

    return Prepared(
        q=head_major(q * scale),
        k=head_major(k),
        v=head_major(v),
        beta=head_major(beta),
        g=None if g is None else head_major(g),
        h0=h0,
        cu_seqlens=cu_seqlens,
        output_final_state=bool(output_final_state),
        stability=stability,
    )


Kernel = Callable[..., tuple[np.ndarray, np.ndarray]]


def _sequences(p: Prepared) -> Iterator[tuple[slice, slice]]:
    """(batch rows, token range) of every independent sequence; state index follows the order."""
    if p.cu_seqlens is None:
        yield slice(None), slice(None)
    else:
        for s, e in zip(p.cu_seqlens[:-1], p.cu_seqlens[1:], strict=True):
            yield slice(0, 1), slice(int(s), int(e))


def run(kernel: Kernel, p: Prepared, **kwargs) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``kernel(q, k, v, beta, g, S0, **kwargs) -> (o, S)`` over every sequence of ``p``.

    The kernel sees head-major arrays ``[B, H, T, ...]`` of one batch (or one varlen sequence) and
    the matching initial states; this returns fla's ``(o [B, T, HV, V], ht [N, HV, K, V] | None)``.
    """
    o = np.zeros(p.v.shape)
    finals = []
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked below
        for n, (rows, span) in enumerate(_sequences(p)):
            h0 = p.h0 if p.cu_seqlens is None else p.h0[n : n + 1]
            g = None if p.g is None else p.g[rows, :, span]
            o_seq, s_seq = kernel(
                p.q[rows, :, span],
                p.k[rows, :, span],
                p.v[rows, :, span],
                p.beta[rows, :, span],
                g,
                h0.copy(),
                **kwargs,
            )
            o[rows, :, span] = o_seq
            finals.append(s_seq)
    ht = np.concatenate(finals, axis=0)
    if p.stability == "warn" and not (np.all(np.isfinite(o)) and np.all(np.isfinite(ht))):
        warnings.warn(
            "the delta rule diverged: outputs contain Inf or NaN", RuntimeWarning, stacklevel=3
        )
    return np.moveaxis(o, 1, 2), (ht if p.output_final_state else None)
