"""The documentation's pages and their fenced code blocks, for the docs tests.

A block is code when its language is `python` or `bash`; other fences (`text`, none) are listings. A code
block runs unless it is marked `norun` with a reason (why it cannot run in the tests: a download, minutes
of CPU, a GPU): either its first line is a comment `# norun: REASON` (docs/_hooks.py drops that line from
the rendered site) or the line just above its fence is `<!-- norun: REASON -->`, which no renderer shows
(the README's form: GitHub shows the README as it is)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: the README and every page of the site (own-data.md and reproducing-uci.md included)
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
CODE_LANGUAGES = ("python", "bash")
NORUN = re.compile(r"^#\s*norun:\s*(\S.*)$")
NORUN_COMMENT = re.compile(r"^\s*<!--\s*norun:\s*(\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    above: str = ""  # the line above the opening fence

    @property
    def norun_reason(self) -> str | None:
        first = self.code.lstrip("\n").splitlines()[0] if self.code.strip() else ""
        match = NORUN.match(first.strip()) or NORUN_COMMENT.match(self.above)
        return match.group(1) if match else None

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, in order."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening.group("fence"), len(opening.group("indent"))
        language = opening.group("info").strip().split(" ")[0].lower() if opening.group("info").strip() else ""
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:])
            j += 1
        found.append(Block(page, i + 1, language, "\n".join(body) + "\n", lines[i - 1] if i else ""))
        i = j + 1
    return found


def code_blocks(language: str) -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.language == language]
