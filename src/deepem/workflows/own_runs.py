"""`deepem impute RUN --input FILE --output FILE` and `deepem score RUN --input FILE --output FILE`: a
trained run's model and dataset record applied to any file with the run's columns (workflows/own_data.py
does the reading, checking and writing). Runs trained on a benchmark dataset work too, their inputs given
in the units of that benchmark's data as deepem loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepem.data.tables import TableError
from deepem.workflows.loading import TrainedRun, load_trained_run
from deepem.workflows.own_data import RECORD_NAME, impute_file, load_dataset_record, score_file

#: methods that train q on the completed input x̆ (miss-IWEM): their default proposal is "completed"
COMPLETED_PROPOSAL_METHODS = ("miss-iwem", "miss-iwem-woa")


def default_proposal(method: str) -> str:
    """The proposal a run's method trained q for: "completed" for miss-IWEM, else "zero-filled" (MIWAE)."""
    return "completed" if method in COMPLETED_PROPOSAL_METHODS else "zero-filled"


def run_record(run_dir: str | Path, trained: TrainedRun) -> dict[str, Any]:
    """The run's data_file.json; for a run trained on a benchmark dataset, a record of its columns as the
    run's data hold them (1..D, no header, no rescaling: inputs are given in the units of the data as deepem
    loads that benchmark, e.g. pixel values in [0, 1])."""
    if (Path(run_dir) / RECORD_NAME).is_file():
        return load_dataset_record(run_dir)
    return {"columns": [str(j + 1) for j in range(trained.data.data_dim)], "header": False,
            "standardization": None, "benchmark": trained.config.dataset}


def _checked_run(run_dir: str | Path, input_path: str | Path, output_path: str | Path
                 ) -> tuple[TrainedRun, dict[str, Any]]:
    if Path(output_path).resolve() == Path(input_path).resolve():
        raise TableError(f"{output_path}: the output would overwrite the input; give another --output path")
    trained = load_trained_run(run_dir, warn=lambda _: None)
    return trained, run_record(run_dir, trained)


def impute_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                    proposal: str | None = None, **options: Any) -> dict[str, Any]:
    """`deepem impute RUN --input FILE --output FILE`: `impute_file` with the run's model and record;
    proposal None: the one its method trained (`default_proposal`)."""
    trained, record = _checked_run(run_dir, input_path, output_path)
    proposal = proposal or default_proposal(trained.config.method)
    summary = impute_file(trained.model, record, input_path, output_path, proposal=proposal, **options)
    return {**summary, "method": trained.config.method, "step": trained.step,
            **({"units": f"as the run's {record['benchmark']} data"} if "benchmark" in record else {})}


def score_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                   proposal: str | None = None, **options: Any) -> dict[str, Any]:
    """`deepem score RUN --input FILE --output FILE`: `score_file` with the run's model and record."""
    trained, record = _checked_run(run_dir, input_path, output_path)
    proposal = proposal or default_proposal(trained.config.method)
    summary = score_file(trained.model, record, input_path, output_path, proposal=proposal, **options)
    return {**summary, "method": trained.config.method, "step": trained.step}
