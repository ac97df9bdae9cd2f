"""README.md's examples run as written and print what the README shows.

Each example is taken from README.md itself and run in a fresh folder, so an example can never
break silently: the Python tour (its output block must match exactly: everything in it is
seeded), the `datavalue value` transcript (identical but for the measured seconds) and the
real-table snippet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    return text[start: nxt if nxt != -1 else len(text)]


def _fenced(section: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a section, in order: (language, text)."""
    blocks, lang, lines = [], None, []
    for line in section.split("\n"):
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(lines) + "\n"))
                lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def _blocks(section: str, lang: str = "") -> list[str]:
    return [text for kind, text in _fenced(section) if kind == lang]


def _python(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_the_python_tour_prints_what_the_readme_shows_and_runs_twice(tmp_path):
    section = _section("## A tour of the Python API")
    code = _blocks(section, "python")[0]
    expected = _blocks(section)[0]  # the first plain block: the tour's output
    assert _python(code, tmp_path) == expected
    assert _python(code, tmp_path) == expected  # again, in the same folder


@pytest.mark.slow
def test_the_value_transcript_is_what_the_command_prints(tmp_path):
    section = _section("## The command line")
    transcript = next(b for b in _blocks(section) if b.startswith("$ datavalue value"))
    command, *expected = transcript.rstrip("\n").split("\n")
    argv = command[2:].split()
    proc = subprocess.run([sys.executable, "-m", "datavalue", *argv[1:], "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    def norm(lines: list[str]) -> list[str]:
        return [re.sub(r"\d+\.\d s,", "_ s,", line) for line in lines]

    assert norm(proc.stdout.rstrip("\n").split("\n")) == norm(expected)


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_real_table_example_runs(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data not found")
    code = _blocks(_section("## Real tables"), "python")[0]
    # The README is read from the repository root, where ../shared/data is the shared folder.
    code = code.replace('"../shared/data/', f'"{SHARED}/')
    out = _python("import datavalue as dv\n" + code
                  + "\nprint(len(oob.values_), oob.result_.ids[:3].tolist())", tmp_path)
    assert out.startswith("7043 [0, 1, 2]")


def _shell_lines() -> list[str]:
    """Every command line of README.md's ```bash blocks, except those that install or test the
    project itself (make: that is CI's own run) and activating the venv (the tests run inside
    it: its bin folder is on PATH)."""
    lines = []
    for lang, text in _fenced(README.read_text()):
        if lang != "bash":
            continue
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "make ", "source ")):
                lines.append(line)
    return lines


@pytest.mark.slow
def test_every_shell_example_runs_in_order(tmp_path):
    import os
    import shlex

    lines = _shell_lines()
    assert any(line.startswith("datavalue value") for line in lines)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "python":
            argv[0] = sys.executable
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, line


@pytest.mark.slow
def test_every_python_example_runs(tmp_path):
    """Each other ```python block of README.md runs on its own (the tour and the table example
    run in the tests above)."""
    tested = (_blocks(_section("## A tour of the Python API"), "python")[0],
              _blocks(_section("## Real tables"), "python")[0])
    for lang, code in _fenced(README.read_text()):
        if lang != "python" or code in tested:
            continue
        code = code.replace('"../shared/data/', f'"{SHARED}/')
        if "import datavalue as dv" not in code:
            code = "import datavalue as dv\n" + code
        if str(SHARED) in code and not SHARED.is_dir():
            continue
        _python(code, tmp_path)
