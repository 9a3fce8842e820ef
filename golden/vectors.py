"""Seeded input vectors: the one source of random and hazard inputs for every test tier."""

from __future__ import annotations

import numpy as np

from ..config import CoreConfig
from .layer import beta_from_logits, gate_init, gdn_gate

__all__ = ["random_inputs", "rel_rms"]


def rel_rms(x, ref) -> float:
    """Relative RMS error ``rms(x - ref) / rms(ref)`` (fla's acceptance metric)."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    denom = np.sqrt(np.mean(ref * ref))
    err = np.sqrt(np.mean((x - ref) ** 2))
    return float(err / denom) if denom > 0 else float(err)


def random_inputs(
    cfg: CoreConfig, tokens: int, *, heads: int | None = None, batch: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random valid delta-rule inputs shaped by ``cfg``: keyword arguments of the golden ops.

    q, k, v ~ N(0, 1) (q and k are L2-normalised in the kernel: pass
    ``use_qk_l2norm_in_kernel=True``), beta from random logits with the config's beta mode, and
    when ``cfg.gated`` the Gated DeltaNet gate from random inputs and fla's initialisation.
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
        "beta": beta_from_logits(rng.standard_normal(shape), cfg.beta_mode, cfg.beta_constant),
    }
    if cfg.gated:
        A_log, dt_bias = gate_init(H, rng)
        out["g"] = gdn_gate(rng.standard_normal(shape), A_log, dt_bias)
    return out
