"""What every report figure carries: the command that made it and the tool versions."""

from __future__ import annotations

__all__ = ["footer"]


def footer(fig, command: str, tools: dict) -> None:
    """Write ``command`` and the tool versions under ``fig`` (and lay it out around them)."""
    versions = ", ".join(f"{k} {v}" for k, v in tools.items() if v)
    fig.text(0.01, 0.01, f"{command}\n{versions}", fontsize=6, va="bottom", color="0.3")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
