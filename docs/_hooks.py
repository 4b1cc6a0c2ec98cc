"""mkdocs hook: serve the figures of benchmarks/results/ at results/NAME.png, so that a page shows the very
file a benchmark wrote (no copy under docs/ to go stale). Listed in mkdocs.yml under `hooks:`."""

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def on_files(files, config):
    for figure in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{figure.name}", abs_src_path=str(figure)))
    return files
