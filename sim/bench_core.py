"""Core benchmarks: RTL cycles, figures and simulation speed, recorded in reports/core/.

``python -m deltanet_hw.sim.bench_core run -o reports/core`` simulates the runs of
:data:`RUNS` (unstalled, so the cycle model's prediction is comparable), appends the simulation
speed of both simulators, and writes ``core_runs.json``; ``summary`` rebuilds README.md and the
plot from the JSON alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import load_config
from ..provenance import source_commit, versions
from .core_run import run_core, sequence
from .plots import footer, tools_text

__all__ = ["RUNS", "decode_bound", "main"]

# (config, simulator) -> sequences (mode, tokens, heads), run back to back on one build
RUNS = {
    ("tiny", "verilator"): (("chunk", 256, 2), ("recurrent", 32, 2)),
    ("small", "verilator"): (("chunk", 256, 4), ("recurrent", 16, 4)),
    ("ecp5", "verilator"): (("chunk", 256, 1), ("recurrent", 8, 1)),  # the ULX3S-85F build's
    ("tiny", "icarus"): (("chunk", 40, 2),),
    ("small", "icarus"): (("chunk", 32, 1),),
}
TARGET_UTILIZATION = 0.80  # small, chunkwise prefill, T >= 256, 4 heads


def decode_bound(cfg) -> float:
    """Efficiency limit of recurrent decode on this design, set by the state's bandwidth.

    Per token and head the state is read twice (V' = v - S^T k, o = S^T q) and written once, one
    row segment of C words per cycle (one array column each), and only one of the R array rows
    has work: 3 K V / C cycles for 3 K V MACs, i.e. 1 / R of the array's peak.
    """
    return 1 / cfg.array_rows


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _versions() -> dict:
    out = versions("amaranth", "cocotb", "verilator")
    if shutil.which("iverilog"):
        out["icarus"] = subprocess.run(
            ["iverilog", "-V"], capture_output=True, text=True
        ).stdout.splitlines()[0]
    return out


def cmd_run(args, argv):
    commit = source_commit()  # of the source simulated, not when the runs end
    records = []
    for (name, simulator), runs in RUNS.items():
        if args.only and name not in args.only:
            continue
        cfg = load_config(name)
        _log(f"[bench_core] {name} on {simulator}: {runs} ...")
        t0 = time.perf_counter()
        seqs = [sequence(t, heads=h, seed=7, mode=mode) for mode, t, h in runs]
        with tempfile.TemporaryDirectory(prefix="dnhw-bench-") as tmp:
            recs = run_core(
                cfg, seqs, simulator=simulator, build_dir=tmp, stall_p=0.0, optimize=True
            )
        for rec in recs:
            rec["config"] = name
            rec["decode_bound"] = decode_bound(cfg) if rec["mode"] == "recurrent" else None
            _log(
                f"[bench_core]   {rec['mode']} T={rec['tokens']}: {rec['cycles']} cycles "
                f"(model {rec['predicted_cycles']}), utilization {rec['utilization']:.1%}, "
                f"{rec['mismatches']} mismatches"
            )
        _log(f"[bench_core]   {time.perf_counter() - t0:.0f} s (Verilog, build, simulation)")
        records += recs
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "python -m deltanet_hw.sim.bench_core " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "tools": _versions(),
        "source_commit": commit,
        "runs": records,
    }
    (out / "core_runs.json").write_text(json.dumps(record, indent=1) + "\n")
    summary(out)


def _plot(runs, path, command, tools):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in runs if r["simulator"] == "verilator"]
    fig, ax = plt.subplots(figsize=(8, 4))
    # the array's instructions share its cycles (stacked); the solver runs beside it (own bar)
    ops = sorted({k for r in shown for k, v in r["op_cycles"].items() if v and k != "T"})
    colors = plt.get_cmap("tab20").colors
    x = list(range(len(shown)))
    bottom = [0.0] * len(shown)
    for n, op in enumerate(ops):
        vals = [r["op_cycles"].get(op, 0) / r["cycles"] for r in shown]
        ax.bar([i - 0.15 for i in x], vals, 0.5, bottom=bottom, label=op, color=colors[n % 20])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    solver = [r["op_cycles"].get("T", 0) / r["cycles"] for r in shown]
    ax.bar([i + 0.25 for i in x], solver, 0.2, color="grey", hatch="//", label="T (solver)")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['config']}\n{r['mode']} T={r['tokens']}" for r in shown])
    ax.set_ylabel("share of the run's cycles")
    ax.set_title("Cycles per instruction (RTL counters, Verilator): array stacked, solver beside")
    ax.legend(fontsize=7, ncol=2)
    footer(fig, command, tools)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(out: Path):
    record = json.loads((out / "core_runs.json").read_text())
    runs = record["runs"]
    _plot(runs, out / "cycles_by_op.png", record["command"], record["tools"])
    lines = [
        "# The whole core in RTL (generated)",
        "",
        f"Command: `{record['command']}` ({record['date']}, {record['machine']}); "
        "`python -m deltanet_hw.sim.bench_core summary` (or `deltanet-hw report`) rebuilds "
        "this page from `core_runs.json`. Tools: " + tools_text(record["tools"]) + ".",
        "",
        "Every run compares every output word and the final state with the fixed-point model "
        "(`mismatches`). Cycles are RTL counts from the first input accepted to the last output "
        "sent, without stalls; `model` is the cycle model's prediction (sim/cycle_model.py). "
        "Utilization = minimal MACs (ALGORITHM.md section 6) / (R x C x cycles); efficiency = "
        "3 K V x tokens x heads / (R x C x cycles); `with solver` counts the solver's C "
        "multipliers too (R x C + C). Simulation speed: simulated clock cycles per wall second "
        "of the whole cocotb test (set-up and state read-back included; Python drives every "
        "stream beat).",
        "",
        "| config | mode | T | heads | simulator | mismatches | cycles | model | model error "
        "| utilization | with solver | efficiency | tokens/cycle | sim cycles/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        err = (r["predicted_cycles"] - r["cycles"]) / r["cycles"]
        lines.append(
            f"| {r['config']} | {r['mode']} | {r['tokens']} | {r['heads']} | {r['simulator']} "
            f"| {r['mismatches']} | {r['cycles']} | {r['predicted_cycles']} | {err:+.2%} "
            f"| {r['utilization']:.1%} | {r['utilization_with_solver']:.1%} "
            f"| {r['efficiency']:.1%} | {r['tokens_per_cycle']:.4f} "
            f"| {r['sim_cycles_per_s']:.0f} |"
        )
    small = [
        r
        for r in runs
        if r["config"] == "small"
        and r["mode"] == "chunk"
        and r["tokens"] >= 256
        and r["heads"] == 4
    ]
    lines += ["", "## Targets", ""]
    for r in small:
        met = "met" if r["utilization"] >= TARGET_UTILIZATION else "MISSED"
        lines.append(
            f"- `small` chunkwise prefill, T = {r['tokens']}, 4 heads: utilization "
            f"{r['utilization']:.1%} (target >= {TARGET_UTILIZATION:.0%}): **{met}**."
        )
    for r in runs:
        if r["mode"] == "recurrent":
            lines.append(
                f"- `{r['config']}` recurrent decode: efficiency {r['efficiency']:.1%}; the "
                f"state-bandwidth limit of this edge-fed design is 1/R = {r['decode_bound']:.1%} "
                "(the state is read twice and written once per token, one row segment per "
                "cycle, one array row busy)."
            )
    lines += [
        "",
        "## Cycles per instruction",
        "",
        "![cycles per instruction](cycles_by_op.png)",
        "",
        "| config | mode | " + " | ".join(["instruction: RTL cycles (model)"]) + " |",
        "|---|---|---|",
    ]
    for r in runs:
        if r["simulator"] != "verilator":
            continue
        cells = ", ".join(
            f"{k} {v} ({r['predicted_op_cycles'].get(k.removeprefix('dec_'), '-')})"
            for k, v in r["op_cycles"].items()
            if v
        )
        lines.append(f"| {r['config']} | {r['mode']} | {cells} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m deltanet_hw.sim.bench_core", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="simulate the benchmark runs and write the records")
    p_run.add_argument("-o", "--output", default="reports/core")
    p_run.add_argument("--only", action="append", help="only this config (repeatable)")
    p_run.set_defaults(func=lambda a: cmd_run(a, argv))
    p_sum = sub.add_parser("summary", help="rebuild README.md and the plot from the JSON")
    p_sum.add_argument("-o", "--output", default="reports/core")
    p_sum.set_defaults(func=lambda a: summary(Path(a.output)))
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
