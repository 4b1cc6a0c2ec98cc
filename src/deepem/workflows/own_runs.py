"""A trained model applied to rows of one's own: `deepem impute RUN --input FILE --output FILE`, `deepem score
RUN --input FILE --output FILE` and `deepem sample RUN` on a table. The model comes from `load_model`
(workflows/trained_model.py), which never reads the file the run trained on; rows are read and checked
against the model's columns (workflows/own_data.py) and the results written on the file's own scale. Runs
trained on a benchmark dataset work too, their inputs given in the units of that benchmark's data as deepem
loads it.

Nothing is written unless every check passed: the output paths are checked (none may exist unless
force=True, nor be a folder or the input), the input is read and checked, the model runs, and only then
are the outputs written, as one set (files.write_file_set): all of them appear, or none."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deepem.data.table_writer import draw_contents, draw_paths, table_bytes
from deepem.data.tables import TableError, TableFile
from deepem.evaluation.own_rows import Progress
from deepem.files import check_outputs, write_file_set
from deepem.workflows.own_data import read_rows
from deepem.workflows.trained_model import TrainedModel, load_model, method_proposal


def default_proposal(method: str) -> str:
    """The proposal a run's method trained q for (the method class's `imputation_proposal`)."""
    return method_proposal(method)


def _checked_model(run_dir: str | Path, input_path: str | Path, outputs: list[Path], force: bool) -> TrainedModel:
    check_paths(input_path, outputs, force)
    return load_model(run_dir, warn=say)


def say(message: str) -> None:
    """A note for the user on stderr (a damaged newest checkpoint passed over: the parameters used are an
    older step's, which the summary names)."""
    print(message, file=sys.stderr)


def check_paths(input_path: str | Path, outputs: list[Path], force: bool = False) -> None:
    """Refuse, before any work, outputs that would overwrite the input, exist (without force), or
    cannot be written (files.check_outputs)."""
    source = Path(input_path).resolve()
    for path in outputs:
        if Path(path).resolve() == source:
            raise TableError(f"{path}: the output would overwrite the input; give another --output path")
    check_outputs(outputs, force)


def impute_outputs(output_path: str | Path, draws: int = 0, long: bool = False) -> list[Path]:
    """Every file `impute_file` writes: the filled file, and with draws=M the M files OUT_1 .. OUT_M, or
    with long=True the one table OUT_draws."""
    output_path = Path(output_path)
    if not draws:
        return [output_path]
    if long:
        return [output_path, _long_path(output_path)]
    return [output_path, *draw_paths(output_path, draws)]


def _long_path(output_path: Path) -> Path:
    return output_path.with_name(f"{output_path.stem}_draws{output_path.suffix}")


def score_outputs(output_path: str | Path) -> list[Path]:
    """The files `score_file` writes: the scores and OUTPUT.json."""
    return [Path(output_path), Path(f"{output_path}.json")]


def _about(trained: TrainedModel) -> dict[str, Any]:
    units = {"units": f"as the run's {trained.transform.dataset} data"} if trained.transform.benchmark else {}
    return {"method": trained.method, "step": trained.step, **units}


def impute_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                    proposal: str | None = None, force: bool = False, **options: Any) -> dict[str, Any]:
    """`deepem impute RUN --input FILE --output FILE`: `impute_file` with the run's model; proposal None:
    the one its method trained. The outputs are checked before the run is loaded."""
    outputs = impute_outputs(output_path, options.get("draws", 0), options.get("long", False))
    trained = _checked_model(run_dir, input_path, outputs, force)
    return {**impute_file(trained, input_path, output_path, proposal=proposal, force=force, **options),
            **_about(trained)}


def score_run_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                   proposal: str | None = None, force: bool = False, **options: Any) -> dict[str, Any]:
    """`deepem score RUN --input FILE --output FILE`: `score_file` with the run's model."""
    trained = _checked_model(run_dir, input_path, score_outputs(output_path), force)
    return {**score_file(trained, input_path, output_path, proposal=proposal, force=force, **options),
            **_about(trained)}


def impute_file(trained: TrainedModel, input_path: str | Path, output_path: str | Path, particles: int = 1000,
                draws: int = 0, proposal: str | None = None, seed: int = 0, long: bool = False,
                header: bool | None = None, batch_size: int = 100, progress: Progress | None = None,
                force: bool = False) -> dict[str, Any]:
    """Fill the missing cells of `input_path` (any file with the model's columns) and write it, in its own
    format, to `output_path`; with draws=M also M multiple imputations (M files OUT_1 .. OUT_M, or with
    long=True one table OUT_draws with an `imputation` column). proposal None: the method's own. No output
    may exist unless force=True; all are written or none. Returns a JSON-able summary."""
    output_path = Path(output_path)
    check_paths(input_path, impute_outputs(output_path, draws, long), force)
    table = read_rows(trained.transform.record(), input_path, header)
    if output_path.suffix.lower() != table.path.suffix.lower():
        raise TableError(f"{output_path}: the output must have the input's format ({table.path.suffix})")
    if draws and long and not table.lines:
        raise TableError(f"{table.path}: a long table of the draws is for .csv / .tsv files; leave out long "
                         "(--long) to write one file per imputation")
    trained.check_support(table.values, table.mask, table.where, table.column, f"{table.path}: ")
    imputed, drawn, result = trained.imputation(table.values, table.mask, particles, draws, seed, proposal,
                                                batch_size, progress)
    refuse_non_finite(table, imputed if drawn is None else np.concatenate([imputed[None], drawn]),
                      "an imputed value", skip=table.mask)
    contents = {output_path: table_bytes(table, imputed)}
    if drawn is not None:
        contents.update(draw_contents(table, drawn, _long_path(output_path) if long else output_path, long))
    written = write_file_set(contents, force)
    return {"input": str(table.path), "input_sha256": table.sha256, "rows": table.n_rows,
            "n_missing": result.n_missing, "estimator": result.estimator, **result.settings,
            "outputs": [str(p) for p in written]}


def score_file(trained: TrainedModel, input_path: str | Path, output_path: str | Path, particles: int = 1000,
               proposal: str | None = None, seed: int = 0, header: bool | None = None, batch_size: int = 100,
               progress: Progress | None = None, force: bool = False) -> dict[str, Any]:
    """Write each row's IW bound of log p(x) (log p(x_o) for incomplete rows) on the file's own scale to
    `output_path` (a CSV: row, n_observed, log_likelihood), and the estimator, K and seed beside it in
    OUTPUT.json (both or neither; neither may exist unless force=True). Returns that summary."""
    check_paths(input_path, score_outputs(output_path), force)
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
    refuse_non_finite(table, per_row[:, None], "the log-likelihood")
    record = (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode()
    write_file_set({Path(output_path): "".join(lines).encode(), Path(f"{output_path}.json"): record}, force)
    return summary


def check_sample_path(path: str | Path, force: bool = False) -> Path:
    """Refuse, before drawing, a samples path that is not .csv / .tsv, or exists (without force), or
    cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise TableError(f"{path}: samples of a table are written as a table; give a .csv or .tsv --output")
    check_outputs([path], force)
    return path


def refuse_non_finite(table: TableFile, values: np.ndarray, what: str, skip: np.ndarray | None = None) -> None:
    """Refuse results that are not finite (values (..., N, D), cells where `skip` is True not looked at):
    the rows were in the model's support, yet one lies so far outside the training data (say 1e30 in a
    column of ones) that the model's arithmetic overflows."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if skip is not None:
        bad &= ~skip
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(-1, *bad.shape[-2:]).any(axis=(0, 2)))[0])
        raise TableError(f"{table.path}: {what} of {table.where(row)} is not finite: its values lie too far outside "
                         "those the model was trained on (rescale them as the training file was, or remove the row)")


def write_samples(values: np.ndarray, columns: list[str], header: bool, path: str | Path, force: bool = False
                  ) -> Path:
    """Rows drawn from a model as a table (.csv, or .tsv by the suffix): the model's columns, a header line
    when its training file had one, each value the shortest decimal that reads back as the same float64.
    An existing file is refused unless force=True."""
    path = check_sample_path(path, force)
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        raise ValueError("a drawn value is not finite: the model is broken")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    lines = ([sep.join(columns) + "\n"] if header else []) + [
        sep.join(repr(float(v)) for v in row) + "\n" for row in np.asarray(values, dtype=np.float64)]
    write_file_set({path: "".join(lines).encode()}, force)
    return path
