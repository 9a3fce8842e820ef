"""Block benchmarks recorded in reports/blocks/: MAC array throughput and FPGA figures.

``python -m deltanet_hw.sim.bench_blocks throughput -o reports/blocks``
    Long products (256 tiles of K = d_k steps, random operands) through the MAC array of each
    preset on the Amaranth simulator with no stalls on either side; utilization = MACs done /
    (R x C x cycles from the first beat accepted to the last result row sent). Every result word
    is checked against the golden sums.
``python -m deltanet_hw.sim.bench_blocks fpga --block B --config C --board BOARD -o reports/blocks``
    One block alone on a board: resources and post-route Fmax from yosys/nextpnr JSON reports.
``python -m deltanet_hw.sim.bench_blocks summary -o reports/blocks``
    README.md from the JSON records in the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from ..config import load_config, preset
from ..hw.blocks import BLOCKS, make_block
from ..hw.fpga import BOARDS, check_fits, try_build
from ..hw.mac_array import MacArray
from .plots import tools_text
from .vectors import mac_tiles

TARGET_UTILIZATION = 0.95
FMAX_TARGETS = {("mac_array", "icebreaker"): 60.0, ("mac_array", "ulx3s-85f"): 90.0}


def _run_counted(dut, state, *testbenches):
    """Simulate ``dut`` with ``testbenches`` while ``state["cycle"]`` counts clock cycles."""

    async def clock(ctx):
        async for _ in ctx.tick():
            state["cycle"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(clock, background=True)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def run_unstalled(dut, tiles, expected) -> dict:
    """Feed ``tiles`` to a MAC array with valid always high and ready always high.

    Returns the cycles from the first beat accepted to the last result row, and the mismatches.
    """
    a_beats = [b for t in tiles for b in t.a_beats()]
    b_beats = [b for t in tiles for b in t.b_beats()]
    state = {
        "cycle": 0,
        "first": None,
        "last_out": None,
        "mismatches": 0,
        "rows": 0,
        "feed_cycles": 0,
    }

    async def feed(ctx):
        n = 0
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.b.valid, 1)
        while n < len(a_beats):
            ctx.set(dut.a.payload, a_beats[n])
            ctx.set(dut.b.payload, b_beats[n])
            _, _, ready = await ctx.tick().sample(dut.a.ready)
            state["feed_cycles"] += 1
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

    _run_counted(dut, state, feed, drain)
    return {
        "cycles": state["last_out"] - state["first"] + 1,
        "beats": len(a_beats),
        "feed_cycles": state["feed_cycles"],
        "mismatches": state["mismatches"],
    }


def mac_throughput(cfg, tiles=256, seed=0) -> dict:
    """Utilization of the config's MAC array on ``tiles`` products of K = d_k steps."""
    dut = MacArray.from_config(cfg)
    K = cfg.d_k
    rng = np.random.default_rng(seed)
    tile_list, expected = mac_tiles(
        rng, dut.rows, dut.cols, dut.a_width, dut.b_width, tiles, (K, K)
    )
    t0 = time.perf_counter()
    r = run_unstalled(dut, tile_list, expected)
    macs = tiles * K * dut.rows * dut.cols
    return {
        "config": cfg.name,
        "array": f"{dut.rows}x{dut.cols}",
        "tiles": tiles,
        "k": K,
        **r,
        "utilization": macs / (dut.rows * dut.cols * r["cycles"]),
        "sim_seconds": time.perf_counter() - t0,
    }


def beta_phi_throughput(cfg, tokens, seed=1) -> dict:
    """Words per cycle through BetaPhi with both streams always ready, every word checked."""
    from ..hw.beta_phi import BetaPhi
    from .amaranth_tb import stream_put
    from .vectors import beta_phi_vectors

    dut = BetaPhi(cfg)
    v = beta_phi_vectors(cfg, tokens, seed)
    st = {"cycle": 0, "first": None, "last": None, "n": 0, "mismatches": 0}

    async def produce(ctx):
        for w in v.conv_writes:
            await stream_put(ctx, dut.conv_wr, w)
        ctx.set(dut.i.valid, 1)
        n = 0
        while n < len(v.words):
            ctx.set(dut.i.payload, v.words[n])
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if ready:
                st["first"] = st["cycle"] if st["first"] is None else st["first"]
                n += 1
        ctx.set(dut.i.valid, 0)

    async def consume(ctx):
        ctx.set(dut.o.ready, 1)
        while st["n"] < len(v.expected):
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                st["mismatches"] += int(int(p.data) != v.expected[st["n"]][4])
                st["n"] += 1
                st["last"] = st["cycle"]

    _run_counted(dut, st, produce, consume)
    cycles = st["last"] - st["first"] + 1
    return {
        "config": cfg.name,
        "tokens": tokens,
        "words": len(v.words),
        "cycles": cycles,
        "words_per_cycle": len(v.words) / cycles,
        "mismatches": st["mismatches"],
    }


def _command(argv):
    return "python -m deltanet_hw.sim.bench_blocks " + " ".join(argv)


def cmd_throughput(args, argv):
    rows = []
    for name in ("tiny", "ice40", "small"):
        r = mac_throughput(preset(name), tiles=args.tiles)
        r["target"] = TARGET_UTILIZATION
        r["met"] = r["utilization"] >= TARGET_UTILIZATION and r["mismatches"] == 0
        rows.append(r)
        print(
            f"{name}: utilization {r['utilization']:.4f} over {r['cycles']} cycles, "
            f"{r['mismatches']} mismatches",
            file=sys.stderr,
            flush=True,
        )
    record = {"command": _command(argv), "date": time.strftime("%Y-%m-%d"), "results": rows}
    (args.output / "mac_array_throughput.json").write_text(json.dumps(record, indent=2) + "\n")
    bp = [
        beta_phi_throughput(preset(name), tokens) for name, tokens in (("tiny", 24), ("small", 6))
    ]
    record = {"command": _command(argv), "date": time.strftime("%Y-%m-%d"), "results": bp}
    (args.output / "beta_phi_throughput.json").write_text(json.dumps(record, indent=2) + "\n")
    for r in bp:
        print(
            f"beta_phi {r['config']}: {r['words_per_cycle']:.3f} words per cycle", file=sys.stderr
        )


def cmd_fpga(args, argv):
    cfg = load_config(args.config, args.set)
    tag = "".join(f"_{o.replace('=', '')}" for o in args.set)  # overrides name the record
    block = make_block(args.block, cfg)
    expected = None
    if args.block == "mac_array":
        expected = check_fits(block.rows * block.cols, block.a_width, block.b_width, args.board)
    build_dir = args.output / "build" / f"{args.block}_{args.board}{tag}"
    r = try_build(block, args.board, build_dir, expected_dsps=expected, router=args.router)
    # the targets are for the presets as they are: a record with overrides has none
    target = None if args.set else FMAX_TARGETS.get((args.block, args.board))
    met = None if target is None or r["fmax_mhz"] is None else r["fmax_mhz"] >= target
    r.update(
        block=args.block,
        config=args.config + "".join(f" {o}" for o in args.set),
        command=_command(argv),
        date=time.strftime("%Y-%m-%d"),
        target_fmax_mhz=target,
        met=met,
    )
    out = args.output / "fpga" / f"{args.block}_{args.board}{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(
        f"{args.block} on {args.board}: {r.get('error') or r['fmax_mhz']}, {r['resources']}",
        file=sys.stderr,
    )


def cmd_summary(args, argv):
    lines = [
        "# Hardware blocks (generated)",
        "",
        f"`{_command(argv)}` rebuilds this page from the JSON records here.",
        "",
    ]
    tp = args.output / "mac_array_throughput.json"
    if tp.exists():
        rec = json.loads(tp.read_text())
        lines += [
            "## MAC array sustained throughput (Amaranth simulation)",
            "",
            f"Command: `{rec['command']}` ({rec['date']}). Target: >= 95% of R x C MACs per "
            "cycle on long products.",
            "",
            "| config | array | tiles x K | cycles | utilization | mismatches | target |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['array']} | {r['tiles']} x {r['k']} | {r['cycles']} | "
            f"{100 * r['utilization']:.2f}% | {r['mismatches']} | "
            f"{'met' if r['met'] else 'missed'} |"
            for r in rec["results"]
        ]
        lines.append("")
    bp = args.output / "beta_phi_throughput.json"
    if bp.exists():
        rec = json.loads(bp.read_text())
        lines += [
            "## BetaPhi pipeline throughput (Amaranth simulation)",
            "",
            f"Command: `{rec['command']}`. Nominal: one word per cycle.",
            "",
            "| config | tokens | words | cycles | words per cycle | mismatches |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['config']} | {r['tokens']} | {r['words']} | {r['cycles']} | "
            f"{r['words_per_cycle']:.3f} | {r['mismatches']} |"
            for r in rec["results"]
        ]
        lines.append("")
    fpga = sorted((args.output / "fpga").glob("*.json")) if (args.output / "fpga").exists() else []
    records = [json.loads(path.read_text()) for path in fpga]
    tools = next((r["tools"] for r in records if "tools" in r), {})
    if fpga:
        lines += [
            "## FPGA builds, one block alone (yosys `stat -json`, nextpnr `--report`)",
            "",
            "| block | config | board | Fmax MHz (target) | logic | FFs | DSP | BRAM | build s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for path in fpga:
            r = json.loads(path.read_text())
            res = r["resources"]
            if r.get("error"):
                lines.append(
                    f"| {r['block']} | {r['config']} | {r['board']} | does not build: "
                    f"{r['error']} | | | | | |"
                )
                continue

            def cell(key, res=res):
                u = res.get(key)
                return f"{u['used']}/{u['available']}" if u else "-"

            logic = cell("logic_cells") if "logic_cells" in res else cell("luts")
            target = (
                f" ({r['target_fmax_mhz']:.0f}: {'met' if r['met'] else 'missed'})"
                if r.get("target_fmax_mhz")
                else ""
            )
            lines.append(
                f"| {r['block']} | {r['config']} | {r['board']} | "
                f"{r['fmax_mhz']:.1f}{target} | {logic} | {cell('flip_flops')} | "
                f"{cell('dsp')} | {cell('bram')} | {r['seconds']:.0f} |"
            )
        lines += [
            "",
            "Commands: each record's `command` field; tools: " + tools_text(tools),
            "",
        ]
    (args.output / "README.md").write_text("\n".join(lines))
    print(f"wrote {args.output / 'README.md'}", file=sys.stderr)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m deltanet_hw.sim.bench_blocks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--tiles", type=int, default=256)
    p.set_defaults(func=cmd_throughput)
    p = sub.add_parser("fpga")
    p.add_argument("--block", choices=sorted(BLOCKS), required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--board", choices=sorted(BOARDS), required=True)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (repeatable)",
    )
    p.add_argument(
        "--router",
        choices=("router1", "router2"),
        default=None,
        help="nextpnr router (default: nextpnr's, router1)",
    )
    p.set_defaults(func=cmd_fpga)
    p = sub.add_parser("summary")
    p.set_defaults(func=cmd_summary)
    for p in sub.choices.values():
        p.add_argument("-o", "--output", type=Path, default=Path("reports/blocks"))
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    args.func(args, argv)


if __name__ == "__main__":
    main()
