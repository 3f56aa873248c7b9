"""The dataset card (``README.md``) of an export folder, in the Hub's format.

YAML front matter (license, task categories, size, tags and one config per
exported file), then the QDC table, the archive heatmap, the models per role, the
generation config, the seed set and the selection rule. What the archive is over,
who gives quality and the Hub task categories are the domain's words
(:data:`qdsearch.domains.DOMAINS`); the axes are described by the descriptors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qdsearch.descriptors.measures import card_text, label_axes
from qdsearch.domains import domain_words
from qdsearch.export.formats import REGISTRY, get_format
from qdsearch.sources import is_hf
from qdsearch.store import RunStore, atomic_write

__all__ = ["CARD", "heatmap_file", "qdc_results", "render_card"]

CARD = "README.md"
# The fields every record has (the rest, such as topic_region, come from descriptors).
_STANDARD: tuple[str, ...] = (
    "id",
    "instruction",
    "input",
    "output",
    "quality",
    "complexity",
    "measures",
    "cell",
    "operator",
)
_STANDARD += ("parent_id", "generation", "labels", "elite", "conversations", "messages")


def qdc_results(records: list[dict[str, Any]], store: RunStore, embedder: Any) -> dict[str, Any]:
    """QDC figures of the export and of the judged seeds (or an error line)."""
    from qdsearch.measure import measure_dataset

    export = [{**r, "response": r["output"]} for r in records]
    seeds = [
        {k: ev.get(k) for k in ("instruction", "input", "response", "quality", "complexity")}
        for ev in store.events()
        if ev.get("type") == "seed"
    ]
    judged = [s for s in seeds if s["quality"] is not None] or seeds
    try:
        out = {}
        if export:
            out["export"] = measure_dataset(export, embedder)
        if judged:
            out["seeds"] = measure_dataset(judged, embedder)
        return out
    except Exception as e:  # the export is still written without this table
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}


def heatmap_file(
    cfg: Any, frame: pd.DataFrame, folder: Path, manifest: dict[str, Any], regions: Sequence[str] = ()
) -> str:
    """Writes the archive heatmap PNG into ``folder`` (unless the same archive's is
    there already); returns its file name ("" if none could be drawn)."""
    import hashlib

    key = hashlib.sha256(frame[["id", "quality", "cell"]].to_json().encode()).hexdigest()[:16]
    name = manifest.get("heatmap", "")
    if name and manifest.get("heatmap_key") == key and (folder / name).is_file():
        return str(name)
    try:
        from qdsearch.report import heatmaps

        maps = heatmaps(cfg, frame, regions)
    except Exception:  # a card without a picture is still a card
        return ""
    if not maps:
        return ""
    first, data = next(iter(maps.items()))
    atomic_write(folder / f"archive_{first}", data)
    manifest["heatmap_key"] = key
    return f"archive_{first}"


_SELECTION_TEXT = {
    "elites": "the elites: for each archive cell, the accepted sample of highest quality "
    "(MAP-Elites: a newcomer replaces a cell's elite only with a strictly higher quality)",
    "lineage": "the elites and all their ancestors back to the seeds (ancestors have elite = false), "
    "so every parent_id names a record of the file",
    "all": "every accepted sample, seeds included, in the order they were found (elite = true for the current elites)",
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>1T" if n > 10**12 else "10M<n<100M"


def _yaml_list(key: str, items: Iterable[str], indent: str = "") -> list[str]:
    items = list(items)
    if not items:
        return []
    return [f"{indent}{key}:"] + [f"{indent}- {json.dumps(x, ensure_ascii=False)}" for x in items]


def _card_configs(files: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The files the card names as Hub configs, the default first.

    ``datasets`` reads every config of a repository with one builder (inferred from
    the first config), so the configs are the files of one family: the JSON ones
    (jsonl, sharegpt, messages, alpaca) if any, else parquet, else Arrow. They are
    in registration order (:data:`~qdsearch.export.formats.REGISTRY`) (then by name), so the default is the ``jsonl`` file
    when there is one.
    """
    order = list(REGISTRY)

    def family(fmt: str) -> str:
        return REGISTRY[fmt].family if fmt in REGISTRY else "arrow"

    for fam in dict.fromkeys(("json", "parquet", "arrow", *(f.family for f in REGISTRY.values()))):
        chosen = [(n, e) for n, e in files.items() if family(e["format"]) == fam]
        if chosen:
            return sorted(
                chosen, key=lambda ne: (order.index(ne[1]["format"]) if ne[1]["format"] in order else len(order), ne[0])
            )
    return []


def _front_matter(cfg: Any, manifest: Mapping[str, Any]) -> str:
    files = manifest["files"]
    biggest = max((e["records"] for e in files.values()), default=0)
    tags = ["synthetic", "qdsearch", "map-elites", "quality-diversity", *cfg.export.tags]
    lines = ["---", f"license: {json.dumps(cfg.export.license)}", f"pretty_name: {json.dumps(cfg.run.name)}"]
    lines += _yaml_list("language", cfg.export.language)
    lines += _yaml_list("task_categories", domain_words(cfg.domain.kind).task_categories)
    lines += _yaml_list("tags", dict.fromkeys(tags))
    lines += _yaml_list("size_categories", [_size_category(biggest)])
    configs = _card_configs(files)
    if configs:
        lines.append("configs:")
    for i, (name, e) in enumerate(configs):
        lines.append(f"- config_name: {json.dumps(_config_name(name, e['format']))}")
        lines.append("  data_files:")
        lines.append("  - split: train")
        lines.append(f"    path: {json.dumps(get_format(e['format']).data_files(name))}")
        if i == 0:
            lines.append("  default: true")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _config_name(file: str, fmt: str) -> str:
    """The Hub config of an exported file: ``elites.jsonl`` -> ``elites``,
    ``elites.sharegpt.jsonl`` -> ``elites-sharegpt``, ``hq.parquet`` -> ``hq-parquet``."""
    stem = file
    for suffix in dict.fromkeys((get_format(fmt).suffix, Path(file).suffix)):
        if suffix and stem.endswith(suffix) and stem != suffix:
            stem = stem[: -len(suffix)]
            break
    name = stem if fmt == "jsonl" else f"{stem}-{fmt}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or fmt


def _md_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    from qdsearch.measure import METRICS, format_cell

    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for group, items in METRICS.items():
        for key, label, fmt in items:
            cells = " | ".join(format_cell(results[n].get(key), fmt) for n in names)
            lines.append(f"| {group + ': ' if group else ''}{label} | {cells} |")
    return "\n".join(lines)


def _models(store: RunStore, cfg: Any) -> list[str]:
    """``role: model`` lines from the calls in the event log (what was really used)."""
    ops = set(cfg.operators.names)
    roles: dict[str, dict[str, int]] = {}

    def role(tag: str) -> str:
        if tag in ops:
            return "mutation (operators)"
        if tag.startswith("judge"):
            return "judge"
        return {"respond": "response", "target": "target"}.get(tag, tag)

    for ev in store.events():
        for c in ev.get("calls") or []:
            if isinstance(c, dict) and c.get("model"):
                r = roles.setdefault(role(str(c.get("tag", ""))), {})
                r[str(c["model"])] = r.get(str(c["model"]), 0) + 1
    lines = [
        f"- {r}: " + ", ".join(f"`{m}` ({n} calls)" for m, n in sorted(ms.items(), key=lambda kv: -kv[1]))
        for r, ms in sorted(roles.items())
    ]
    emb = cfg.embedding
    name = emb.model or "all-MiniLM-L6-v2"
    lines.append(f"- embeddings (topic axes, novelty): `{name}` ({emb.backend})")
    return lines


def render_card(store: RunStore, info: Mapping[str, Any], manifest: Mapping[str, Any], heatmap: str = "") -> str:
    """The dataset card (``README.md``) of an export folder, in the Hub's format."""
    cfg = store.cfg
    words = domain_words(cfg.domain.kind)
    files = manifest["files"]
    ep, b, a, ops = cfg.endpoint, cfg.budget, cfg.archive, cfg.operators
    out = [_front_matter(cfg, manifest), f"# {cfg.run.name}\n"]
    out.append(
        f"Synthetic data made by [qdsearch](https://pyribs.org) quality-diversity search: a MAP-Elites archive "
        f"{words.card_text}, whose axes are {card_text(cfg)}. Quality and complexity are one "
        "LLM judge's opinion; check samples before training on them.\n"
    )
    configs = _card_configs(files)
    in_configs = {n for n, _ in configs}
    default = _config_name(configs[0][0], configs[0][1]["format"]) if configs else ""
    out.append("## Files\n")
    out.append("| config | file | format | records | selection | min quality |")
    out.append("| --- | --- | --- | ---: | --- | --- |")
    others = []
    for name, e in files.items():
        mq = "" if e.get("min_quality") is None else f">= {e['min_quality']}"
        config = _config_name(name, e["format"]) if name in in_configs else "-"
        out.append(f"| {config} | `{name}` | {e['format']} | {e['records']} | {e['selection']} | {mq} |")
        if name not in in_configs:
            others.append(get_format(e["format"]).load.format(name=name))
    out.append("")
    code = ["```python", "from datasets import load_dataset, load_from_disk"]
    if default:
        code.append(f'ds = load_dataset("ORG/NAME", "{default}", split="train")  # or this folder\'s path')
    code += others
    out.append("\n".join([*code, "```", ""]))
    fields = "id, quality (1-10: " + words.quality_text + "), complexity (1-10), measures, cell, "
    fields += "operator, parent_id, generation"
    derived = dict.fromkeys(k for e in files.values() for k in e.get("fields", ()) if k not in _STANDARD)
    fields += "".join(f", {k}" for k in derived)
    if label_axes(cfg):
        fields += ", labels (axis -> label)"
    fields += ", elite; the text is instruction/input/output (jsonl, alpaca, parquet, arrow), conversations "
    fields += "(sharegpt: human/gpt turns) or messages (user/assistant chat turns)"
    out.append(f"Fields of every format: {fields}.\n")
    out.append("## Elite selection\n")
    for sel in dict.fromkeys(e["selection"] for e in files.values()):
        out.append(f"- `{sel}`: {_SELECTION_TEXT[sel]}.")
    out.append("")
    out.append("## Quality, diversity, complexity\n")
    qdc = manifest.get("qdc")
    if qdc and "error" not in qdc["results"]:
        out.append(f"Measured on `{qdc['file']}` and the judged seeds (`qdsearch measure`):\n")
        out.append(_md_table(qdc["results"]) + "\n")
    else:
        why = f" ({qdc['results']['error']})" if qdc else ""
        out.append(f"Not computed{why}; `qdsearch measure FILE --vs SEEDS` gives it.\n")
    out.append("## Archive\n")
    out.append(
        f"{a.kind} archive, {info['cells']} cells, {info['elites']} elites, coverage {info['coverage']:.3f}, "
        f"QD-score {info['qd_score']:.1f}.\n"
    )
    if heatmap:
        out.append(f"![archive heatmap: best quality per cell]({heatmap})\n")
    out.append("## Models\n")
    out += _models(store, cfg)
    out.append("")
    out.append("## Generation\n")
    seed_set = (cfg.seeds.path if is_hf(cfg.seeds.path) else Path(cfg.seeds.path).name) or "(not recorded)"
    out.append(f"- seed set: `{seed_set}`, {info['seeds']} seeds ({info['seeds_accepted']} judged)")
    out.append(f"- children evaluated: {info['children']}, judged: {info['accepted']}")
    out.append(f"- operators: {', '.join(ops.names)} (selection: {ops.selection})")
    out.append(f"- endpoint: temperature {ep.temperature}, max_tokens {ep.max_tokens}, json_mode {ep.json_mode}")
    out.append(
        (
            f"- archive: {a.kind}, complexity_bins {a.complexity_bins}, {a.topic_regions} topic regions "
            f"(reference {a.topic_reference}); complexity_blend {cfg.judge.complexity_blend}"
            if a.topic_kind == "regions"
            else f"- archive: {a.kind}, complexity_bins {a.complexity_bins}, topic_dims {a.topic_dims}, "
            f"topic_bins {a.topic_bins}"
        )
        + f"; novelty max_similarity {cfg.novelty.max_similarity}"
    )
    out.append(
        f"- budget: max_children {b.max_children}, max_calls {b.max_calls}, max_tokens {b.max_tokens}; "
        f"run seed {cfg.run.seed}"
    )
    out.append(
        f"- spent: {info['calls']} LLM calls, {info['prompt_tokens'] + info['completion_tokens']} tokens, "
        f"${info['cost_usd']:.4f}"
    )
    out.append(f"- judge: complexity {cfg.judge.complexity}, injection {cfg.judge.injection}\n")
    out.append("## License\n")
    out.append(
        f"`{cfg.export.license}` (set by `[export] license` in the campaign config). The texts were written by "
        "the models above; their terms of use may restrict how the data can be used.\n"
    )
    return "\n".join(out)
