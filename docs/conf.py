"""Sphinx configuration of the sb3-sac-ext documentation (``sphinx-build -W docs docs/_build``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from sb3_sac_ext.version import __version__

project = "sb3-sac-ext"
author = "sb3-sac-ext developers"
copyright = "2026, sb3-sac-ext developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# API reference: members in source order, type hints in the description (SB3's reST docstrings name the types)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
napoleon_google_docstring = False
# Names from other projects that the docstrings mention but that have no inventory here (offline builds)
nitpicky = False

intersphinx_mapping: dict = {}  # offline: CI builds without network access

html_theme = "sphinx_rtd_theme"
html_title = f"sb3-sac-ext {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_depth": 3, "collapse_navigation": False}


# --- API coverage: every public name of sb3_sac_ext.__all__ and of the modules that user code imports from -------
# (the modules of the API pages and every `from sb3_sac_ext... import ...` in these pages and the README) must be
# in the generated reference. A missing one is a warning, which `sphinx-build -W` turns into an error.
def _imported_modules() -> dict[str, set[str]]:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent
    found: dict[str, set[str]] = {}
    for page in [*root.rglob("*.md"), root.parent / "README.md"]:
        if "_build" in page.parts:
            continue
        text = page.read_text()
        for module, names in re.findall(r"^\s*from (sb3_sac_ext[\w.]*) import ([\w, ]+)$", text, flags=re.M):
            found.setdefault(module, set()).update(n.strip() for n in names.split(",") if n.strip())
    return found


def _public_names(module_name: str) -> list[str]:
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return [name for name in module.__all__ if not name.startswith("_")]
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    ]


def _check_api_coverage(app, env) -> None:
    import importlib

    from sphinx.util import logging

    logger = logging.getLogger("sb3_sac_ext.api_coverage")
    objects = set(env.get_domain("py").objects)
    documented_modules = {name for name, (_, _, objtype, *_) in env.get_domain("py").objects.items() if objtype == "module"}
    wanted: dict[str, set[str]] = {"sb3_sac_ext": {"SAC", "DiscreteSAC", "__version__"}}
    for module, names in _imported_modules().items():
        wanted.setdefault(module, set()).update(names)
    for module in documented_modules | set(wanted):
        if module not in documented_modules:
            logger.warning(f"API reference: module {module} is imported in the docs but has no automodule page")
            continue
        names = set(_public_names(module)) | wanted.get(module, set())
        module_object = importlib.import_module(module)
        # Classes, functions and what the examples import; module constants are described on the guide pages
        names = {name for name in names if name in wanted.get(module, set()) or callable(getattr(module_object, name, None))}
        for name in sorted(names):
            if f"{module}.{name}" not in objects:
                logger.warning(f"API reference: {module}.{name} is public but not documented")


def setup(app):
    app.connect("env-check-consistency", _check_api_coverage)
    return {"parallel_read_safe": True}
