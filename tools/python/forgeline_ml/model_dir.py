"""Writing a forgeline model directory (``model.yml`` format 1, see operators/inference/README.md)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import Any

import yaml

from . import MODEL_FORMAT


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def created_timestamp(explicit: str | None) -> str:
    """RFC 3339 UTC creation time: ``explicit`` if given, else ``SOURCE_DATE_EPOCH`` (for
    reproducible builds), else now."""
    if explicit:
        return explicit
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        _dt.datetime.fromtimestamp(int(epoch), tz=_dt.timezone.utc)
        if epoch and epoch.isdigit()
        else _dt.datetime.now(tz=_dt.timezone.utc).replace(microsecond=0)
    )
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def variant_entry(out_dir: Path, file_name: str) -> dict[str, Any]:
    """``{file, sha256, size}`` of one model file in ``out_dir``."""
    path = out_dir / file_name
    return {"file": file_name, "sha256": sha256_of(path), "size": path.stat().st_size}


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays to plain Python so YAML stays readable."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for lists of scalars (feature names, mean, std)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def write_model_yml(out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``model.yml`` with ``format`` first; ``meta`` must already hold every section."""
    doc = {"format": MODEL_FORMAT, **_plain(meta)}
    path = out_dir / "model.yml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("# forgeline model directory, format 1 (operators/inference/README.md). Generated; do not edit.\n")
        yaml.dump(doc, handle, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return path
