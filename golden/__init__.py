"""Golden models of DeltaNet: float64 references with fla's names and shapes, and the fixed-point
model the hardware matches bit for bit."""

from .chunkwise import chunk_delta_rule, chunk_gated_delta_rule
from .delta_rule import (
    fused_recurrent_delta_rule,
    fused_recurrent_gated_delta_rule,
    recurrent_delta_rule,
)
from .fixed import FixedResult, fixed_delta_rule, fixed_recurrent_delta_rule
from .inputs import l2norm

__all__ = [
    "FixedResult",
    "chunk_delta_rule",
    "chunk_gated_delta_rule",
    "fixed_delta_rule",
    "fixed_recurrent_delta_rule",
    "fused_recurrent_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "l2norm",
    "recurrent_delta_rule",
]
