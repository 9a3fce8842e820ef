"""Layer-level pieces of DeltaNet and Gated DeltaNet around the delta rule, in float64.

The order follows fla's ``DeltaNet`` layer (ALGORITHM.md section 4): projected q, k, v -> causal
depthwise short convolution -> feature map (v always SiLU) -> q/k normalisation -> beta from its
logits -> delta rule (chunkwise or recurrent) -> per-head RMSNorm (optionally gated).
The output projection is the user's (it is a plain matrix product).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..config import BETA_MODES, FEATURE_MAPS, QK_NORMS
from .chunkwise import chunk_delta_rule
from .delta_rule import recurrent_delta_rule
from .inputs import check_array, l2norm

__all__ = [
    "ACTIVATIONS",
    "beta_from_logits",
    "beta_schedule",
    "core_options",
    "delta_core",
    "deltanet_layer",
    "gate_init",
    "gdn_gate",
    "l2norm",
    "rms_norm",
    "short_conv",
    "sigmoid",
    "silu",
    "softplus",
    "sum_norm",
]


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # no overflow warnings


def silu(x):
    return x * sigmoid(x)


def relu(x):
    return np.maximum(x, 0.0)


def elu1(x):
    """1 + ELU(x): x + 1 for x > 0, exp(x) otherwise (always positive)."""
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def identity(x):
    return x


ACTIVATIONS = {"silu": silu, "relu": relu, "elu1": elu1, "identity": identity}  # FEATURE_MAPS


def softplus(x):
    return np.logaddexp(0.0, x)


def short_conv(x, weight, cu_seqlens=None):
    """Causal depthwise convolution over time, zero left padding, no bias (fla ShortConvolution).

    ``x [B, T, *D]``, ``weight [*D, W]``; ``weight[..., W-1]`` multiplies x_t and ``weight[..., 0]``
    multiplies x_{t-W+1}. With ``cu_seqlens`` the padding restarts at every sequence start.
    """
    x = check_array("x", x)
    weight = check_array("weight", weight)
    if x.ndim < 3 or weight.shape[:-1] != x.shape[2:]:
        raise ValueError(
            f"weight must have shape [*D, W] for x [B, T, *D] = {x.shape}, not {weight.shape}"
        )
    W = weight.shape[-1]
    T = x.shape[1]
    starts = np.zeros(T, dtype=np.int64)  # first token of the sequence each token belongs to
    if cu_seqlens is not None:
        cu = np.asarray(cu_seqlens)
        for s, e in itertools.pairwise(cu):
            starts[s:e] = s
    y = np.zeros_like(x)
    t = np.arange(T)
    for lag in range(W):
        src = t - lag
        ok = src >= starts
        y[:, ok] += weight[..., W - 1 - lag] * x[:, src[ok]]
    return y


def sum_norm(x):
    """fla's ``sum_norm``: x / sum(x) over the last axis."""
    s = np.sum(x, axis=-1, keepdims=True)
    if np.any(np.abs(s) < 1e-30):
        raise ValueError(
            "sum normalisation of q/k divides by a zero sum: use qk_norm='l2' or a "
            "positive feature map (relu, elu1)"
        )
    return x / s


def beta_from_logits(logits, mode="sigmoid", constant=1.0):
    """beta per token and head: ``sigmoid(logit)``, a ``constant``, or ``neg_eigval`` 2 sigmoid."""
    if mode not in BETA_MODES:
        raise ValueError(f"beta mode must be one of {', '.join(BETA_MODES)}, not {mode!r}")
    logits = check_array("beta_logits", logits)
    if mode == "constant":
        if not 0.0 < constant <= 2.0:
            raise ValueError(f"constant beta must be in (0, 2], not {constant!r}")
        return np.full(logits.shape, float(constant))
    return sigmoid(logits) * (2.0 if mode == "neg_eigval" else 1.0)


def beta_schedule(n_layers, first, last):
    """A per-layer constant beta, moving linearly from ``first`` (layer 0) to ``last``.

    Use entry ``i`` as ``constant`` with ``mode="constant"`` in layer ``i``.
    """
    if n_layers < 1 or not (0.0 < first <= 2.0 and 0.0 < last <= 2.0):
        raise ValueError("beta schedule needs n_layers >= 1 and first, last in (0, 2]")
    return np.linspace(first, last, n_layers)


def gdn_gate(a, A_log, dt_bias):
    """Gated DeltaNet log decay ``g = -exp(A_log) softplus(a + dt_bias)`` (<= 0).

    ``a`` is ``[B, T, HV]``; ``A_log`` and ``dt_bias`` are ``[HV]``.
    """
    a = check_array("gate input a", a, 3)
    A_log = check_array("A_log", A_log, 1)
    dt_bias = check_array("dt_bias", dt_bias, 1)
    if A_log.shape != (a.shape[-1],) or dt_bias.shape != (a.shape[-1],):
        raise ValueError(f"A_log and dt_bias must have shape [HV] = ({a.shape[-1]},)")
    return -np.exp(A_log) * softplus(a + dt_bias)


def gate_init(heads, rng, dt_min=1e-3, dt_max=1e-1):
    """fla's gate initialisation: ``(A_log, dt_bias)`` per head.

    A ~ U(0, 16), dt log-uniform in [dt_min, dt_max], dt_bias = softplus^-1(dt).
    """
    A_log = np.log(rng.uniform(1e-6, 16.0, heads))
    dt = np.exp(rng.uniform(np.log(dt_min), np.log(dt_max), heads))
    dt = np.maximum(dt, 1e-4)
    return A_log, dt + np.log(-np.expm1(-dt))


def rms_norm(x, weight=None, eps=1e-5):
    """RMSNorm over the last axis."""
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y if weight is None else y * weight


def delta_core(
    q,
    k,
    v,
    beta_logits,
    g=None,
    *,
    conv_weights=None,
    feature_map="silu",
    qk_norm="l2",
    beta_mode="sigmoid",
    beta_constant=1.0,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    mode="chunk",
    chunk_size=64,
    stability="raise",
):
    """What a DeltaNet core computes: projections in, delta-rule outputs out (no output norm).

    Short convolution (when ``conv_weights`` is given) -> feature map on q, k and SiLU on v ->
    q/k normalisation (``l2`` in the kernel, or ``sum``) -> beta from ``beta_logits`` -> delta
    rule with the log decay ``g`` when given. Shapes as :func:`deltanet_layer`.
    """
    if feature_map not in FEATURE_MAPS:
        raise ValueError(
            f"feature_map must be one of {', '.join(FEATURE_MAPS)}, not {feature_map!r}"
        )
    if qk_norm not in QK_NORMS:
        raise ValueError(f"qk_norm must be one of {', '.join(QK_NORMS)}, not {qk_norm!r}")
    if mode not in ("chunk", "recurrent"):
        raise ValueError(f"mode must be 'chunk' or 'recurrent', not {mode!r}")
    q, k, v = check_array("q", q, 4), check_array("k", k, 4), check_array("v", v, 4)
    if conv_weights is not None:
        missing = {"q", "k", "v"} - set(conv_weights)
        if missing:
            raise ValueError(f"conv_weights needs entries q, k, v; missing {sorted(missing)}")
        q, k, v = (
            short_conv(x, conv_weights[n], cu_seqlens) for x, n in ((q, "q"), (k, "k"), (v, "v"))
        )
    act = ACTIVATIONS[feature_map]
    q, k, v = act(q), act(k), silu(v)
    if qk_norm == "sum":
        q, k = sum_norm(q), sum_norm(k)
    beta = beta_from_logits(beta_logits, beta_mode, beta_constant)
    kwargs = dict(
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        use_qk_l2norm_in_kernel=qk_norm == "l2",
        stability=stability,
    )
    if mode == "chunk":
        return chunk_delta_rule(q, k, v, beta, g, chunk_size=chunk_size, **kwargs)
    return recurrent_delta_rule(q, k, v, beta, g, **kwargs)


def core_options(cfg) -> dict:
    """The :func:`delta_core` options a :class:`~deltanet_hw.config.CoreConfig` implies."""
    return dict(
        feature_map=cfg.feature_map,
        qk_norm=cfg.qk_norm,
        beta_mode=cfg.beta_mode,
        beta_constant=cfg.beta_constant,
        scale=cfg.query_scale,
        chunk_size=cfg.chunk_size,
    )


def deltanet_layer(
    q,
    k,
    v,
    beta_logits,
    *,
    gate_a=None,
    A_log=None,
    dt_bias=None,
    conv_weights=None,
    feature_map="silu",
    qk_norm="l2",
    beta_mode="sigmoid",
    beta_constant=1.0,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    mode="chunk",
    chunk_size=64,
    norm_weight=None,
    norm_eps=1e-5,
    output_gate=None,
    stability="raise",
):
    """One DeltaNet (or Gated DeltaNet) layer from per-head projections to the normed output.

    Parameters
    ----------
    q, k : ``[B, T, H, K]``; v : ``[B, T, H, V]``
        Projected inputs (``x @ W_q`` etc., split into heads).
    beta_logits : ``[B, T, H]``
        Projected beta inputs (ignored in ``constant`` mode).
    gate_a, A_log, dt_bias : ``[B, T, H]``, ``[H]``, ``[H]``
        Gated DeltaNet gate inputs; the layer is gated when ``gate_a`` is given.
    conv_weights : dict with ``q``, ``k``, ``v`` of shape ``[H, D, W]``, optional
        Short convolution weights (no convolution when None).
    feature_map, qk_norm, beta_mode, beta_constant : see :class:`deltanet_hw.config.CoreConfig`.
    mode : ``"chunk"`` or ``"recurrent"``
        Which delta-rule form runs (they agree to rounding).
    norm_weight : ``[V]``, optional; output_gate : ``[B, T, H, V]``, optional
        Per-head RMSNorm weight; when ``output_gate`` is given the output is
        ``RMSNorm(o) * silu(output_gate)`` (fla's ``use_gate``).

    Returns
    -------
    (o ``[B, T, H, V]``, ht or None)
    """
    g = None
    if gate_a is not None:
        if A_log is None or dt_bias is None:
            raise ValueError("a gated layer (gate_a given) needs A_log and dt_bias")
        g = gdn_gate(gate_a, A_log, dt_bias)
    o, ht = delta_core(
        q,
        k,
        v,
        beta_logits,
        g,
        conv_weights=conv_weights,
        feature_map=feature_map,
        qk_norm=qk_norm,
        beta_mode=beta_mode,
        beta_constant=beta_constant,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
        mode=mode,
        chunk_size=chunk_size,
        stability=stability,
    )
    o = rms_norm(o, norm_weight, norm_eps)
    if output_gate is not None:
        o = o * silu(check_array("output_gate", output_gate, 4))
    return o, ht
