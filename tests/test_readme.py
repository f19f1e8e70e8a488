"""The README's example runs as written (top-level await, as in a notebook cell)."""
import re
import textwrap
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


async def test_readme_example_runs(capsys):
    block = re.search(r"## Ten lines\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    body = textwrap.indent(block, "    ")
    namespace = {}
    exec(compile(f"async def example():\n{body}", "README.md", "exec"), namespace)
    await namespace["example"]()
    out = capsys.readouterr().out
    assert '42["chat","hi"]' in out and "OPEN" in out
