"""Command line: ``deltanet-hw SUBCOMMAND ...`` (also ``python -m deltanet_hw``).

Every subcommand prints human-readable text, or one JSON object with ``--json``. Errors exit with
status 2 and one readable line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from .config import PRESETS, load_config

__all__ = ["main"]


class CliError(Exception):
    """An error to report as one line and a non-zero exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise CliError(f"{self.prog}: {message}")


def _add_config_args(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    help_ = f"preset ({', '.join(PRESETS)}) or a config FILE.json"
    if positional:
        p.add_argument("config", metavar="NAME", help=help_)
    else:
        p.add_argument("--config", required=True, metavar="NAME", help=help_)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set d_k=32",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def _cmd_config_show(args) -> dict | str:
    cfg = load_config(args.config, args.set)
    if args.json:
        return cfg.to_dict()
    lines = [f"{k:14} {v}" for k, v in cfg.to_dict().items() if k != "schema"]
    lines.append(f"{'query_scale':14} {cfg.query_scale:.6g}  (derived)")
    lines.append(f"{'multipliers':14} {cfg.multipliers}  (derived)")
    return "\n".join(lines)


def _cmd_config_list(args) -> dict | str:
    rows = {name: cfg.to_dict() for name, cfg in PRESETS.items()}
    if args.json:
        return rows
    return "\n".join(
        f"{n:6} d_k={c.d_k} d_v={c.d_v} chunk={c.chunk_size} heads={c.heads} "
        f"array={c.array_rows}x{c.array_cols}"
        for n, c in PRESETS.items()
    )


def _cmd_golden(args) -> dict | str:
    from .golden.layer import core_options, delta_core
    from .golden.vectors import random_inputs, rel_rms

    cfg = load_config(args.config, args.set)
    heads = args.heads or cfg.heads
    inputs = random_inputs(cfg, args.tokens, heads=heads, seed=args.seed)
    options = dict(core_options(cfg), output_final_state=True)
    result = {
        "config": cfg.name,
        "tokens": args.tokens,
        "heads": heads,
        "seed": args.seed,
        "chunk_size": cfg.chunk_size,
        "gated": cfg.gated,
    }
    t0 = time.perf_counter()
    o_rec, s_rec = delta_core(**inputs, **options, mode="recurrent")
    t1 = time.perf_counter()
    o_chk, s_chk = delta_core(**inputs, **options, mode="chunk")
    t2 = time.perf_counter()
    if args.fixed:
        from .golden.fixed import fixed_delta_rule

        fx = fixed_delta_rule(**inputs, cfg=cfg, mode=args.mode)
        t3 = time.perf_counter()
        result |= {
            "mode": args.mode,
            "rel_rms_o": rel_rms(fx.o, o_rec),
            "rel_rms_state": rel_rms(fx.final_state, s_rec[:, :, :, :]),
            "saturations": fx.total_saturations,
            "saturations_by_stage": fx.saturations,
            "seconds_fixed": t3 - t2,
            "tokens_per_s_fixed": args.tokens / (t3 - t2),
        }
    else:
        result |= {
            "rel_rms_o_chunk_vs_recurrent": rel_rms(o_chk, o_rec),
            "rel_rms_state_chunk_vs_recurrent": rel_rms(s_chk, s_rec),
            "seconds_recurrent": t1 - t0,
            "seconds_chunk": t2 - t1,
            "tokens_per_s_recurrent": args.tokens / (t1 - t0),
            "tokens_per_s_chunk": args.tokens / (t2 - t1),
        }
    if args.json:
        return result
    return "\n".join(
        f"{k:34} {v:.4g}" if isinstance(v, float) else f"{k:34} {v}" for k, v in result.items()
    )


def _cmd_verilog(args) -> dict | str:
    from pathlib import Path

    from .hw.blocks import make_block
    from .sim.runner import write_verilog

    cfg = load_config(args.config, args.set)
    out = Path(args.output)
    if out.suffix != ".v":
        raise CliError(f"deltanet-hw verilog: the output must be a .v file, not {args.output!r}")
    block = make_block(args.block, cfg)
    module = "deltanet_core" if args.block == "core" else args.block
    write_verilog(block, module, out, cfg)
    result = {
        "block": args.block,
        "config": cfg.name,
        "verilog": str(out),
        "config_json": str(out.with_suffix(".json")),
        "lines": out.read_text().count("\n"),
    }
    if args.json:
        return result
    return f"wrote {out} ({result['lines']} lines, module {module}) and {out.with_suffix('.json')}"


def _cmd_sim(args) -> dict | str:
    import tempfile
    from pathlib import Path

    from .sim.core_run import run_core, sequence
    from .sim.runner import available_simulators

    cfg = load_config(args.config, args.set)
    heads = cfg.heads if args.heads is None else args.heads
    if not 0 <= args.stall < 1:
        raise CliError(f"deltanet-hw sim: --stall must be in [0, 1), not {args.stall}")
    if args.simulator not in available_simulators():
        raise CliError(f"deltanet-hw sim: simulator {args.simulator!r} is not installed")
    seq = sequence(args.tokens, heads=heads, seed=args.seed, mode=args.mode)
    build = Path(args.build_dir) if args.build_dir else Path(tempfile.mkdtemp(prefix="dnhw-sim-"))
    try:
        rec = run_core(
            cfg,
            [seq],
            simulator=args.simulator,
            build_dir=build,
            stall_p=args.stall,
            waves=args.waves,
        )[0]
    except AssertionError as exc:  # the testbench failed: mismatches or a stuck handshake
        raise CliError(f"deltanet-hw sim: {str(exc).splitlines()[0]}") from None
    keys = (
        "mismatches",
        "cycles",
        "predicted_cycles",
        "utilization",
        "efficiency",
        "tokens_per_cycle",
        "tokens",
        "heads",
        "mode",
        "simulator",
        "stall_p",
        "sim_cycles_per_s",
    )
    result = {"config": cfg.name, **{k: rec[k] for k in keys}, "op_cycles": rec["op_cycles"]}
    if args.waves:
        result["waves_dir"] = str(build / args.simulator)
    if args.json:
        return result
    return "\n".join(
        f"{k:18} {v:.4g}" if isinstance(v, float) else f"{k:18} {v}" for k, v in result.items()
    )


def _csv(kind):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad value in {text!r}") from None

    return parse


def _array_shape(text: str) -> str:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"an array shape is ROWSxCOLS, e.g. 8x8, not {text!r}")
    return f"{int(parts[0])}x{int(parts[1])}"


def _cmd_sweep(args) -> dict | str:
    from .sim.sweep import make_points, sweep

    base = load_config(args.config, args.set)
    passes = args.state_passes or [base.state_passes]
    points = make_points(args.array, args.chunk, args.dim, args.data_bits, passes)
    records = sweep(
        base,
        points,
        tokens=args.tokens,
        heads=args.heads,
        mode=args.mode,
        fmax_mhz=args.fmax_mhz,
        rtl=args.rtl,
        fpga=args.fpga,
        time_limit=args.time_limit,
        scheduler=args.scheduler,
        workers=args.workers,
        output=args.output,
        command="deltanet-hw " + " ".join(args.argv),
    )
    failed = [r for r in records if "error" in r]
    front = sorted(
        (r for r in records if r.get("pareto")), key=lambda r: (r["d"], r["hard_multipliers"])
    )
    result = {
        "points": len(records),
        "failed": len(failed),
        "pareto": [
            {
                k: r[k]
                for k in (
                    "array",
                    "chunk_size",
                    "d",
                    "data_bits",
                    "state_passes",
                    "multipliers",
                    "hard_multipliers",
                    "tokens_per_s",
                    "utilization",
                )
            }
            for r in front
        ],
        "output": args.output,
    }
    if args.json:
        return result
    lines = [
        f"{len(records)} points ({len(failed)} failed) -> {args.output}/sweep.json, "
        "sweep.csv, pareto.png, README.md",
        "Pareto front per head dimension (18x18 hard multipliers, tokens/s):",
    ]
    lines += [
        f"  {p['array']} C={p['chunk_size']} d={p['d']} b={p['data_bits']} "
        f"p={p['state_passes']}: {p['hard_multipliers']} mults, {p['tokens_per_s']:.4g} tokens/s"
        for p in result["pareto"]
    ]
    return "\n".join(lines)


def _cmd_synth(args) -> dict | str:
    from pathlib import Path

    from .hw.fpga import PROBE_FMAX_MHZ, path_text, try_build_core

    cfg = load_config(args.config, args.set)
    tag = "".join(f"_{o.replace('=', '')}" for o in args.set)  # overrides name the record
    name = f"core_{cfg.name}{tag}_{args.board}"
    out = Path(args.output)
    build_dir = Path(args.build_dir) if args.build_dir else out / "build" / name
    print(
        f"deltanet-hw synth: building {cfg.name} for {args.board} in {build_dir} "
        "(yosys + nextpnr; minutes)",
        file=sys.stderr,
        flush=True,
    )
    rec = try_build_core(
        cfg,
        args.board,
        build_dir,
        router=args.router,
        placer=args.placer,
        breakdown=args.breakdown,
        place_only=args.no_route,
        time_limit=args.time_limit,
        clock_mhz=args.clock_mhz,
        progress=lambda msg: print(f"deltanet-hw synth: {msg}", file=sys.stderr, flush=True),
    )
    probe = PROBE_FMAX_MHZ[args.board]
    rec.update(
        config=cfg.name,
        overrides=list(args.set),
        command="deltanet-hw " + " ".join(args.argv),
        date=time.strftime("%Y-%m-%d"),
        probe_fmax_mhz=list(probe),
        fmax_over_probe=None if rec["fmax_mhz"] is None else [rec["fmax_mhz"] / p for p in probe],
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rec, indent=2) + "\n")
    if rec.get("error"):
        over = ", ".join(
            f"{k} {v['used']}/{v['available']}"
            for k, v in rec["resources"].items()
            if v["used"] > v["available"]
        )
        what = "was not built" if rec["stage"] == "stopped" else "does not build"
        raise CliError(
            f"deltanet-hw synth: {cfg.name} {what} for {args.board}"
            + (f" (over: {over})" if over else "")
            + f": {rec['error']} (record: {out / (name + '.json')})"
        )
    result = {
        "board": args.board,
        "config": cfg.name,
        "stage": rec["stage"],
        "fmax_mhz": rec["fmax_mhz"],
        "fmax_placed_mhz": rec["fmax_placed_mhz"],
        "fmax_over_probe": rec["fmax_over_probe"],
        "resources": rec["resources"],
        "critical_path": rec.get("critical_path"),
        "bitstream": rec["bitstream"],
        "record": str(out / f"{name}.json"),
    }
    if args.json:
        return result
    if result["critical_path"]:
        result["critical_path"] = path_text(result["critical_path"])
    return "\n".join(f"{k:16} {v}" for k, v in result.items())


def _cmd_report(args) -> dict | str:
    from .sim.report import report

    index = report(args.output, args.anchors)
    return {"index": str(index)} if args.json else f"wrote {index}"


def build_parser() -> argparse.ArgumentParser:
    from .hw.fpga import BOARDS as FPGA_BOARDS
    from .hw.fpga import PLACERS as FPGA_PLACERS

    parser = _Parser(
        prog="deltanet-hw",
        description="Design, verify and measure hardware for DeltaNet (delta-rule linear "
        "attention). Every subcommand takes --json for one JSON object; errors exit with status "
        "2 and one line on stderr.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_config = sub.add_parser("config", help="show core configurations")
    config_sub = p_config.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p_show = config_sub.add_parser("show", help="print one configuration (preset or file)")
    _add_config_args(p_show, positional=True)
    p_show.add_argument("--json", action="store_true", help="print the config as JSON")
    p_show.set_defaults(func=_cmd_config_show)
    p_list = config_sub.add_parser("list", help="list the presets")
    p_list.add_argument("--json", action="store_true", help="print one JSON object")
    p_list.set_defaults(func=_cmd_config_list)

    p_golden = sub.add_parser(
        "golden",
        help="run random inputs through the golden models and compare them",
        description="Run random valid core inputs (projections ~ N(0,1), convolution weights, "
        "gates when gated) through the float64 core in recurrent and chunkwise form and print "
        "their relative RMS difference and speed; with --fixed, through the bit-exact "
        "fixed-point model, printing its relative RMS error against float64 (rel_rms_o, "
        "rel_rms_state) and its saturation counts.",
    )
    _add_config_args(p_golden)
    p_golden.add_argument("--tokens", type=_positive, default=1000, help="sequence length T")
    p_golden.add_argument(
        "--heads", type=_positive, default=None, help="number of heads (default: the config's)"
    )
    p_golden.add_argument("--seed", type=int, default=0, help="random seed")
    p_golden.add_argument(
        "--fixed", action="store_true", help="run the fixed-point model and compare it with float64"
    )
    p_golden.add_argument(
        "--mode",
        choices=("chunk", "recurrent"),
        default="chunk",
        help="fixed-point form: chunk program (prefill) or decode (default chunk)",
    )
    p_golden.add_argument("--json", action="store_true", help="print one JSON object")
    p_golden.set_defaults(func=_cmd_golden)

    from .hw.blocks import BLOCKS

    p_verilog = sub.add_parser(
        "verilog",
        help="write the Verilog of a block for a config",
        description="Write Verilog for one hardware block sized by a config, "
        "and the config JSON beside it (FILE.json).",
    )
    _add_config_args(p_verilog)
    p_verilog.add_argument(
        "--block",
        choices=sorted(BLOCKS),
        default="core",
        help="which block (default: core, the whole DeltaNet core with its documented ports)",
    )
    p_verilog.add_argument("-o", "--output", required=True, metavar="FILE.v", help="output file")
    p_verilog.add_argument("--json", action="store_true", help="print one JSON object")
    p_verilog.set_defaults(func=_cmd_verilog)

    p_sim = sub.add_parser(
        "sim",
        help="simulate the core's RTL against the fixed-point model",
        description="Generate the core's Verilog, run random tokens through it on a cocotb "
        "simulator with random stalls on the streams, and compare every output word and the "
        "final state with the fixed-point model. Prints mismatches, RTL cycles (first input "
        "accepted to last output sent), the cycle model's prediction, utilization, efficiency "
        "(ARCHITECTURE.md section 4), tokens, heads. Exits 2 on any mismatch.",
    )
    _add_config_args(p_sim)
    p_sim.add_argument("--tokens", type=_positive, default=64, help="sequence length T (64)")
    p_sim.add_argument(
        "--heads", type=_positive, default=None, help="heads of the run (default: the config's)"
    )
    p_sim.add_argument("--mode", choices=("chunk", "recurrent"), default="chunk")
    p_sim.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    p_sim.add_argument("--seed", type=int, default=0, help="random seed (inputs and stalls)")
    p_sim.add_argument(
        "--stall", type=float, default=0.0, help="probability of a stall per beat (default 0)"
    )
    p_sim.add_argument("--waves", action="store_true", help="dump FST waves in the build dir")
    p_sim.add_argument("--build-dir", default=None, help="build directory (default: a temp dir)")
    p_sim.add_argument("--json", action="store_true", help="print one JSON object")
    p_sim.set_defaults(func=_cmd_sim)

    p_sweep = sub.add_parser(
        "sweep",
        help="sweep array sizes, chunk sizes, head dims and widths (cycle model, Dask)",
        description="Evaluate every combination of --array, --chunk, --dim (d_k = d_v), "
        "--data-bits and --state-passes on top of a base config: the cycle model predicts "
        "each run (fast); with --rtl each point is also simulated in RTL against the "
        "fixed-point model. Points run in parallel on Dask (a local cluster of --workers "
        "processes, or --scheduler ADDRESS). A failing point is recorded with its error. "
        "Writes sweep.json, sweep.csv, pareto.png (tokens/s at --fmax-mhz against the 18x18 "
        "hard multipliers of the MAC array and the solver row, a Pareto front per head "
        "dimension) and README.md to --output.",
    )
    _add_config_args(p_sweep)
    p_sweep.add_argument(
        "--array",
        type=_csv(_array_shape),
        default=["4x4", "8x8"],
        help="array shapes, e.g. 4x4,8x8 (default)",
    )
    p_sweep.add_argument(
        "--chunk", type=_csv(int), default=[16, 32, 64], help="chunk sizes (default 16,32,64)"
    )
    p_sweep.add_argument(
        "--dim",
        type=_csv(int),
        default=[64, 128],
        help="head dimensions d_k = d_v (default 64,128)",
    )
    p_sweep.add_argument(
        "--data-bits", type=_csv(int), default=[16, 18], help="data word widths (default 16,18)"
    )
    p_sweep.add_argument(
        "--state-passes",
        type=_csv(int),
        default=None,
        help="state_passes values, e.g. 1,2 (default: the config's)",
    )
    p_sweep.add_argument("--tokens", type=_positive, default=256, help="sequence length (256)")
    p_sweep.add_argument("--heads", type=_positive, default=None, help="heads (the config's)")
    p_sweep.add_argument("--mode", choices=("chunk", "recurrent"), default="chunk")
    p_sweep.add_argument(
        "--fmax-mhz",
        type=_positive_float,
        default=100.0,
        help="clock for tokens/s (default 100 MHz)",
    )
    p_sweep.add_argument(
        "--rtl",
        choices=("icarus", "verilator"),
        default=None,
        help="also simulate every point's RTL (slow)",
    )
    p_sweep.add_argument(
        "--fpga",
        metavar="BOARD",
        choices=sorted(FPGA_BOARDS),
        default=None,
        help="also build every point's core for BOARD (resources, Fmax; minutes to hours each)",
    )
    p_sweep.add_argument(
        "--time-limit",
        type=_positive_float,
        default=None,
        metavar="MINUTES",
        help="with --fpga: stop each build after this many minutes (recorded as its error)",
    )
    p_sweep.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    p_sweep.add_argument(
        "--workers", type=_positive, default=2, help="local cluster worker processes (default 2)"
    )
    p_sweep.add_argument("-o", "--output", default="reports/sweep", help="output directory")
    p_sweep.add_argument("--json", action="store_true", help="print one JSON object")
    p_sweep.set_defaults(func=_cmd_sweep)

    p_synth = sub.add_parser(
        "synth",
        help="build the whole core for an FPGA board (bitstream, resources, Fmax)",
        description="Synthesise, place and route the core of a config for a board with the "
        "YoWASP yosys/nextpnr tools (do_program off), inside a small top that drives every "
        "input from an LFSR and folds every output onto an LED so nothing is optimised away. "
        "Writes the bitstream and a JSON record (resources used/available and Fmax from yosys "
        "`stat -json` and nextpnr `--report`, the ratio to the board's bare multiplier-array "
        "probe) to --output. A design that does not fit exits 2 naming the resources over.",
    )
    _add_config_args(p_synth)
    p_synth.add_argument("--board", required=True, choices=sorted(FPGA_BOARDS))
    p_synth.add_argument(
        "--router",
        choices=("router1", "router2"),
        default=None,
        help="nextpnr router (default: nextpnr's)",
    )
    p_synth.add_argument(
        "--placer",
        choices=FPGA_PLACERS,
        default=None,
        help="nextpnr placer (default: nextpnr's, heap; static spreads a large core over the "
        "whole die)",
    )
    p_synth.add_argument(
        "--no-route",
        action="store_true",
        help="stop after placement: proves the core fits and places, no bitstream (routing a "
        "large core takes hours); the record's fmax_placed_mhz is nextpnr's pre-route estimate",
    )
    p_synth.add_argument(
        "--time-limit",
        type=_positive_float,
        default=None,
        metavar="MINUTES",
        help="stop the tools after this many minutes; the record says where they were (e.g. "
        "the router's iteration and overused wires) and what the placement used",
    )
    p_synth.add_argument(
        "--clock-mhz",
        type=_positive_float,
        default=None,
        metavar="MHZ",
        help="clock constraint for nextpnr (default: the board's oscillator, 12 MHz on the "
        "iCEBreaker, 25 on the ULX3S, 48 on the OrangeCrab): what nextpnr reports PASS or FAIL "
        "against (measured here, it changed no placement or route); the Fmax reached is "
        "recorded even when it is missed; the bitstream still runs from the oscillator (no PLL)",
    )
    p_synth.add_argument(
        "--breakdown",
        action="store_true",
        help="also record resources per block (a second yosys run without flattening)",
    )
    p_synth.add_argument("-o", "--output", default="reports/fpga", help="record directory")
    p_synth.add_argument("--build-dir", default=None, help="build directory")
    p_synth.add_argument("--json", action="store_true", help="print one JSON object")
    p_synth.set_defaults(func=_cmd_synth)

    p_report = sub.add_parser(
        "report",
        help="rebuild reports/ (pages, plots, index) from its JSON records",
        description="Regenerate every page of the reports folder and its index (tables and PNG "
        "plots: utilization and efficiency, cycles per instruction, FPGA resources and Fmax, "
        "fixed-point error against width, the anchors) from the JSON records in it alone.",
    )
    p_report.add_argument("-o", "--output", default="reports", help="the reports folder")
    p_report.add_argument(
        "--anchors",
        default=None,
        metavar="DIR",
        help="refresh reports/anchors/ from this folder (e.g. ../shared/anchors)",
    )
    p_report.add_argument("--json", action="store_true", help="print one JSON object")
    p_report.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        result = args.func(args)
    except (CliError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        prefix = "" if isinstance(exc, CliError) else "deltanet-hw: error: "
        print(f"{prefix}{msg}", file=sys.stderr)
        return 2
    print(json.dumps(result) if isinstance(result, dict) else result)
    return 0
