"""Recurrent delta rule: the definition (ALGORITHM.md section 2), in float64.

Per sequence and head, S starts at the initial state (K x V, key-major as in fla); for every token

    S   <- alpha_t S                (gated only; decay before the read)
    u_t  = beta_t (v_t - S^T k_t)   (prediction error)
    S   <- S + k_t u_t^T
    o_t  = S^T (scale q_t)          (read after the write)
"""

from __future__ import annotations

import numpy as np

from .inputs import prepare, run

__all__ = ["fused_recurrent_delta_rule", "fused_recurrent_gated_delta_rule", "recurrent_delta_rule"]


def _recurrent_kernel(q, k, v, beta, g, S):
    """One batch of sequences, head-major ``[B, H, T, ...]``; ``S`` is ``[B, H, K, V]``."""
    T = k.shape[2]
    o = np.empty(v.shape)
    for t in range(T):
        if g is not None:
            S *= np.exp(g[:, :, t])[..., None, None]
        kt = k[:, :, t, None, :]  # [B, H, 1, K]
        u = beta[:, :, t, None] * (v[:, :, t] - (kt @ S)[:, :, 0])  # [B, H, V]
        S += kt.transpose(0, 1, 3, 2) * u[:, :, None, :]
        o[:, :, t] = (q[:, :, t, None, :] @ S)[:, :, 0]
    return o, S


def recurrent_delta_rule(
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
):
    """Token-by-token delta rule with fla's arguments and shapes.

    Parameters
    ----------
    q, k : array ``[B, T, H, K]``
    v : array ``[B, T, HV, V]`` (HV a multiple of H; value head j uses key head j // (HV/H))
    beta : array ``[B, T, HV]``
    g : array ``[B, T, HV]`` or None
        Natural-log decay (<= 0); gated DeltaNet when given.
    scale : float, optional
        Query scale, default K ** -0.5.
    initial_state : array ``[N, HV, K, V]``, optional
        N = B, or the number of sequences with ``cu_seqlens``.
    output_final_state : bool
        Return the final state ``ht`` (else ``None``).
    cu_seqlens : int array ``[N + 1]``, optional
        Varlen mode (B must be 1): sequence n is tokens ``cu[n]:cu[n+1]``, starting from
        ``initial_state[n]``.
    use_qk_l2norm_in_kernel : bool
        L2-normalise q and k first (eps 1e-6 inside the square root, as fla).
    stability : {"raise", "warn", "ignore"}
        What to do when beta * ||k||^2 leaves [0, 2], where the delta rule diverges.

    Returns
    -------
    (o ``[B, T, HV, V]``, ht ``[N, HV, K, V]`` or None), float64.
    """
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
    return run(_recurrent_kernel, p)


def fused_recurrent_delta_rule(
    q,
    k,
    v,
    beta=None,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    use_qk_l2norm_in_kernel=False,
):
    """fla's ``fused_recurrent_delta_rule`` signature (beta defaults to 1)."""
    if beta is None:
        beta = np.ones(np.shape(v)[:3])
    return recurrent_delta_rule(
        q,
        k,
        v,
        beta,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=use_qk_l2norm_in_kernel,
    )


def fused_recurrent_gated_delta_rule(
    q,
    k,
    v,
    g,
    beta=None,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    use_qk_l2norm_in_kernel=False,
):
    """fla's ``fused_recurrent_gated_delta_rule`` signature (note: g before beta)."""
    if beta is None:
        beta = np.ones(np.shape(v)[:3])
    return recurrent_delta_rule(
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
    )
