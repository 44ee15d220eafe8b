"""The drag-and-drop page ``GET /`` answers with (shipped in the package as ``web/index.html``)."""

from pathlib import Path

PAGE = Path(__file__).parents[1] / "web" / "index.html"
