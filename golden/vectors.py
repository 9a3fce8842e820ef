"""Seeded input vectors: the one source of random inputs for every test tier and benchmark."""

from __future__ import annotations

import numpy as np

from ..config import CoreConfig
from .layer import gate_init, gdn_gate

__all__ = ["random_inputs", "rel_rms"]


def rel_rms(x, ref) -> float:
    """Relative RMS error ``rms(x - ref) / rms(ref)`` (fla's acceptance metric)."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    denom = np.sqrt(np.mean(ref * ref))
    err = np.sqrt(np.mean((x - ref) ** 2))
    return float(err / denom) if denom > 0 else float(err)


def random_inputs(
    cfg: CoreConfig, tokens: int, *, heads: int | None = None, batch: int = 1, seed: int = 0
) -> dict:
    """Random valid inputs of a core shaped by ``cfg``: keyword arguments of ``delta_core``.

    q, k, v and beta logits ~ N(0, 1) (the projections); when ``cfg.short_conv``, convolution
    weights ~ U(-0.5, 0.5) (fla's initialisation for kernel 4); when ``cfg.gated``, log decays from
    the Gated DeltaNet gate with fla's initialisation.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, not {tokens}")
    H = cfg.heads if heads is None else heads
    if H < 1:
        raise ValueError(f"heads must be >= 1, not {H}")
    rng = np.random.default_rng(seed)
    shape = (batch, tokens, H)
    out = {
        "q": rng.standard_normal((*shape, cfg.d_k)),
        "k": rng.standard_normal((*shape, cfg.d_k)),
        "v": rng.standard_normal((*shape, cfg.d_v)),
        "beta_logits": rng.standard_normal(shape),
    }
    if cfg.gated:
        A_log, dt_bias = gate_init(H, rng)
        out["g"] = gdn_gate(rng.standard_normal(shape), A_log, dt_bias)
    if cfg.short_conv:
        out["conv_weights"] = {
            n: rng.uniform(-0.5, 0.5, (H, d, cfg.conv_size))
            for n, d in (("q", cfg.d_k), ("k", cfg.d_k), ("v", cfg.d_v))
        }
    return out
