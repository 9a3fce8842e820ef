"""Design-space sweeps: points on a local Dask cluster, failures recorded, Pareto front."""

import csv
import json

import pytest

from deltanet_hw.config import load_config
from deltanet_hw.sim.sweep import make_points, pareto, point_config, sweep, write_pages


def test_point_config_sizes_the_accumulator():
    cfg = point_config(
        load_config("small"),
        {"array": "4x8", "chunk_size": 64, "d": 128, "data_bits": 16, "state_passes": 2},
    )
    assert (cfg.array_rows, cfg.array_cols, cfg.chunk_size, cfg.d_k, cfg.d_v) == (
        4,
        8,
        64,
        128,
        128,
    )
    assert cfg.fmt_qk.width == 16 and 30 < cfg.acc_bits <= 62 and cfg.state_passes == 2


def test_pareto_front():
    recs = [
        {"hard_multipliers": 16, "tokens_per_s": 1.0},
        {"hard_multipliers": 16, "tokens_per_s": 2.0},
        {"hard_multipliers": 64, "tokens_per_s": 1.5},
        {"hard_multipliers": 64, "tokens_per_s": 5.0},
        {"hard_multipliers": 32, "error": "ValueError: x"},
    ]
    front = pareto(recs)
    assert [(r["hard_multipliers"], r["tokens_per_s"]) for r in front] == [(16, 2.0), (64, 5.0)]


def test_sweep_on_a_local_cluster_records_failures(tmp_path):
    points = make_points(["4x4", "3x4", "8x8"], [16, 32], [64], [16], [1, 2])
    recs = sweep(load_config("small"), points, tokens=64, heads=2, output=tmp_path, workers=2)
    assert len(recs) == 12
    bad = [r for r in recs if "error" in r]
    assert len(bad) == 4 and all("array_rows" in r["error"] for r in bad)  # 3x4: not a power of 2
    good = {(r["array"], r["chunk_size"], r["state_passes"]): r for r in recs if "error" not in r}
    assert all(r["predicted_cycles"] > 0 and 0 < r["utilization"] < 1 for r in good.values())
    # the 32-bit state: two multipliers per element at once, or one in two passes (more cycles)
    one, two = good["4x4", 16, 1], good["4x4", 16, 2]
    assert (one["hard_multipliers"], two["hard_multipliers"]) == (4 * 4 * 2 + 4, 4 * 4 + 4)
    assert one["multipliers"] == two["multipliers"] == 4 * 4 + 4
    assert two["predicted_cycles"] > one["predicted_cycles"]
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert len(data["points"]) == 12 and any(p["pareto"] for p in data["points"])
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and (tmp_path / "pareto.png").stat().st_size > 0
    assert {r["state_passes"] for r in rows} == {"1", "2"}
    page = (tmp_path / "README.md").read_text()
    assert (
        "## Pareto front per head dimension" in page and "| 64 | 4x4 | 16 | 16 | 2 | 20 |" in page
    )
    assert page.count("array_rows") == 4  # the failed points, each with its error
    # the page, the table and the plot come from sweep.json alone (what `report` reruns)
    csv_text = (tmp_path / "sweep.csv").read_text()
    for name in ("README.md", "sweep.csv", "pareto.png"):
        (tmp_path / name).unlink()
    write_pages(tmp_path)
    assert (tmp_path / "README.md").read_text() == page
    assert (tmp_path / "sweep.csv").read_text() == csv_text and (tmp_path / "pareto.png").exists()


@pytest.mark.slow
def test_sweep_builds_points_for_a_board(tmp_path):
    """--fpga: each point's core is built; one that does not fit keeps its figures and the
    resources nextpnr counted, with the build's error (the ice40 core does not fit the UP5K)."""
    points = make_points(["2x4"], [16], [16], [16])
    recs = sweep(
        load_config("ice40"),
        points,
        tokens=32,
        heads=2,
        output=tmp_path,
        workers=1,
        fpga="icebreaker",
    )
    (r,) = recs
    assert "error" not in r and r["predicted_cycles"] > 0 and r["board"] == "icebreaker"
    assert r["luts"] > 5280 and r["dsps"] > 8 and r["fmax_mhz"] is None
    assert "Unable to place" in r["fpga_error"]
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["fpga"] == "icebreaker" and data["points"][0]["luts"] == r["luts"]
