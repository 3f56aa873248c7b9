"""Export a campaign as a training dataset, with a dataset card in the Hub's format.

One record builder (:func:`export_records`, :mod:`qdsearch.export.records`) makes
the rows; each format (:mod:`qdsearch.export.formats`) is only a different layout of
the same rows, so every format carries the same fields (a new column of the elites
frame, such as a descriptor's ``topic_region``, flows into all of them):

- ``jsonl`` -> ``elites.jsonl``: ``instruction``, ``input``, ``output`` + metadata;
- ``sharegpt`` -> ``elites.sharegpt.jsonl``: ``conversations`` (human/gpt turns) + metadata;
- ``messages`` -> ``elites.messages.jsonl``: OpenAI/TRL chat ``messages`` + metadata;
- ``alpaca`` -> ``elites.alpaca.json``: one JSON array, fields as ``jsonl``;
- ``parquet`` -> ``elites.parquet``: columns as ``jsonl``;
- ``arrow`` -> ``elites.arrow/``: a ``datasets.Dataset.save_to_disk`` folder.

Metadata: ``id``, ``quality``, ``complexity``, ``measures``, ``cell``, ``operator``,
``parent_id``, ``generation``, the descriptors' fields and any further column of the
elites frame, ``labels`` (axis -> label, categorical domains) and ``elite`` (False
for ancestors and other accepted samples). The selection is ``elites`` (one per
archive cell), ``lineage`` (the elites and all their ancestors: every ``parent_id``
resolves) or ``all`` (every accepted sample, seeds included).

The output folder holds ``README.md``, the card (:mod:`qdsearch.export.card`), and
``.qdsearch-export.json``, the list of what was written there
(:mod:`qdsearch.export.writer`): an export never replaces a file it did not write or
another format's file.

A new format is one :func:`register_format` entry in :mod:`qdsearch.export.formats`'
table, or a module of this package that calls it.
"""

from __future__ import annotations

import importlib
import pkgutil

from qdsearch.export.card import CARD, render_card
from qdsearch.export.formats import (
    REGISTRY,
    SELECTIONS,
    Columns,
    ExportError,
    ExportFormat,
    file_name,
    format_rows,
    get_format,
    register_format,
)
from qdsearch.export.records import _record, export_records, load_elites, region_labels
from qdsearch.export.writer import MANIFEST, export_run, exported_files, push_export

# A module of this package that calls register_format is a format: every module is imported.
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

FORMATS: tuple[str, ...] = tuple(REGISTRY)  # the registered formats, in the order the CLI lists them

__all__ = [
    "CARD",
    "FORMATS",
    "MANIFEST",
    "REGISTRY",
    "SELECTIONS",
    "Columns",
    "ExportError",
    "ExportFormat",
    "_record",
    "export_records",
    "export_run",
    "exported_files",
    "file_name",
    "format_rows",
    "get_format",
    "load_elites",
    "push_export",
    "region_labels",
    "register_format",
    "render_card",
]
