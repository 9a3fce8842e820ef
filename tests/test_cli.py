import json
import subprocess
import sys

import pytest

from deltanet_hw.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_show_json(capsys):
    code, out, _ = run(capsys, "config", "show", "small", "--json", "--set", "d_k=32")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "small" and data["d_k"] == 32 and data["d_v"] == 64


def test_config_show_text_and_list(capsys):
    code, out, _ = run(capsys, "config", "show", "tiny")
    assert code == 0 and "d_k" in out and "multipliers" in out
    code, out, _ = run(capsys, "config", "list", "--json")
    assert code == 0 and set(json.loads(out)) == {"tiny", "ice40", "small", "ecp5"}


@pytest.mark.parametrize("gated", ["false", "true"])
def test_golden_json(capsys, gated):
    code, out, _ = run(
        capsys,
        "golden",
        "--config",
        "tiny",
        "--tokens",
        "70",
        "--heads",
        "3",
        "--seed",
        "5",
        "--set",
        f"gated={gated}",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["tokens"] == 70 and data["heads"] == 3 and data["gated"] == (gated == "true")
    assert 0 <= data["rel_rms_o_chunk_vs_recurrent"] <= 1e-12
    assert 0 <= data["rel_rms_state_chunk_vs_recurrent"] <= 1e-12
    assert data["tokens_per_s_chunk"] > 0 and data["seconds_recurrent"] > 0


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["golden", "--config", "nope"], "unknown preset 'nope'"),
        (["golden", "--config", "tiny", "--set", "d_k=0"], "d_k must be an integer in [1, 512]"),
        (["golden", "--config", "tiny", "--tokens", "0"], "expected a positive integer"),
        (["config", "show", "tiny", "--set", "nofield=1"], "unknown config field 'nofield'"),
        ([], "the following arguments are required"),
        (["sim", "--config", "tiny", "--stall", "1.5"], "--stall must be in [0, 1)"),
        (["sim", "--config", "tiny", "--heads", "3"], "heads must be in [1, 2]"),
        (["sim", "--config", "tiny", "--set", "gated=true"], "gated must be False for the core"),
        (["sim", "--config", "tiny", "--simulator", "ghdl"], "invalid choice: 'ghdl'"),
        (["sweep", "--config", "small", "--fmax-mhz", "nan"], "expected a positive number"),
        (["sweep", "--config", "small", "--state-passes", "1,x"], "bad value in '1,x'"),
        (
            ["synth", "--config", "tiny", "--board", "icebreaker", "--time-limit", "-5"],
            "expected a positive number, not '-5'",
        ),
        (
            ["synth", "--config", "tiny", "--board", "icebreaker", "--clock-mhz", "inf"],
            "expected a positive number, not 'inf'",
        ),
    ],
)
def test_errors_exit_nonzero_with_one_line(capsys, argv, text):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and text in err


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "deltanet_hw", "config", "show", "ice40", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["array_rows"] == 2


def test_verilog_writes_module_and_config(capsys, tmp_path):
    out = tmp_path / "mac.v"
    code, stdout, _ = run(
        capsys, "verilog", "--config", "tiny", "--block", "mac_array", "-o", str(out), "--json"
    )
    assert code == 0
    assert json.loads(stdout)["block"] == "mac_array"
    text = out.read_text()
    assert "module mac_array" in text and "a__payload" in text and "c__valid" in text
    assert json.loads((tmp_path / "mac.json").read_text())["name"] == "tiny"
    code, _, err = run(capsys, "verilog", "--config", "tiny", "-o", str(tmp_path / "x.txt"))
    assert code == 2 and "must be a .v file" in err


def test_verilog_core_by_default(capsys, tmp_path):
    out = tmp_path / "core.v"
    code, stdout, _ = run(capsys, "verilog", "--config", "ice40", "-o", str(out), "--json")
    assert code == 0 and json.loads(stdout)["block"] == "core"
    text = out.read_text()
    assert "module deltanet_core" in text
    for port in ("tok_in__payload", "tok_out__valid", "state_out__ready", "csr__r_data"):
        assert port in text


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_golden_fixed_json(capsys, mode):
    code, out, _ = run(
        capsys, "golden", "--fixed", "--config", "tiny", "--tokens", "40", "--mode", mode, "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == mode and data["saturations"] == 0
    assert 0 < data["rel_rms_o"] < 5e-3 and 0 < data["rel_rms_state"] < 5e-3


@pytest.mark.skipif(
    "icarus" not in __import__("deltanet_hw.sim.runner").sim.runner.available_simulators(),
    reason="icarus is not installed",
)
def test_sim_json(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "sim",
        "--config",
        "tiny",
        "--tokens",
        "5",
        "--heads",
        "1",
        "--simulator",
        "icarus",
        "--stall",
        "0.2",
        "--seed",
        "3",
        "--build-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    for key in (
        "mismatches",
        "cycles",
        "predicted_cycles",
        "utilization",
        "efficiency",
        "tokens",
        "heads",
    ):
        assert key in data
    assert data["mismatches"] == 0 and data["tokens"] == 5 and data["heads"] == 1
    assert data["cycles"] > 0 and 0 < data["utilization"] < 1


def test_synth_stopped_at_its_time_limit(capsys, tmp_path):
    code, out, err = run(
        capsys,
        *("synth", "--config", "tiny", "--board", "icebreaker", "--time-limit", "0.05"),
        *("-o", str(tmp_path), "--build-dir", str(tmp_path / "build")),
    )
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("deltanet-hw synth: tiny was not built for icebreaker: stopped at ")
    assert "the time limit of 0.05 min (yosys: synthesis)" in last
    rec = json.loads((tmp_path / "core_tiny_icebreaker.json").read_text())
    assert rec["stage"] == "stopped" and rec["bitstream"] is None
