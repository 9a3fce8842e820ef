"""Design-space sweeps on Dask: the cycle model for every point, RTL simulation on request.

A point is a config: the base preset with an array shape, a chunk size, a head dimension (d_k =
d_v), a data width (``default_formats(data_bits, io_bits, state_bits)``, the accumulator sized to
the exact sums it needs) and ``state_passes``. For each point the cycle model predicts a run
(fast); with ``rtl`` the core's RTL is simulated on the same run and compared with the fixed-point
model; with ``fpga`` (a board) the core is built for it (``hw.fpga.try_build``): resources, post-
route Fmax and tokens/s at that Fmax, or the build's error (a point that does not fit keeps its
cycle-model figures and the resources nextpnr counted). Points run in parallel on
``dask.distributed``: a local cluster by default, or an existing scheduler by address. A point that
fails (an invalid config, a simulation mismatch) is recorded with its error; the sweep goes on.

Outputs: ``sweep.json`` and ``sweep.csv`` (one row per point) and ``pareto.png``: tokens per
second (at ``fmax_mhz``) against the hard multipliers of the point (18 x 18, the array's and the
solver row's: ``hw.scheduler.hard_multipliers``; ``multipliers`` records the products, R x C +
C), one Pareto front per head dimension (points of different d do different work), and with
``fpga`` a second panel against the LUTs (logic cells on iCE40) of the builds.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from ..provenance import source_commit, versions
from .plots import footer, tools_text

__all__ = ["fronts_by_dim", "make_points", "pareto", "run_point", "sweep", "write_pages"]

FIELDS = (
    "array",
    "chunk_size",
    "d",
    "data_bits",
    "state_passes",
    "error",
    "multipliers",
    "hard_multipliers",
    "predicted_cycles",
    "utilization",
    "efficiency",
    "tokens_per_cycle",
    "tokens_per_s",
    "rtl_cycles",
    "rtl_mismatches",
    "board",
    "luts",
    "dsps",
    "brams",
    "fmax_mhz",
    "tokens_per_s_at_fmax",
    "fpga_error",
    "seconds",
)


def make_points(arrays, chunks, dims, data_bits, state_passes=(1,)) -> list[dict]:
    """Every combination, as plain dicts (what travels to the Dask workers)."""
    return [
        {"array": a, "chunk_size": c, "d": d, "data_bits": b, "state_passes": p}
        for a, c, d, b, p in itertools.product(arrays, chunks, dims, data_bits, state_passes)
    ]


def point_config(base, point):
    """The config of a point (``ValueError`` names the field when the point is invalid)."""
    from ..config import default_formats
    from ..golden.program import accumulator_bits, chunk_program

    rows, cols = (int(x) for x in point["array"].split("x"))
    fmts = default_formats(point["data_bits"], base.fmt_o.width, base.fmt_state.width)
    cfg = replace(
        base,
        name=f"{base.name}-{point['array']}-C{point['chunk_size']}-d{point['d']}"
        f"-b{point['data_bits']}-p{point['state_passes']}",
        array_rows=rows,
        array_cols=cols,
        chunk_size=point["chunk_size"],
        d_k=point["d"],
        d_v=point["d"],
        acc_bits=62,
        state_passes=point["state_passes"],
        **fmts,
    )
    need = max(
        max(accumulator_bits(p, cfg).values())
        for p in (chunk_program(cfg.chunk_size, cfg.gated), chunk_program(1, cfg.gated, True))
    )
    return replace(cfg, acc_bits=need)


def run_point(
    base_json: str,
    point: dict,
    tokens: int,
    heads: int,
    mode: str,
    fmax_mhz: float,
    rtl: str | None,
    build_root: str | None,
    fpga: str | None = None,
    time_limit: float | None = None,
) -> dict:
    """Evaluate one point (runs on a Dask worker); errors are returned, not raised."""
    from ..config import CoreConfig
    from ..hw.microcode import check_core_config
    from ..hw.scheduler import hard_multipliers
    from .cycle_model import figures, predict_run

    t0 = time.perf_counter()
    rec = dict(point)
    try:
        cfg = point_config(CoreConfig.from_json(base_json), point)
        check_core_config(cfg)
        cycles = predict_run(cfg, tokens, heads, mode)["cycles"]
        fig = figures(cfg, tokens, heads, cycles, mode)
        rec.update(
            predicted_cycles=cycles,
            utilization=fig["utilization"],
            efficiency=fig["efficiency"],
            tokens_per_cycle=fig["tokens_per_cycle"],
            tokens_per_s=fig["tokens_per_cycle"] * fmax_mhz * 1e6,
            multipliers=fig["multipliers"] + cfg.array_cols,  # the array and the solver row
            hard_multipliers=hard_multipliers(cfg),
        )
        if rtl:
            from .core_run import run_core, sequence

            out = Path(build_root) / cfg.name
            run = run_core(
                cfg,
                [sequence(tokens, heads=heads, seed=1, mode=mode)],
                simulator=rtl,
                build_dir=out,
                stall_p=0.0,
            )[0]
            rec.update(rtl_cycles=run["cycles"], rtl_mismatches=run["mismatches"])
        if fpga:
            rec.update(
                _build_point(cfg, fpga, Path(build_root), rec["tokens_per_cycle"], time_limit)
            )
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        rec["error"] = f"{type(exc).__name__}: {msg}"
        rec["traceback"] = traceback.format_exc(limit=3)
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _build_point(cfg, board: str, build_root: Path, tokens_per_cycle: float, time_limit) -> dict:
    """The core of ``cfg`` built for ``board``: resources, Fmax, tokens/s at that Fmax."""
    from ..hw.fpga import try_build_core

    b = try_build_core(cfg, board, build_root / f"{cfg.name}_{board}", time_limit=time_limit)
    res = b["resources"]
    used = {k: v["used"] for k, v in res.items()}
    out = {
        "board": board,
        "luts": used.get("luts", used.get("logic_cells")),
        "dsps": used.get("dsp"),
        "brams": used.get("bram"),
        "fmax_mhz": b["fmax_mhz"],
        "fpga_error": b.get("error"),
    }
    if b["fmax_mhz"]:
        out["tokens_per_s_at_fmax"] = tokens_per_cycle * b["fmax_mhz"] * 1e6
    return out


def pareto(records, x="hard_multipliers", y="tokens_per_s") -> list[dict]:
    """Points no other point beats on both fewer ``x`` and more ``y``."""
    ok = sorted((r for r in records if "error" not in r), key=lambda r: (r[x], -r[y]))
    front, best = [], -1.0
    for r in ok:
        if r[y] > best:
            front.append(r)
            best = r[y]
    return front


def sweep(
    base,
    points,
    *,
    tokens=256,
    heads=None,
    mode="chunk",
    fmax_mhz=100.0,
    rtl=None,
    fpga=None,
    time_limit=None,
    scheduler=None,
    workers=2,
    output="reports/sweep",
    build_root=None,
    log=None,
    command=None,
) -> list[dict]:
    """Run every point on Dask; write JSON, CSV and the Pareto plot to ``output``."""
    from dask.distributed import Client, LocalCluster, as_completed

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    commit = source_commit()  # of the source evaluated, not when the sweep ends
    heads = base.heads if heads is None else heads
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    build_root = str(Path(build_root or out / "build").resolve())
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures = client.map(
            run_point,
            [base.to_json()] * len(points),
            points,
            tokens=tokens,
            heads=heads,
            mode=mode,
            fmax_mhz=fmax_mhz,
            rtl=rtl,
            build_root=build_root,
            fpga=fpga,
            time_limit=time_limit,
            pure=False,
        )
        records = []
        for n, fut in enumerate(as_completed(futures), 1):
            rec = fut.result()
            records.append(rec)
            state = rec.get("error") or f"{rec['predicted_cycles']} cycles"
            log(
                f"[sweep] {n}/{len(points)} {rec['array']} C={rec['chunk_size']} d={rec['d']} "
                f"b={rec['data_bits']} p={rec['state_passes']}: {state}"
            )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    records.sort(
        key=lambda r: (r["array"], r["chunk_size"], r["d"], r["data_bits"], r["state_passes"])
    )
    on_front = {id(r) for front in fronts_by_dim(records).values() for r in front}
    for r in records:
        r["pareto"] = id(r) in on_front
    meta = {
        "base": base.name,
        "tokens": tokens,
        "heads": heads,
        "mode": mode,
        "fmax_mhz": fmax_mhz,
        "rtl": rtl,
        "fpga": fpga,
        "time_limit_min": time_limit,
        "command": command or f"deltanet-hw sweep --config {base.name}",
        "tools": versions("amaranth", "dask", "distributed", "numpy"),
        "source_commit": commit,
        "points": records,
    }
    (out / "sweep.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_pages(out)
    return records


def fronts_by_dim(records) -> dict[int, list[dict]]:
    """The Pareto front of each head dimension (points of different d do different work)."""
    return {
        d: pareto([r for r in records if r["d"] == d]) for d in sorted({r["d"] for r in records})
    }


def write_pages(out: Path) -> None:
    """``sweep.csv``, ``pareto.png`` and ``README.md`` from ``out/sweep.json`` alone."""
    meta = json.loads((out / "sweep.json").read_text())
    records = meta["points"]
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*FIELDS, "pareto"], extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    _plot(records, fronts_by_dim(records), out / "pareto.png", meta)
    (out / "README.md").write_text(_markdown(meta))


def _markdown(meta) -> str:
    records = meta["points"]
    failed = [r for r in records if "error" in r]
    tools = tools_text(meta["tools"])
    built = meta.get("fpga")
    lines = [
        "# Design-space sweep",
        "",
        f"`{meta['command']}` (source {meta['source_commit']}; {tools}). Base config "
        f"`{meta['base']}`, {meta['mode']} mode, T = {meta['tokens']}, {meta['heads']} heads; "
        f"tokens/s at {meta['fmax_mhz']:g} MHz from the cycle model"
        + (f"; RTL simulated on {meta['rtl']}" if meta.get("rtl") else "")
        + (f"; every point built for {built}" if built else "")
        + (f" (time limit {meta['time_limit_min']:g} min)" if meta.get("time_limit_min") else "")
        + f". {len(records)} points, {len(failed)} failed. Every point: `sweep.csv`.",
        "",
        "![Pareto plot](pareto.png)",
        "",
        "Hard multipliers: the 18 x 18 multipliers of the MAC array and the solver row (two per "
        "processing element for a state wider than 18 bits in one pass, one with "
        "`state_passes = 2`); products: R x C + C.",
        "",
        "## Pareto front per head dimension",
        "",
        "| d | array | chunk | data bits | state passes | hard multipliers | products | cycles "
        "| utilization | tokens/s |" + (" LUTs | Fmax MHz | tokens/s at Fmax |" if built else ""),
        "|---" * (13 if built else 10) + "|",
    ]
    for d, front in fronts_by_dim(records).items():
        for r in front:
            row = (
                f"| {d} | {r['array']} | {r['chunk_size']} | {r['data_bits']} | "
                f"{r['state_passes']} | {r['hard_multipliers']} | {r['multipliers']} | "
                f"{r['predicted_cycles']} | {r['utilization']:.1%} | {r['tokens_per_s']:.4g} |"
            )
            if built:
                at_fmax = r.get("tokens_per_s_at_fmax")
                row += (
                    f" {r.get('luts', '')} | {r.get('fmax_mhz') or 'not routed'} | "
                    f"{f'{at_fmax:.4g}' if at_fmax else ''} |"
                )
            lines.append(row)
    if failed:
        lines += ["", "## Failed points", ""]
        lines += [
            f"- {r['array']} C={r['chunk_size']} d={r['d']} b={r['data_bits']} "
            f"p={r['state_passes']}: {r['error']}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def _plot(records, fronts, path, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if "error" not in r]
    built = [r for r in ok if r.get("luts")]
    fig, axes = plt.subplots(1, 2 if built else 1, figsize=(11 if built else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    markers = {1: "o", 2: "^"}
    for n, (d, front) in enumerate(fronts.items()):
        color = f"C{n}"
        for passes, marker in markers.items():
            pts = [r for r in ok if r["d"] == d and r["state_passes"] == passes]
            if pts:
                ax.scatter(
                    [r["hard_multipliers"] for r in pts],
                    [r["tokens_per_s"] for r in pts],
                    s=18,
                    marker=marker,
                    color=color,
                    alpha=0.5,
                    label=f"d={d}, state_passes={passes}",
                )
        ax.plot(
            [r["hard_multipliers"] for r in front],
            [r["tokens_per_s"] for r in front],
            ".-",
            color=color,
            label=f"d={d}: Pareto front",
        )
    ax.set_xlabel("18 x 18 hard multipliers (MAC array + solver row)")
    ax.set_ylabel(f"tokens/s at {meta['fmax_mhz']:g} MHz (cycle model)")
    ax.set_title(
        f"Sweep of {meta['base']}: {meta['mode']}, T={meta['tokens']}, {meta['heads']} heads"
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    if built:  # the FPGA builds: LUTs, and tokens/s at each build's own Fmax where it routed
        ax = axes[0][1]
        ax.scatter(
            [r["luts"] for r in built],
            [r["tokens_per_s"] for r in built],
            s=18,
            label=f"at {meta['fmax_mhz']:g} MHz",
        )
        routed = [r for r in built if r.get("tokens_per_s_at_fmax")]
        ax.scatter(
            [r["luts"] for r in routed],
            [r["tokens_per_s_at_fmax"] for r in routed],
            marker="x",
            label="at the build's Fmax",
        )
        for n, d in enumerate(fronts):
            lut_front = pareto([r for r in built if r["d"] == d], x="luts")
            ax.plot(
                [r["luts"] for r in lut_front],
                [r["tokens_per_s"] for r in lut_front],
                ".-",
                color=f"C{n}",
                label=f"d={d}: Pareto front",
            )
        ax.set_xlabel(f"LUTs on {meta['fpga']} (nextpnr; failed builds: their count at failure)")
        ax.set_ylabel("tokens/s")
        ax.set_title("Against LUTs (FPGA builds)")
        ax.legend(fontsize=8)
    footer(fig, meta["command"], meta["tools"])
    fig.savefig(path, dpi=100)
    plt.close(fig)
