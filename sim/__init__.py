"""Simulation infrastructure: cocotb runners and testbenches, cycle model."""
