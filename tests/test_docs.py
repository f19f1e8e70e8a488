"""The documentation stays true: the trace format lists the record's fields, and relative links lead somewhere
(to a file that exists, and to a heading it has)."""
import dataclasses
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

import siolab

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# The target of [text](target) and ![alt](target) (a badge is an image inside a link: both are found).
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets and parentheses are not links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    text = prose(text)
    return _LINK.findall(text) + _REFERENCE.findall(text)  # (and [label]: target definitions)


def is_relative(target: str) -> bool:
    return not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("//")


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def table_keys(text: str, heading: str) -> list[str]:
    """The first column of the first table under ``heading``, each cell's `code` name."""
    assert f"\n{heading}\n" in text, f"no {heading!r} heading"
    section = text.split(f"\n{heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break  # the table ended
    keys = []
    for row in rows[2:]:  # after the header and the |---| line
        cell = row.strip("|").split("|")[0].strip()
        names = re.findall(r"`([^`]+)`", cell)
        assert len(names) == 1, f"one key per row in the table, not {cell!r}"
        keys.append(names[0])
    return keys


def test_trace_format_lists_exactly_the_record_fields_in_order():
    text = (ROOT / "docs" / "trace-format.md").read_text(encoding="utf-8")
    assert table_keys(text, "## Keys") == [f.name for f in dataclasses.fields(siolab.Record)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(doc):
    missing = []
    for target in links(doc.read_text(encoding="utf-8")):
        if not is_relative(target):
            continue
        path, _, fragment = unquote(target.split("?", 1)[0]).partition("#")
        file = doc.parent / path if path else doc
        if not file.exists():
            missing.append(target)
        elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text(encoding="utf-8")):
            missing.append(target)  # a heading renamed: the link lands at the top of the page
    assert not missing, f"{doc.relative_to(ROOT)} links to files or headings that do not exist: {missing}"


def test_the_link_finder_finds_links():
    text = ("See [the format](docs/trace-format.md#keys), ![a picture](docs/x.png \"title\") and\n"
            "[![Binder](https://mybinder.org/badge.svg)](https://mybinder.org/v2/gh/x).\n"
            "`[not](a-link.md)`\n```\n[nor](this.md)\n```\n[ref]: docs/ref.md\n")
    assert links(text) == ["docs/trace-format.md#keys", "docs/x.png", "https://mybinder.org/badge.svg",
                           "https://mybinder.org/v2/gh/x", "docs/ref.md"]
    assert [t for t in links(text) if is_relative(t)] == ["docs/trace-format.md#keys", "docs/x.png", "docs/ref.md"]
    assert anchors("# Benchmarks\n## Why wire.py is hand-written\n### `sched_yield` before recording\n"
                   "### The CLI keeps 1,000 records\n```\n# not a heading\n```\n") == {
        "benchmarks", "why-wirepy-is-hand-written", "sched_yield-before-recording", "the-cli-keeps-1000-records"}
