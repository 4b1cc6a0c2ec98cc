"""Impute the empty cells of a CSV file with deepem's scikit-learn imputer, and write the CSV back.

    python examples/impute_csv.py [--out FOLDER] [--epochs 40]

The script writes `measurements.csv`: 300 rows of four correlated columns on very different scales,
a header, and a quarter of the cells removed (left empty, or written NA / NaN). It reads the file with
`deepem.data.tables.read_table` (missing cells become NaN), fits `deepem.sklearn.DeepImputer` (MIWAE)
on it, fills the missing cells, and writes `measurements_imputed.csv` with `write_table`: the same
header, column order and delimiter, every observed cell copied as it was written, only the empty ones
filled. Since the script made the data, it also reports the error of the imputation against the truth,
beside filling each column with its mean. (Needs scikit-learn: pip install 'deepem[sklearn]'.)"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from deepem.data.table_writer import write_table
from deepem.data.tables import read_table
from deepem.sklearn import DeepImputer

COLUMNS = ("height_cm", "weight_kg", "reach_cm", "score")


def make_csv(path: Path, rows: int = 300, seed: int = 0) -> np.ndarray:
    """Write the CSV with missing cells; return the complete values (the truth)."""
    rng = np.random.default_rng(seed)
    size, skill = rng.normal(size=(rows, 1)), rng.normal(size=(rows, 1))
    truth = np.hstack([170 + 10 * size, 70 + 12 * size + 2 * skill, 175 + 11 * size, 500 + 80 * skill + 20 * size])
    truth += rng.normal(scale=[2.0, 2.0, 2.0, 10.0], size=truth.shape)
    lines = [",".join(COLUMNS)]
    for r, row in enumerate(truth):
        cells = [f"{v:.1f}" for v in row]
        for j in rng.choice(4, size=rng.integers(0, 3), replace=False):
            cells[j] = ("", "NA", "NaN")[(r + j) % 3]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return np.round(truth, 1)


def main(out: str | Path, epochs: int = 40, quiet: bool = False) -> dict[str, float]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = make_csv(out / "measurements.csv")

    table = read_table(out / "measurements.csv")  # values with NaN where a cell is missing
    imputer = DeepImputer(method="miwae", epochs=epochs, particles=20, hidden=(64, 64), latent_dim=2,
                          batch_size=32, lr=3e-3, eval_particles=500, random_state=0)
    filled = imputer.fit_transform(table.values)
    written = write_table(table, filled, out / "measurements_imputed.csv")

    missing = ~table.mask
    scale = truth.std(axis=0)
    model_error = float((((filled - truth) / scale)[missing] ** 2).mean())
    mean_error = float((((np.nanmean(table.values, axis=0) - truth) / scale)[missing] ** 2).mean())
    if not quiet:
        print(f"{int(missing.sum())} missing cells of {missing.size} filled; wrote {written}")
        print(f"imputation error (mean squared, in column stds): deepem {model_error:.3f}, "
              f"column mean {mean_error:.3f}")
    return {"model": model_error, "mean": mean_error, "n_missing": int(missing.sum())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder for the CSV files (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    main(args.out or tempfile.mkdtemp(), args.epochs)
