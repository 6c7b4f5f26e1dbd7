"""Every file the repository points a reader to is in the repository: no path that leaves it
(``../``), and every Markdown or Python file named in the tracked text files exists in it."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = (".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".sh")
NAMED = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:md|py))(?![\w/])")
OUTSIDE = re.compile(r"(?<![\w.])\.\./[\w./-]+")
# Names a text mentions that are not files of this repository by design: a user's own file in an
# example, modules of other projects.
NOT_OURS = {"setup.py", "FILE.py", "pair.py"}  # placeholders for a user's own file


def tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("git is not available")
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.splitlines() if f.endswith(TEXT) or os.path.basename(f) in ("run",)]


def problems(files: list[str], root: str = ROOT) -> list[str]:
    names = set(files)
    bases = {}
    for f in names:
        bases.setdefault(os.path.basename(f), []).append(f)
    bad = []
    for f in files:
        try:
            text = open(os.path.join(root, f), encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        for m in OUTSIDE.finditer(text):
            bad.append(f"{f}: points outside the repository: {m.group(0)}")
        here = os.path.dirname(f)
        for m in NAMED.finditer(text):
            ref = m.group(1)
            if os.path.basename(ref) in NOT_OURS:
                continue
            if ref in names or os.path.normpath(os.path.join(here, ref)) in names:
                continue
            if "/" not in ref and ref in bases:  # a bare file name that exists somewhere in the repository
                continue
            if "/" in ref and any(n.endswith("/" + ref) for n in names):  # a path relative to a package
                continue
            bad.append(f"{f}: names {ref}, which is not in the repository")
    return bad


def test_no_reference_points_outside_the_repository():
    bad = problems([f for f in tracked() if f != "tests/test_references.py"])  # its planted ones below
    assert not bad, "\n".join(bad)


def test_the_check_finds_planted_references(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("see PARITY.md and ../shared/notes.md, and [b](b.md)\n")
    (tmp_path / "docs" / "b.md").write_text("ok: a.md, docs/a.md\n")
    bad = problems(["docs/a.md", "docs/b.md"], str(tmp_path))
    assert any("names PARITY.md" in b for b in bad) and any("../shared/notes.md" in b for b in bad)
    assert not any("b.md:" in b for b in bad) and not any("names b.md" in b for b in bad)
