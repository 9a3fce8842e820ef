"""deltanet-hw report: every page and the index rebuilt from the JSON records alone."""

import json
import shutil
from pathlib import Path

from deltanet_hw.cli import main
from deltanet_hw.hw.fpga import path_text

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_report_rebuilds_pages_and_index_from_json(tmp_path, capsys):
    root = tmp_path / "reports"
    shutil.copytree(REPORTS, root, ignore=shutil.ignore_patterns("*.md", "*.png", "build"))
    assert main(["report", "-o", str(root)]) == 0
    index = (root / "README.md").read_text()
    for text in (
        "utilization",
        "small | chunk | 256 x 4",
        "Compared with the anchors",
        "| ulx3s-85f | 156 MULT18X18D",
    ):
        assert text in index
    for page in (
        "numerics/README.md",
        "blocks/README.md",
        "core/README.md",
        "figures.png",
        "core/cycles_by_op.png",
        "numerics/error_vs_width.png",
    ):
        assert (root / page).stat().st_size > 0
    for path in (root / "fpga").glob("*.json"):  # each build names its commit, its slowest path
        rec = json.loads(path.read_text())
        if rec.get("source_commit"):
            assert f"| {rec['source_commit'][:10]}" in index, path.name
        if rec.get("critical_path"):
            assert path_text(rec["critical_path"]) in index, path.name
    # the same records give the same pages as the committed ones
    assert (root / "core/README.md").read_text() == (REPORTS / "core/README.md").read_text()
