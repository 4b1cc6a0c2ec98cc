"""What a new user sees of the command line before training anything (issue 9): --help, `deepem list`,
--threads on either side of the subcommand, and a pipe closed early."""

from __future__ import annotations

import subprocess
import sys


def test_closed_pipe_ends_quietly():
    """`deepem list | head -1`: the reader is gone before deepem writes; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "deepem.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the interpreter has even imported torch: every write fails
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
