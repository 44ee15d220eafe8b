"""What ``maskingnet models`` lists, from stored numbers: the six networks (switches, parameters, GFLOPs at
512x512, full width) and the bundled models, read from ``models/catalog.json`` without importing torch, so
the answer takes a fraction of a second instead of building six networks.

:func:`write_catalog` rewrites the file from the live count (:func:`maskingnet.models.models_table`) and the
bundled models' records; a test checks that the stored file still says what they say.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

CATALOG = "models/catalog.json"
STORED_SIZE, STORED_WIDTH = (512, 512), 1.0
TABLE_KEYS = (
    "name",
    "upsample",
    "pool_indices",
    "concat_levels",
    "coords",
    "dilation",
    "width",
    "params",
    "gflops",
    "size",
    "paper_params",
)


def read_catalog() -> dict[str, Any]:
    """``{"networks": [row, ...], "bundled": [{"name", "summary"}, ...]}`` as stored in the package."""
    return json.loads(resources.files("maskingnet").joinpath(CATALOG).read_text(encoding="utf-8"))


def live_catalog() -> dict[str, Any]:
    """The catalog as counted now (builds the six networks on the meta device; seconds)."""
    from maskingnet.models.bundled import list_bundled
    from maskingnet.models.report import models_table

    rows = models_table(size=STORED_SIZE, width=STORED_WIDTH)
    networks = [{key: row[key] for key in TABLE_KEYS} for row in rows]
    for row in networks:
        row["gflops"] = round(row["gflops"], 3)
    bundled = [{"name": model.name, "summary": model.summary} for model in list_bundled()]
    return {"networks": networks, "bundled": bundled}


def write_catalog(path: str | Path | None = None) -> Path:
    """Store :func:`live_catalog` (by default in the package's own ``models/catalog.json``)."""
    target = Path(path) if path else Path(__file__).parent / CATALOG
    catalog = live_catalog()
    parts = [
        f' "{section}": [\n' + ",\n".join(f"  {json.dumps(row)}" for row in rows) + "\n ]"
        for section, rows in catalog.items()
    ]
    target.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")
    return target


def format_models_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`models_table` rows: switches, parameters and GFLOPs."""
    size = "x".join(str(v) for v in rows[0]["size"]) if rows else ""
    lines = [
        f"| model | pool indices | concat levels | coord maps | dilation | params | GFLOPs @{size} |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for row in rows:
        concat = ",".join(str(v) for v in row["concat_levels"]) or "-"
        dilation = ",".join(str(v) for v in row["dilation"])
        lines.append(
            f"| `{row['name']}` | {'yes' if row['pool_indices'] else 'no'} | {concat} | {row['coords']} "
            f"| {dilation} | {row['params']:,} | {row['gflops']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(write_catalog())
