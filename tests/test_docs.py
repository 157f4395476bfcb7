"""The README and docs/ say what runs: every command and Python snippet runs (one epoch), or is marked long
(first line ``# long: why``); docs/benchmarks.md is what ``bench/frontier.py`` generates from the run files."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
ONE_EPOCH = ["--epochs=1", "--show_progress=False", "--state=ERROR"]
"""Appended to every command and given to every snippet as its command line (RecBole's Config reads it)."""


def _blocks():
    for page in PAGES:
        for k, match in enumerate(BLOCK.finditer(page.read_text())):
            yield pytest.param(match.group(1), match.group(2), id=f"{page.name}-{k}")


def test_every_page_has_its_blocks_found():
    assert len(list(_blocks())) >= 8


@pytest.mark.parametrize("language, code", list(_blocks()))
def test_every_command_and_snippet_runs_or_is_marked_long(language, code, tmp_path):
    first = code.splitlines()[0]
    if first.startswith("# long:"):
        assert len(first) > len("# long: ") + 5, "say why it is long"
        return
    if language == "python":
        run = [sys.executable, "-c", "import sys; sys.argv[1:] = " + repr(ONE_EPOCH) + "\n" + code]
        done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    for line in code.splitlines():
        command = line.split("  #")[0].strip()
        if not command or command.startswith("#"):
            continue
        words = shlex.split(command)
        assert words[0] == "python" and words[1].startswith("run_"), f"not a command the test can run: {command}"
        ours = {flag.split("=")[0] for flag in ONE_EPOCH}  # RecBole refuses a key given twice
        words = [sys.executable, str(ROOT / words[1]), *[w for w in words[2:] if w.split("=")[0] not in ours], *ONE_EPOCH]
        done = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]


def test_the_benchmarks_page_is_what_the_run_files_generate():
    sys.path.insert(0, str(ROOT / "bench"))
    import frontier

    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert page.startswith(frontier.GENERATED)
    assert page == frontier.benchmarks_doc(), "run: python bench/frontier.py --summary"
