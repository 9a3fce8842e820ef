"""Amaranth hardware of the DeltaNet core (one module per block)."""
