"""Run the whole core in RTL (cocotb on Icarus or Verilator) against the fixed-point model.

:func:`run_core` writes the core's Verilog for a config, runs ``sim/cocotb/tb_core.py`` on a list
of sequences and returns one record per sequence (mismatches, cycles, cycles per instruction)
together with the cycle model's prediction and the figures of ARCHITECTURE.md section 4.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..hw.microcode import check_core_config
from .cycle_model import figures, predict_run
from .runner import run_cocotb, write_verilog

__all__ = ["run_core", "run_core_errors", "sequence"]


def sequence(tokens, *, heads, seed=0, mode="chunk", state="zero", hazard=None) -> dict:
    """One sequence for :func:`run_core` (``state``: zero, load a random state, or keep)."""
    if state not in ("zero", "load", "keep"):
        raise ValueError(f"state must be zero, load or keep, not {state!r}")
    if mode not in ("chunk", "recurrent"):
        raise ValueError(f"mode must be 'chunk' or 'recurrent', not {mode!r}")
    seq = {"tokens": tokens, "heads": heads, "seed": seed, "mode": mode, "state": state}
    if hazard:
        seq["hazard"] = hazard
    return seq


def run_core(
    cfg,
    sequences,
    *,
    simulator="verilator",
    build_dir,
    stall_p=0.2,
    waves=None,
    optimize=False,
) -> list[dict]:
    """Simulate ``sequences`` back to back on one core; every record gets the model's figures.

    ``optimize``: an optimised Verilator build (minutes longer, about 4x faster simulation).
    """
    check_core_config(cfg)
    for seq in sequences:
        if not 1 <= seq["tokens"] <= cfg.max_tokens:
            raise ValueError(f"tokens must be in [1, {cfg.max_tokens}], not {seq['tokens']}")
        if not 1 <= seq["heads"] <= cfg.heads:
            raise ValueError(f"heads must be in [1, {cfg.heads}], not {seq['heads']}")
    results = Path(build_dir) / "core_results.json"
    params = {"sequences": list(sequences), "stall_p": stall_p, "results": str(results)}
    t0 = time.perf_counter()
    _simulate(cfg, "tb_core", params, simulator, build_dir, waves, optimize)
    wall = time.perf_counter() - t0
    records = json.loads(results.read_text())
    for rec in records:
        pred = predict_run(cfg, rec["tokens"], rec["heads"], rec["mode"])
        rec["predicted_cycles"] = pred["cycles"]
        rec["predicted_op_cycles"] = pred["op_cycles"]
        rec.update(figures(cfg, rec["tokens"], rec["heads"], rec["cycles"], rec["mode"]))
        rec["simulator"] = simulator
        rec["stall_p"] = stall_p
    for rec in records:
        rec["wall_s"] = wall  # Verilog, build and simulation
    return records


def run_core_errors(cfg, *, simulator="icarus", build_dir, waves=None) -> None:
    """The boundary-error test (sim/cocotb/tb_core_errors.py); raises if a check fails."""
    _simulate(cfg, "tb_core_errors", {}, simulator, build_dir, waves, False)


def _simulate(cfg, bench, params, simulator, build_dir, waves, optimize):
    from ..hw.core import DeltaNetCore

    build_dir = Path(build_dir)
    verilog = write_verilog(DeltaNetCore(cfg), "deltanet_core", build_dir / "core.v", cfg)
    run_cocotb(
        verilog=verilog,
        toplevel="deltanet_core",
        module=f"deltanet_hw.sim.cocotb.{bench}",
        simulator=simulator,
        build_dir=build_dir / simulator,
        params={"config_json": str(verilog.with_suffix(".json")), **params},
        waves=waves,
        optimize=optimize,
    )
