"""The one way a test says which extra it needs, and the skip it gets without it.

    pytestmark = pytest.mark.models           # every test of the module needs the models extra
    @pytest.mark.render                        # this test renders (bpy here or in the workers)
    torch = imported("models", "torch")        # a module that imports an extra's package at its top

Without the extra the test, or the whole module, is skipped with the same reason either way:
"needs the models extra (torch, …): pip install -e '.[models]'". The markers are the extras'
names (pyproject's [project.optional-dependencies]); tests/conftest.py applies them.
"""

from __future__ import annotations

import importlib
import importlib.util

import pytest

EXTRAS = {  # extra → the packages (as imported) that show it is installed
    "render": ("bpy",),
    "models": ("torch", "torchvision", "captum", "normflows", "statsmodels", "skimage"),
    "cluster": ("ray",),
    "study": ("statsmodels", "flask", "waitress"),
    "dev": ("hypothesis", "playwright", "httpx", "quantus"),
    "docs": ("mkdocs", "material", "mkdocstrings"),
}


def installed(module: str) -> bool:
    """Whether `module` can be found, without importing it (importing bpy or torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(extra: str) -> list[str]:
    return [m for m in EXTRAS[extra] if not installed(m)]


def reason(extra: str) -> str:
    return f"needs the {extra} extra ({', '.join(missing(extra)) or 'installed'} missing): pip install -e '.[{extra}]'"


def imported(extra: str, module: str):
    """`module` from `extra`; without the extra the calling test module is skipped (at its top) or the test is."""
    if missing(extra):
        pytest.skip(reason(extra), allow_module_level=True)
    return importlib.import_module(module)
