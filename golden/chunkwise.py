"""Chunkwise delta rule: the WY / UT-transform algorithm (ALGORITHM.md section 3), in float64.

For one chunk of C tokens with rows Q (scaled), K, V, beta, in-chunk cumulative log-gates G and
the state S at the chunk start:

    Gamma = exp(G_i - G_j) for i >= j, else 0     (masked before the exp; ones when ungated)
    A     = strictly-lower(diag(beta) K K^T * Gamma)
    T~    = (I + A)^-1                             (forward substitution)
    W     = T~ (beta exp(G) K),   U = T~ (beta V)
    V'    = U - W S
    O     = exp(G) (Q S) + (Q K^T * Gamma) V'      (Gamma includes the diagonal)
    S    <- exp(G_C) S + (exp(G_C - G) K)^T V'

A short tail chunk is zero-padded: padded rows have k = v = beta = 0 and g = 0, which adds nothing
to the state and leaves G_C at the last real token, so the padding is exact.
Everything but the state recurrence is computed for all chunks at once.
"""

from __future__ import annotations

import numpy as np

from .inputs import prepare, run

__all__ = ["chunk_delta_rule", "chunk_gated_delta_rule", "unit_lower_inverse"]


def unit_lower_inverse(A: np.ndarray) -> np.ndarray:
    """(I + A)^-1 for strictly lower-triangular ``A [..., C, C]`` by forward substitution.

    Row i of X = (I + A)^-1 is e_i - A[i, :i] X[:i], so rows are produced in order, each from the
    rows above it (batched over the leading axes).
    """
    C = A.shape[-1]
    X = np.broadcast_to(np.eye(C), A.shape).copy()
    for i in range(1, C):
        X[..., i, :i] -= np.einsum("...j,...jk->...k", A[..., i, :i], X[..., :i, :i])
    return X


def _chunk_kernel(q, k, v, beta, g, S, chunk_size):
    """One batch of sequences, head-major ``[B, H, T, ...]``; ``S`` is ``[B, H, K, V]``."""
    B, H, T, K = k.shape
    V = v.shape[-1]
    C = chunk_size
    NC = -(-T // C)
    pad = NC * C - T

    def chunks(x):  # zero-pad the tail and add the chunk axis: [B, H, NC, C, ...]
        if pad:
            x = np.pad(x, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 3))
        return x.reshape(B, H, NC, C, *x.shape[3:])

    q, k, v, beta = (chunks(x) for x in (q, k, v, beta))
    lower = np.tril(np.ones((C, C), dtype=bool))
    if g is None:
        gamma = lower.astype(np.float64)
        kb, qg, kd = beta[..., None] * k, q, k
    else:
        G = np.cumsum(chunks(g), axis=-1)  # in-chunk inclusive cumsum
        diff = np.where(lower, G[..., :, None] - G[..., None, :], 0.0)  # mask before the exp
        gamma = np.where(lower, np.exp(diff), 0.0)
        eG = np.exp(G)[..., None]
        kb, qg = (beta[..., None] * eG) * k, eG * q
        kd = np.exp(G[..., -1:] - G)[..., None] * k
        decay = np.exp(G[..., -1])  # exp(G_C) per chunk
    A = np.tril(beta[..., :, None] * (k @ k.swapaxes(-1, -2)) * gamma, -1)
    WU = unit_lower_inverse(A) @ np.concatenate([kb, beta[..., None] * v], axis=-1)
    U = WU[..., K:]
    WQ = np.concatenate([WU[..., :K], qg], axis=-2)  # [W; exp(G) Q]: one product with S
    attn = (q @ k.swapaxes(-1, -2)) * gamma  # causal, diagonal included
    kd = kd.swapaxes(-1, -2)
    o = np.empty((B, H, NC, C, V))
    for c in range(NC):
        WS_QS = WQ[:, :, c] @ S
        v_new = U[:, :, c] - WS_QS[..., :C, :]  # pseudo-values V'
        o[:, :, c] = WS_QS[..., C:, :] + attn[:, :, c] @ v_new
        if g is not None:
            S = S * decay[:, :, c, None, None]
        S = S + kd[:, :, c] @ v_new
    return o.reshape(B, H, NC * C, V)[:, :, :T], S


def chunk_delta_rule(
    q,
    k,
    v,
    beta,
    g=None,
    *,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    use_qk_l2norm_in_kernel=False,
    stability="raise",
    chunk_size=64,
):
    """Chunkwise (WY) delta rule; same arguments and results as :func:`recurrent_delta_rule`.

    ``chunk_size`` may be any integer >= 1 and T need not be a multiple of it (the tail chunk is
    short). In varlen mode chunks restart at every sequence start, as in fla.
    """
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be an integer >= 1, not {chunk_size!r}")
    p = prepare(
        q,
        k,
        v,
        beta,
        g,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        stability=stability,
    )
    return run(_chunk_kernel, p, chunk_size=int(chunk_size))


def chunk_gated_delta_rule(
    q,
    k,
    v,
    g,
    beta,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    use_qk_l2norm_in_kernel=False,
    chunk_size=64,
):
    """fla's ``chunk_gated_delta_rule`` signature (note: g before beta)."""
    return chunk_delta_rule(
        q,
        k,
        v,
        beta,
        g,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
        chunk_size=chunk_size,
    )
