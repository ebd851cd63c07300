"""Report rendering for saliencybench: HTML page, CSV, run comparison, terminal summary."""
from .compare import compare_runs
from .page import render
from .tables import summary_lines, write_csv

__all__ = ["render", "compare_runs", "write_csv", "summary_lines"]
