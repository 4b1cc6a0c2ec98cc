"""mkdocs hooks, listed in mkdocs.yml under `hooks:`.

- Serve the figures of benchmarks/results/ at results/NAME.png, so that a page shows the very file a
  benchmark wrote (no copy under docs/ to go stale).
- Drop the `norun` marker of a code block (a first line `# norun: REASON`, or `<!-- norun: REASON -->`
  above the fence) from the rendered page: it tells the docs tests (tests/docs/pages.py) why the block
  is not run, and is of no use to a reader."""

import re
from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
#: an opening fence followed by a `# norun:` line; the fence is kept, the line dropped
NORUN_LINE = re.compile(r"^(?P<fence>[ \t]*(?:`{3,}|~{3,})[^\n]*\n)[ \t]*#\s*norun:[^\n]*\n", re.M)
#: the same marker as an HTML comment above the fence (the README's form), dropped whole
NORUN_COMMENT = re.compile(r"^[ \t]*<!--\s*norun:.*?-->[ \t]*\n", re.M)


def on_files(files, config):
    for figure in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{figure.name}", abs_src_path=str(figure)))
    return files


def on_page_markdown(markdown, page, config, files):
    return NORUN_COMMENT.sub("", NORUN_LINE.sub(r"\g<fence>", markdown))
