"""Reproducible corruption of a dataset into an incomplete one: observed-data masks (True = observed).

Two scenarios of the papers:
- MCAR features (Mattei & Frellsen 2019, "MIWAE"): every entry is removed independently with probability
  p. The IWEM paper's UCI experiments remove "half of the features uniformly at random": p = 0.5.
- Missing patches (Kim et al., IWEM paper, section 5.3 and Figure 3): a square image is cut into a
  grid x grid array of patches and n of them, chosen uniformly at random per image, are removed.
  28 pixels do not divide into 3 equal patches: rows and columns are split 10/9/9 (the first
  `size % grid` bands get one extra pixel; `patch_bands`), so the patches hold 100, 90, 90 / 90, 81,
  81 / 90, 81, 81 pixels. The paper says "nine equal patches" and does not say how 28 is split.

Two more mechanisms for benchmarks of imputers (Rubin's taxonomy; the logistic forms follow the usual
simulation designs, e.g. Muzellec et al. 2020): `mar` (a column's missingness depends on an always
observed driver column) and `mnar_self` (self-masking: a cell is more likely missing when its own value
is high). Both pick each column's logistic intercept so that the column's expected missing rate is p.

Specs, as a command line would give them: "mcar:P" (0 <= P < 1) and "patches:N" (0 <= N <= grid^2).
`corrupt_splits` applies a spec to every split of a `DataSplits` with one seed and keeps the complete
data beside the corrupted copy, whose missing entries hold NaN so that nothing can read them silently."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from deepem.data.base import DataSplits

SPLITS = ("train", "valid", "test")
SCENARIOS = ("mcar", "patches")


def mcar(x: Tensor | tuple[int, ...], p: float, generator: torch.Generator | None = None) -> Tensor:
    """Missing completely at random: a bool mask shaped like `x` (a tensor or a shape) where every entry
    is missing (False) independently with probability p."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"an MCAR missing probability must lie in [0, 1), got {p}")
    shape = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
    return torch.rand(shape, generator=generator) >= p


def _intercepts(scores: Tensor, p: float) -> Tensor:
    """Per column b with mean over rows of sigmoid(scores + b) = p (bisection: the mean rises with b)."""
    low = torch.full((scores.shape[1],), -60.0, dtype=torch.float64)
    high = torch.full_like(low, 60.0)
    for _ in range(80):  # 120 / 2^80: exact to double precision
        mid = (low + high) / 2
        above = torch.sigmoid(scores + mid).mean(dim=0) > p
        high = torch.where(above, mid, high)
        low = torch.where(above, low, mid)
    return (low + high) / 2


def _standardised(x: Tensor) -> Tensor:
    """Columns of x (float64) at mean 0 and sd 1; a constant column is all 0 (its cells then have rate p)."""
    x = x.to(torch.float64)
    sd = x.std(dim=0)
    return (x - x.mean(dim=0)) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _check_complete(x: Tensor, p: float, kind: str) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"a {kind} missing probability must lie in [0, 1), got {p}")
    if x.dim() != 2 or bool(torch.isnan(x).any()):
        raise ValueError(f"{kind} masks are drawn from a complete 2-d table (rows x columns, no NaN)")


def mar(x: Tensor, p: float, generator: torch.Generator | None = None, driver: int | None = None,
        strength: float = 2.0) -> Tensor:
    """Missing at random: a bool mask of the complete table x (True = observed) in which column `driver`
    (None: the column of largest standard deviation) is always observed and every other cell x[i, j] is
    missing with probability sigmoid(strength * z[i, driver] + b_j), z the standardised driver, b_j
    chosen so that column j's expected missing rate is p. High driver values make every other column
    more often missing; given the driver, the mask is independent of the values (MAR, not MCAR).
    The table's overall missing rate is p * (D - 1) / D."""
    _check_complete(x, p, "MAR")
    if x.shape[1] < 2:
        raise ValueError("MAR masks need at least two columns: one drives the missingness of the others")
    z = _standardised(x)
    driver = int(x.to(torch.float64).std(dim=0).argmax()) if driver is None else driver
    if not 0 <= driver < x.shape[1]:
        raise ValueError(f"the driver column {driver} is not a column of a table of {x.shape[1]} columns")
    scores = strength * z[:, driver:driver + 1].expand(-1, x.shape[1])
    prob = torch.sigmoid(scores + _intercepts(scores, p)) if p > 0 else torch.zeros_like(scores)
    prob[:, driver] = 0.0
    return torch.rand(tuple(x.shape), generator=generator, dtype=torch.float64) >= prob


def mnar_self(x: Tensor, p: float, generator: torch.Generator | None = None, strength: float = 2.0) -> Tensor:
    """Missing not at random by self-masking: a bool mask of the complete table x (True = observed) where
    cell x[i, j] is missing with probability sigmoid(strength * z[i, j] + b_j), z the column-standardised
    table and b_j chosen so that column j's expected missing rate is p: high values go missing more
    often, and a column's mask depends on that column's values only."""
    _check_complete(x, p, "MNAR")
    scores = strength * _standardised(x)
    prob = torch.sigmoid(scores + _intercepts(scores, p)) if p > 0 else torch.zeros_like(scores)
    return torch.rand(tuple(x.shape), generator=generator, dtype=torch.float64) >= prob


def patch_bands(size: int, grid: int) -> list[int]:
    """Widths of the `grid` bands a side of `size` pixels is cut into: as equal as possible, the first
    size % grid bands one pixel wider (28 in 3: [10, 9, 9])."""
    if not 1 <= grid <= size:
        raise ValueError(f"a grid of {grid} bands does not fit a side of {size} pixels")
    return [size // grid + (1 if i < size % grid else 0) for i in range(grid)]


def patch_index(size: int = 28, grid: int = 3) -> Tensor:
    """(size * size,) long tensor: the patch (0 .. grid^2 - 1, row-major) of every pixel of a flattened
    row-major image."""
    band = torch.repeat_interleave(torch.arange(grid), torch.tensor(patch_bands(size, grid)))
    return (band[:, None] * grid + band[None, :]).reshape(-1)


def patches(n_images: int, n_remove: int, generator: torch.Generator | None = None, size: int = 28,
            grid: int = 3) -> Tensor:
    """(n_images, size * size) bool mask: each image cut into grid x grid patches (`patch_bands`) with
    exactly n_remove of them, chosen uniformly at random per image, removed (IWEM paper, Figure 3)."""
    n_patches = grid * grid
    if not 0 <= n_remove <= n_patches:
        raise ValueError(f"cannot remove {n_remove} of {n_patches} patches; choose 0 .. {n_patches}")
    # a uniformly random subset of n_remove patches per image: the first n_remove of a random permutation
    order = torch.rand(n_images, n_patches, generator=generator).argsort(dim=1)
    removed = torch.zeros(n_images, n_patches, dtype=torch.bool)
    removed.scatter_(1, order[:, :n_remove], True)
    return ~removed[:, patch_index(size, grid)]


@dataclass(frozen=True)
class CorruptionSpec:
    """A parsed corruption spec: "mcar" with its probability, or "patches" with the number removed."""

    scenario: str
    value: float

    def __str__(self) -> str:
        return f"{self.scenario}:{self.value:g}"

    def masks(self, n: int, data_dim: int, image_shape: tuple[int, int] | None,
              generator: torch.Generator) -> Tensor:
        """(n, data_dim) mask for n rows of data shaped like the dataset."""
        if self.scenario == "mcar":
            return mcar((n, data_dim), self.value, generator)
        if image_shape is None or image_shape[0] != image_shape[1] or image_shape[0] ** 2 != data_dim:
            raise ValueError(f"'patches' needs square images; this dataset has image shape {image_shape} and "
                             f"{data_dim} features: use 'mcar:P' for tabular data")
        return patches(n, int(self.value), generator, size=image_shape[0])


def parse_corruption(spec: str) -> CorruptionSpec:
    """Parse "mcar:P" (0 < P < 1) or "patches:N" (1 <= N <= 9) into a CorruptionSpec."""
    scenario, sep, value = spec.strip().lower().partition(":")
    if not sep or scenario not in SCENARIOS:
        raise ValueError(f"unknown missing-data spec {spec!r}; use 'mcar:P' (remove each entry with "
                         "probability P, e.g. mcar:0.5) or 'patches:N' (remove N of the 3x3 patches of "
                         "each image, e.g. patches:3)")
    try:
        number = float(value) if scenario == "mcar" else int(value)
    except ValueError:
        kind = "a probability" if scenario == "mcar" else "a whole number of patches"
        raise ValueError(f"in missing-data spec {spec!r}, {value!r} is not {kind}") from None
    if number == 0:  # nothing missing: every record of it (imputation errors) would be NaN
        raise ValueError(f"{spec!r} removes nothing; leave out --missing to train on complete data, or remove "
                         "some entries (e.g. mcar:0.5 or patches:3)")
    if scenario == "mcar" and not 0.0 < number < 1.0:
        raise ValueError(f"in missing-data spec {spec!r}, the probability must lie in (0, 1)")
    if scenario == "patches" and not 1 <= number <= 9:
        raise ValueError(f"in missing-data spec {spec!r}, the number of patches must be 1 .. 9")
    return CorruptionSpec(scenario, number)


@dataclass
class CorruptedData:
    """An incomplete dataset and the complete one it came from.

    `splits` carries the masks (train_mask, valid_mask, test_mask) and NaN in every missing entry;
    `complete` is the same data fully observed (for imputation errors and complete-data
    log-likelihoods); `spec` and `seed` say how the masks were drawn."""

    splits: DataSplits
    complete: DataSplits
    spec: CorruptionSpec
    seed: int


def with_nan(x: Tensor, mask: Tensor) -> Tensor:
    """A copy of x with NaN in every missing entry (mask False)."""
    return x.masked_fill(~mask, float("nan"))


def corrupt_splits(data: DataSplits, spec: str | CorruptionSpec, seed: int,
                   splits: tuple[str, ...] = SPLITS) -> CorruptedData:
    """Draw masks for the named splits (default all three) from one generator seeded with `seed`, in the
    fixed order train, valid, test, and return the corrupted copy beside the complete data.

    A split not named stays fully observed (e.g. splits=("train",) trains on incomplete data and
    evaluates on complete test data). The same data, spec and seed always give the same masks. Data
    that already carry masks are refused: corrupt the complete data once."""
    spec = parse_corruption(spec) if isinstance(spec, str) else spec
    if any(data.mask(s) is not None for s in SPLITS):
        raise ValueError(f"{data.name} already has observed-data masks; corrupt the complete data")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(SPLITS)}")
    generator = torch.Generator().manual_seed(seed)
    changes: dict[str, Tensor] = {}
    for name in SPLITS:
        if name not in splits:
            continue
        x = data.split(name)
        mask = spec.masks(x.shape[0], x.shape[1], data.image_shape, generator)
        changes[name] = with_nan(x, mask)
        changes[f"{name}_mask"] = mask
    return CorruptedData(replace(data, **changes), data, spec, seed)


def binarize_observed(x: Tensor, mask: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarisation of an incomplete batch: Bernoulli draws of the observed grey levels, NaN kept
    where missing (`data.base.binarize` would fail on NaN)."""
    if mask is None:
        return torch.bernoulli(x, generator=generator)
    filled = torch.where(mask, x, torch.zeros((), dtype=x.dtype))
    return with_nan(torch.bernoulli(filled, generator=generator), mask)
