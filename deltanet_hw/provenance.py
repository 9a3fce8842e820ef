"""Where a record came from: the versions of the tools it depends on and the source commit."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["source_commit", "versions"]


def versions(*packages: str) -> dict:
    """Python's version and each installed package's (None when it is not installed)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def source_commit() -> str | None:
    """The git commit of the checkout this package runs from, with ``+dirty`` when its source
    (the package, pyproject.toml; not reports/ or tests/) differs from it; None outside a git
    checkout."""
    here = Path(__file__).resolve().parent
    source = ["deltanet_hw", "golden", "hw", "sim", "pyproject.toml"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *source],
            cwd=here.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")
