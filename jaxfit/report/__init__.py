"""One self-contained HTML report of a sweep directory: `build(sweep_dir)` -> report.html
(`page`: loading the results and laying out the page; `figures`: the PNG figures it embeds)."""

from .page import build, build_checked, find_runs

__all__ = ["build", "build_checked", "find_runs"]
