"""The documentation: the README's links lead to files that exist, and the site builds with
`mkdocs build --strict` (every page in the navigation, every link and anchor found, every
docstring of the API reference rendered without a warning; mkdocs.yml)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_relative_link_of_the_readme_names_a_file_of_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/guides/") for t in targets)
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).is_file()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_every_page_under_docs_is_in_the_navigation_or_data():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", config, flags=re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    data = {p for p in pages if p.split("/")[0] in ("benchmark", "inn_experiments")}
    assert pages - data == nav


@pytest.mark.docs
@pytest.mark.slow
def test_the_site_builds_without_a_warning(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()
