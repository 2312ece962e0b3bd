"""The skip table names exactly the project's extras, and pyproject registers one marker per extra."""

import tomllib
from pathlib import Path

from extras import EXTRAS, reason

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_the_markers_are_the_extras_of_pyproject():
    assert set(EXTRAS) == set(PYPROJECT["project"]["optional-dependencies"])
    markers = {line.split(":")[0] for line in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    assert markers == {"slow", *EXTRAS}


def test_a_skip_names_the_extra_and_its_install_command():
    assert reason("models").startswith("needs the models extra (") and reason("models").endswith("pip install -e '.[models]'")
