"""A run is a folder: config.json, metrics.jsonl, checkpoints/, evaluation.json, figures/."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepem.training.files import atomic_write_bytes, atomic_write_json


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (exists already, or is not a run)."""


@dataclass
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def evaluation_path(self) -> Path:
        return self.root / "evaluation.json"

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def create(self, force: bool = False) -> None:
        """Make a fresh run folder. An existing non-empty folder is kept unless force=True."""
        if self.root.exists() and any(self.root.iterdir()):
            if not force:
                raise RunFolderError(
                    f"run folder {self.root} already exists and is not empty; pass --force to overwrite "
                    f"it or --resume {self.root} to continue the run in it"
                )
            if not self.is_run():
                raise RunFolderError(
                    f"{self.root} is not empty and is not a deepem run (no config.json); refusing to delete "
                    "it even with --force: choose another --out"
                )
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def require_run(self) -> None:
        if not self.is_run():
            raise RunFolderError(
                f"{self.root} is not a deepem run folder (no config.json there); "
                "give the --out folder of a `deepem train` run"
            )

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        self.require_run()
        return json.loads(self.config_path.read_text())

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash ends the usable log
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Keep only records up to `last_step`: a resumed run logs the later steps again."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= last_step]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        atomic_write_bytes(self.metrics_path, text.encode())
