"""The report layer loads matplotlib (and never torch) only when a figure is drawn: the CLI imports it,
and `deepem --help` must not pay for plotting (issue 23, item 12)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_report_layer_loads_no_plotting_and_no_torch():
    code = ("import sys, deepem.report.compare, deepem.report.figures, deepem.report.tables; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
