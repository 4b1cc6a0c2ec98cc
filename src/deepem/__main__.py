"""`python -m deepem ...` (and `torchrun --nproc-per-node N -m deepem train ...`): the `deepem` command."""

import sys

from deepem.cli import main

sys.exit(main())
