"""Bit-exact fixed-point model of the DeltaNet core: the definition the hardware must match.

:func:`fixed_delta_rule` takes the same float inputs as the float core
(:func:`deltanet_hw.golden.layer.delta_core`): projected q, k, v, beta logits, log gates g,
convolution weights and an initial state. It rounds them into the config's formats (counting
what does not fit, refusing NaN/Inf), runs the fixed-point beta/phi stages, then the chunk
program (prefill) or the decode program (one token at a time) of every sequence and head.

Beta/phi stages, each rounded into the named format:

1. inputs -> ``fmt_input`` (q, k, v, beta logits) and ``fmt_gate`` (g);
2. short convolution (weights in ``fmt_conv``, exact sum) -> ``fmt_act``; without it the inputs
   are re-rounded to ``fmt_act``;
3. feature map on q, k -> ``fmt_act`` (SiLU = x sigmoid(x) from the table; ReLU; 1+ELU with the
   exp table; identity) and SiLU on v -> ``fmt_v``;
4. L2 normalisation: s = sum x^2 (exact) + eps (1e-6 rounded to the same step), r = rsqrt(s)
   (table + Newton), k = x r -> ``fmt_qk``; q = x (r * scale) -> ``fmt_qk``, the scale held as a
   mantissa in [0.5, 1) and a power of two;
5. beta = sigmoid(logit) (x 2 for ``neg_eigval``), or the constant, -> ``fmt_beta``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..qformat import shift_round
from .executor import FixedArith, run_sequence
from .inputs import L2NORM_EPS, check_array, check_gates
from .nonlinear import INTERNAL_FRAC, exp_neg, rsqrt, sigmoid, silu

__all__ = ["FixedResult", "beta_phi", "fixed_delta_rule", "fixed_recurrent_delta_rule"]


@dataclass(frozen=True)
class FixedResult:
    """Outputs of the fixed-point model.

    ``o [B, T, H, V]`` and ``final_state [B, H, K, V]`` as exact floats, the same as raw int64 words
    (``o_raw`` in ``fmt_o``, ``final_state_raw`` in ``fmt_state``), and ``saturations``: how many
    values did not fit their format, per stage or program destination (sticky counts).
    """

    o: np.ndarray
    o_raw: np.ndarray
    final_state: np.ndarray
    final_state_raw: np.ndarray
    saturations: dict[str, int] = field(default_factory=dict)

    @property
    def total_saturations(self) -> int:
        return int(sum(self.saturations.values()))


def _quantize(fmt, x, name, counts, key):
    raw, over = fmt.from_float(x, name)
    counts[key] += over
    return raw


def _conv(cfg, x_raw, w_raw, counts, key):
    """Causal depthwise convolution over time of ``x [B, T, H, d]`` with ``w [H, d, W]``."""
    W = w_raw.shape[-1]
    T = x_raw.shape[1]
    acc = np.zeros_like(x_raw)
    for lag in range(W):
        acc[:, lag:] += w_raw[..., W - 1 - lag] * x_raw[:, : T - lag]
    raw, over = cfg.fmt_act.requantize(acc, cfg.fmt_input.frac_bits + cfg.fmt_conv.frac_bits)
    counts[key] += over
    return raw


def _feature_map(cfg, x, counts, key):
    fa = cfg.fmt_act
    if cfg.feature_map == "silu":
        y, over = silu(x, fa.frac_bits, fa, cfg.lut_bits)
    elif cfg.feature_map == "relu":
        y, over = np.maximum(x, 0), 0
    elif cfg.feature_map == "elu1":
        e, over_e = exp_neg(x, fa.frac_bits, fa, cfg.lut_bits)
        plus, over_p = fa.requantize(x + (np.int64(1) << fa.frac_bits), fa.frac_bits)
        y, over = np.where(x > 0, plus, e), over_e + over_p
    else:
        y, over = x, 0
    counts[key] += over
    return y


def _l2norm(cfg, x, scale, counts, key):
    """x / sqrt(sum x^2 + eps) * scale, rounded into ``fmt_qk``."""
    fa = cfg.fmt_act.frac_bits
    eps = round(L2NORM_EPS * 2.0 ** (2 * fa))
    r, p = rsqrt(np.sum(x * x, axis=-1) + eps, 2 * fa, cfg.lut_bits, cfg.rsqrt_newton)
    shift = fa + INTERNAL_FRAC + p
    if scale != 1.0:
        mant, exp2 = math.frexp(scale)  # scale = mant * 2**exp2, mant in [0.5, 1)
        r = shift_round(r * round(mant * 2**INTERNAL_FRAC), INTERNAL_FRAC, "half_up")
        shift = shift - exp2
    raw, over = cfg.fmt_qk.requantize(x * r[..., None], shift[..., None])
    counts[key] += over
    return raw


def _check_inputs(cfg, q, k, v, beta_logits, g, conv_weights, initial_state):
    q, k, v = (check_array(n, x, 4) for n, x in (("q", q), ("k", k), ("v", v)))
    B, T, H, _ = k.shape
    if q.shape != k.shape or k.shape[-1] != cfg.d_k:
        raise ValueError(
            f"q and k must have shape [B, T, H, d_k={cfg.d_k}], not {q.shape}, {k.shape}"
        )
    if v.shape != (B, T, H, cfg.d_v):
        raise ValueError(f"v must have shape [B, T, H, d_v] = {(B, T, H, cfg.d_v)}, not {v.shape}")
    beta_logits = check_array("beta_logits", beta_logits, 3)
    if beta_logits.shape != (B, T, H):
        raise ValueError(f"beta_logits must have shape {(B, T, H)}, not {beta_logits.shape}")
    if cfg.gated != (g is not None):
        raise ValueError(
            f"g (log decay) must be given exactly when the config is gated (gated={cfg.gated})"
        )
    if g is not None:
        g = check_gates(g, (B, T, H))
    if cfg.short_conv != (conv_weights is not None):
        raise ValueError(
            "conv_weights (q, k, v of shape [H, d, conv_size]) must be given exactly "
            f"when the config has short_conv (short_conv={cfg.short_conv})"
        )
    if conv_weights is not None:
        conv = {}
        for n, d in (("q", cfg.d_k), ("k", cfg.d_k), ("v", cfg.d_v)):
            if n not in conv_weights:
                raise ValueError(f"conv_weights needs entries q, k, v; missing {n!r}")
            conv[n] = check_array(f"conv_weights[{n!r}]", conv_weights[n], 3)
            if conv[n].shape != (H, d, cfg.conv_size):
                raise ValueError(
                    f"conv_weights[{n!r}] must have shape {(H, d, cfg.conv_size)}, "
                    f"not {conv[n].shape}"
                )
        conv_weights = conv
    if initial_state is not None:
        initial_state = check_array("initial_state", initial_state, 4)
        if initial_state.shape != (B, H, cfg.d_k, cfg.d_v):
            raise ValueError(
                f"initial_state must have shape {(B, H, cfg.d_k, cfg.d_v)}, "
                f"not {initial_state.shape}"
            )
    if cfg.qk_norm != "l2":
        raise ValueError(
            f"qk_norm={cfg.qk_norm!r}: the fixed-point model (and the hardware) "
            "implement L2 normalisation only"
        )
    return q, k, v, beta_logits, g, conv_weights, initial_state


def beta_phi(cfg, q, k, v, beta_logits, g=None, conv_weights=None, counts=None):
    """Fixed-point beta/phi stages (checked float inputs ``[B, T, H, d]``) -> raw words.

    Returns a dict with ``q``, ``k`` (``fmt_qk``), ``v`` (``fmt_v``), ``beta`` (``fmt_beta``) and
    ``g`` (``fmt_gate``, or None); ``counts`` (a Counter) collects saturations per stage.
    """
    counts = Counter() if counts is None else counts
    fin = cfg.fmt_input
    raw = {n: _quantize(fin, x, n, counts, "input") for n, x in (("q", q), ("k", k), ("v", v))}
    if conv_weights is not None:
        for n in raw:
            w = _quantize(cfg.fmt_conv, conv_weights[n], f"conv_weights[{n!r}]", counts, "conv")
            raw[n] = _conv(cfg, raw[n], w, counts, "conv")
    else:
        for n in raw:
            raw[n], over = cfg.fmt_act.requantize(raw[n], fin.frac_bits)
            counts["conv"] += over
    qa = _feature_map(cfg, raw["q"], counts, "feature_map")
    ka = _feature_map(cfg, raw["k"], counts, "feature_map")
    v_out, over = silu(raw["v"], cfg.fmt_act.frac_bits, cfg.fmt_v, cfg.lut_bits)
    counts["v"] += over
    out = {
        "q": _l2norm(cfg, qa, cfg.query_scale, counts, "l2norm"),
        "k": _l2norm(cfg, ka, 1.0, counts, "l2norm"),
        "v": v_out,
    }
    if cfg.beta_mode == "constant":
        out["beta"] = np.full(beta_logits.shape, cfg.fmt_beta.const(cfg.beta_constant, "beta"))
    else:
        logits = _quantize(fin, beta_logits, "beta_logits", counts, "input")
        s = sigmoid(logits, fin.frac_bits, cfg.lut_bits)
        frac = INTERNAL_FRAC - (cfg.beta_mode == "neg_eigval")  # x 2 by reading one bit higher
        out["beta"], over = cfg.fmt_beta.requantize(s, frac)
        counts["beta"] += over
    out["g"] = None if g is None else _quantize(cfg.fmt_gate, g, "g", counts, "input")
    return out


def fixed_delta_rule(
    q,
    k,
    v,
    beta_logits,
    g=None,
    *,
    cfg,
    conv_weights=None,
    initial_state=None,
    mode="chunk",
    tile=None,
) -> FixedResult:
    """Run sequences through the fixed-point core (``mode`` ``chunk`` = prefill, ``recurrent``).

    Parameters
    ----------
    q, k : ``[B, T, H, d_k]``; v : ``[B, T, H, d_v]``; beta_logits, g : ``[B, T, H]``
        Float projections, as :func:`~deltanet_hw.golden.layer.delta_core` takes them; each of
        the B rows is an independent sequence. g (log decay) exactly when ``cfg.gated``.
    cfg : CoreConfig
    conv_weights : dict q, k, v -> ``[H, d, conv_size]``; exactly when ``cfg.short_conv``.
    initial_state : ``[B, H, d_k, d_v]``, optional
    tile : int, optional
        Contraction tile of the products; any tile gives the same bits.
    """
    q, k, v, beta_logits, g, conv_weights, initial_state = _check_inputs(
        cfg, q, k, v, beta_logits, g, conv_weights, initial_state
    )
    counts: Counter[str] = Counter()
    x = beta_phi(cfg, q, k, v, beta_logits, g, conv_weights, counts)
    B, T, H, _ = k.shape
    if initial_state is None:
        S0 = np.zeros((B, H, cfg.d_k, cfg.d_v), dtype=np.int64)
    else:
        S0 = _quantize(cfg.fmt_state, initial_state, "initial_state", counts, "initial_state")
    arith = FixedArith(cfg, tile)

    def heads_first(a):
        return None if a is None else np.moveaxis(a, 2, 1)  # [B, H, T, ...]

    q_, k_, v_, b_, g_ = (heads_first(x[n]) for n in ("q", "k", "v", "beta", "g"))
    o = np.zeros((B, H, T, cfg.d_v), dtype=np.int64)
    S = np.zeros_like(S0)
    for b in range(B):
        o[b], S[b] = run_sequence(
            cfg, arith, q_[b], k_[b], v_[b], b_[b], None if g_ is None else g_[b], S0[b], mode=mode
        )
    counts.update(arith.saturations)
    o = np.moveaxis(o, 1, 2)
    return FixedResult(
        o=cfg.fmt_o.to_float(o),
        o_raw=o,
        final_state=cfg.fmt_state.to_float(S),
        final_state_raw=S,
        saturations={k: int(c) for k, c in counts.items()},
    )


def fixed_recurrent_delta_rule(
    q, k, v, beta_logits, g=None, *, cfg, conv_weights=None, initial_state=None
) -> FixedResult:
    """The decode form: the fixed-point core one token at a time (state kept between tokens)."""
    return fixed_delta_rule(
        q,
        k,
        v,
        beta_logits,
        g,
        cfg=cfg,
        conv_weights=conv_weights,
        initial_state=initial_state,
        mode="recurrent",
    )
