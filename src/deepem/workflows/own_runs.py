"""A trained model applied to rows of one's own: `deepem impute RUN --input FILE --output FILE`, `deepem score
RUN --input FILE --output FILE` and `deepem sample RUN` on a table. The model comes from `load_model`
(workflows/trained_model.py), which never reads the file the run trained on; rows are read and checked
against the model's columns (workflows/own_data.py) and the results written on the file's own scale. Runs
trained on a benchmark dataset work too, their inputs given in the units of that benchmark's data as deepem
loads it.

Nothing is written unless every check passed: the input is read and checked, the model runs, and only then
are the outputs written (each atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepem.data.table_writer import write_draws, write_table
from deepem.data.tables import TableError
from deepem.evaluation.own_rows import Progress
from deepem.files import atomic_write_bytes, atomic_write_json
from deepem.workflows.own_data import read_rows
from deepem.workflows.trained_model import TrainedModel, load_model, method_proposal


def default_proposal(method: str) -> str:
    """The proposal a run's method trained q for (the method class's `imputation_proposal`)."""
    return method_proposal(method)


def _checked_model(run_dir: str | Path, input_path: str | Path, output_path: str | Path) -> TrainedModel:
    if Path(output_path).resolve() == Path(input_path).resolve():
        raise TableError(f"{output_path}: the output would overwrite the input; give another --output path")
    return load_model(run_dir)


def _about(trained: TrainedModel) -> dict[str, Any]:
    units = {"units": f"as the run's {trained.transform.dataset} data"} if trained.transform.benchmark else {}
    return {"method": trained.method, "step": trained.step, **units}


def impute_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                    proposal: str | None = None, **options: Any) -> dict[str, Any]:
    """`deepem impute RUN --input FILE --output FILE`: `impute_file` with the run's model; proposal None:
    the one its method trained."""
    trained = _checked_model(run_dir, input_path, output_path)
    return {**impute_file(trained, input_path, output_path, proposal=proposal, **options), **_about(trained)}


def score_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                   proposal: str | None = None, **options: Any) -> dict[str, Any]:
    """`deepem score RUN --input FILE --output FILE`: `score_file` with the run's model."""
    trained = _checked_model(run_dir, input_path, output_path)
    return {**score_file(trained, input_path, output_path, proposal=proposal, **options), **_about(trained)}


def impute_file(trained: TrainedModel, input_path: str | Path, output_path: str | Path, particles: int = 1000,
                draws: int = 0, proposal: str | None = None, seed: int = 0, long: bool = False,
                header: bool | None = None, batch_size: int = 100, progress: Progress | None = None
                ) -> dict[str, Any]:
    """Fill the missing cells of `input_path` (any file with the model's columns) and write it, in its own
    format, to `output_path`; with draws=M also M multiple imputations (M files OUT_1 .. OUT_M, or with
    long=True one table with an `imputation` column). proposal None: the method's own. Returns a JSON-able
    summary."""
    table = read_rows(trained.transform.record(), input_path, header)
    if Path(output_path).suffix.lower() != table.path.suffix.lower():
        raise TableError(f"{output_path}: the output must have the input's format ({table.path.suffix})")
    trained.check_support(table.values, table.mask, table.where, table.column, f"{table.path}: ")
    imputed, drawn, result = trained.imputation(table.values, table.mask, particles, draws, seed, proposal,
                                                batch_size, progress)
    written = [write_table(table, imputed, output_path)]
    if drawn is not None:
        target = Path(output_path).with_name(f"{Path(output_path).stem}_draws{Path(output_path).suffix}") \
            if long else output_path
        written += write_draws(table, drawn, target, long)
    return {"input": str(table.path), "input_sha256": table.sha256, "rows": table.n_rows,
            "n_missing": result.n_missing, "estimator": result.estimator, **result.settings,
            "outputs": [str(p) for p in written]}


def score_file(trained: TrainedModel, input_path: str | Path, output_path: str | Path, particles: int = 1000,
               proposal: str | None = None, seed: int = 0, header: bool | None = None, batch_size: int = 100,
               progress: Progress | None = None) -> dict[str, Any]:
    """Write each row's IW bound of log p(x) (log p(x_o) for incomplete rows) on the file's own scale to
    `output_path` (a CSV: row, n_observed, log_likelihood), and the estimator, K and seed beside it in
    OUTPUT.json. Returns that summary."""
    table = read_rows(trained.transform.record(), input_path, header)
    trained.check_support(table.values, table.mask, table.where, table.column, f"{table.path}: ")
    per_row, estimate = trained.score_estimate(table.values, table.mask, particles, seed, proposal, batch_size,
                                               progress)
    lines = ["row,n_observed,log_likelihood\n"] + [
        f"{r},{int(n)},{float(v)!r}\n" for r, (n, v) in enumerate(zip(table.mask.sum(1), per_row, strict=True))]
    summary = {"input": str(table.path), "input_sha256": table.sha256, "rows": table.n_rows,
               "estimator": estimate.estimator, **estimate.settings,
               "units": "file's own scale" if trained.transform.standardization is not None else "as in the file",
               "mean": float(per_row.mean()), "output": str(output_path)}
    atomic_write_bytes(Path(output_path), "".join(lines).encode())
    atomic_write_json(Path(f"{output_path}.json"), summary)
    return summary


def write_samples(values: np.ndarray, columns: list[str], header: bool, path: str | Path) -> Path:
    """Rows drawn from a model as a table (.csv, or .tsv by the suffix): the model's columns, a header line
    when its training file had one, each value the shortest decimal that reads back as the same float64."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise TableError(f"{path}: samples of a table are written as a table; give a .csv or .tsv --output")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    lines = ([sep.join(columns) + "\n"] if header else []) + [
        sep.join(repr(float(v)) for v in row) + "\n" for row in np.asarray(values, dtype=np.float64)]
    atomic_write_bytes(path, "".join(lines).encode())
    return path
