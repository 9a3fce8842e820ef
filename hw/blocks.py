"""Registry of the hardware blocks a config can build (CLI ``verilog --block``, FPGA builds)."""

from __future__ import annotations

from .beta_phi import BetaPhi
from .chunk_buffer import ChunkBuffer
from .core import DeltaNetCore
from .mac_array import MacArray
from .state_sram import StateSram

__all__ = ["BLOCKS", "make_block"]

BLOCKS = {
    "core": DeltaNetCore,
    "mac_array": MacArray.from_config,
    "state_sram": StateSram.from_config,
    "chunk_buffer": ChunkBuffer.from_config,
    "beta_phi": BetaPhi,
}


def make_block(name: str, cfg):
    if name not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {name!r}")
    return BLOCKS[name](cfg)
