"""Golden models of DeltaNet: float64 references with fla's names, arguments and shapes."""

from .chunkwise import chunk_delta_rule, chunk_gated_delta_rule
from .delta_rule import (
    fused_recurrent_delta_rule,
    fused_recurrent_gated_delta_rule,
    recurrent_delta_rule,
)
from .inputs import l2norm

__all__ = [
    "chunk_delta_rule",
    "chunk_gated_delta_rule",
    "fused_recurrent_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "l2norm",
    "recurrent_delta_rule",
]
