"""Block benchmarks recorded in reports/blocks/: MAC array throughput and FPGA figures.

``python -m deltanet_hw.sim.bench_blocks -o reports/blocks [--fpga]``

- Throughput: long products (256 tiles of K = d_k steps, random operands) through the MAC array
  of each preset on the Amaranth simulator with no stalls on either side; utilization = MACs
  done / (R x C x cycles from the first beat accepted to the last result row sent). Every result
  word is checked against the golden sums.
- ``--fpga``: the MAC array alone on the iCEBreaker (``ice40``) and the ULX3S-85F (``small``):
  resources and post-route Fmax from the yosys/nextpnr JSON reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from ..config import preset
from ..hw.fpga import build, check_fits
from ..hw.mac_array import MacArray
from .vectors import mac_tiles

TARGET_UTILIZATION = 0.95
FMAX_TARGETS = {"icebreaker": 60.0, "ulx3s-85f": 90.0}


def mac_throughput(cfg, tiles=256, seed=0) -> dict:
    dut = MacArray.from_config(cfg)
    K = cfg.d_k
    rng = np.random.default_rng(seed)
    tile_list, expected = mac_tiles(
        rng, dut.rows, dut.cols, dut.a_width, dut.b_width, tiles, (K, K), restart_p=0.0
    )
    a_beats = [b for t in tile_list for b in t.a_beats()]
    b_beats = [b for t in tile_list for b in t.b_beats()]
    state = {"cycle": 0, "first": None, "last_out": None, "mismatches": 0, "rows": 0}

    async def feed(ctx):
        n = 0
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.b.valid, 1)
        while n < len(a_beats):
            ctx.set(dut.a.payload, a_beats[n])
            ctx.set(dut.b.payload, b_beats[n])
            _, _, ready = await ctx.tick().sample(dut.a.ready)
            if ready:
                if state["first"] is None:
                    state["first"] = state["cycle"]
                n += 1
        ctx.set(dut.a.valid, 0)
        ctx.set(dut.b.valid, 0)

    async def drain(ctx):
        ctx.set(dut.c.ready, 1)
        while state["rows"] < len(expected):
            _, _, valid, p = await ctx.tick().sample(dut.c.valid, dut.c.payload)
            if valid:
                got = [int(p.data[c]) for c in range(dut.cols)]
                state["mismatches"] += int(got != [int(x) for x in expected[state["rows"]]])
                state["rows"] += 1
                state["last_out"] = state["cycle"]

    async def clock(ctx):
        async for _ in ctx.tick():
            state["cycle"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(clock, background=True)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    t0 = time.perf_counter()
    sim.run()
    cycles = state["last_out"] - state["first"] + 1
    macs = tiles * K * dut.rows * dut.cols
    return {
        "config": cfg.name,
        "array": f"{dut.rows}x{dut.cols}",
        "tiles": tiles,
        "k": K,
        "cycles": cycles,
        "beats": len(a_beats),
        "utilization": macs / (dut.rows * dut.cols * cycles),
        "mismatches": state["mismatches"],
        "sim_seconds": time.perf_counter() - t0,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m deltanet_hw.sim.bench_blocks", description=__doc__)
    ap.add_argument("-o", "--output", default="reports/blocks")
    ap.add_argument("--fpga", action="store_true", help="also run the FPGA builds (minutes)")
    ap.add_argument("--tiles", type=int, default=256)
    args = ap.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "python -m deltanet_hw.sim.bench_blocks " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "throughput": [],
        "fpga": [],
    }
    for name in ("tiny", "ice40", "small"):
        r = mac_throughput(preset(name), tiles=args.tiles)
        r["target"] = TARGET_UTILIZATION
        r["met"] = r["utilization"] >= TARGET_UTILIZATION and r["mismatches"] == 0
        record["throughput"].append(r)
        print(
            f"{name}: utilization {r['utilization']:.4f} over {r['cycles']} cycles, "
            f"{r['mismatches']} mismatches",
            file=sys.stderr,
            flush=True,
        )
    if args.fpga:
        for name, board in (("ice40", "icebreaker"), ("small", "ulx3s-85f")):
            cfg = preset(name)
            dut = MacArray.from_config(cfg)
            need = check_fits(dut.rows * dut.cols, dut.a_width, dut.b_width, board)
            r = build(dut, board, out / "build" / f"mac_array_{board}", expected_dsps=need)
            r.update(
                config=name,
                block="mac_array",
                target_fmax_mhz=FMAX_TARGETS[board],
                met=r["fmax_mhz"] >= FMAX_TARGETS[board],
            )
            record["fpga"].append(r)
            print(
                f"{board}: {r['fmax_mhz']:.1f} MHz, {r['resources']}", file=sys.stderr, flush=True
            )
    path = out / "mac_array.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
