"""Sphinx configuration of the scalable documentation (MyST markdown pages).

Built by ``make docs`` with ``-W --keep-going``: any warning fails the build. Reference
sections (the CLI, the manifest schema, the telemetry events) are generated from the code
at build time by the extensions in ``docs/_ext/``, so they cannot drift from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import scalable  # noqa: E402

project = "scalable"
author = "the scalable authors"
copyright = "2026, the scalable authors"
release = scalable.__version__
version = release

extensions = ["myst_parser", "scalable_generated"]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

#: Anchors for headings down to ``####``, so pages can link to ``other.md#a-heading``.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]

#: Command lines (``--yes``) and quotes stay as written.
smartquotes = False

html_theme = "alabaster"
html_title = f"scalable {release}"
html_theme_options = {"description": "Artifacts, caches and runs for scientific and data workflows."}
