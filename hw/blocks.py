"""Registry of the hardware blocks a config can build (CLI ``verilog --block``, FPGA builds)."""

from __future__ import annotations

from .mac_array import MacArray

__all__ = ["BLOCKS", "make_block"]

BLOCKS = {
    "mac_array": MacArray.from_config,
}


def make_block(name: str, cfg):
    if name not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {name!r}")
    return BLOCKS[name](cfg)
