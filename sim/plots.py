"""What every report figure carries: the command that made it and the tool versions."""

from __future__ import annotations

__all__ = ["footer", "tools_text"]


def footer(fig, command: str, tools: dict) -> None:
    """Write ``command`` and the tool versions under ``fig`` (and lay it out around them)."""
    fig.text(0.01, 0.01, f"{command}\n{tools_text(tools)}", fontsize=6, va="bottom", color="0.3")
    fig.tight_layout(rect=(0, 0.08, 1, 1))


def tools_text(tools: dict) -> str:
    """The tool versions of a record as one line: ``name version, ...``."""
    return ", ".join(f"{k} {v}" for k, v in tools.items() if v)
