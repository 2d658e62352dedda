"""Named parameter sets: ``paper`` (complete), and ``laptop`` / ``smoke`` (overrides of it).

``smartmtl preset NAME`` writes the merged, validated set to params.yaml, after which
``dvc repro`` or ``dvc exp run`` runs at that scale.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from smartmtl.config import ConfigError, parse_params

PRESET_DIR = Path(__file__).parent / "presets"
BASE = "paper"


def available() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def render(name: str) -> dict:
    """The full parameter set of a preset, validated."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(available())}")
    values = yaml.safe_load((PRESET_DIR / f"{BASE}.yaml").read_text())
    if name != BASE:
        values = _merge(values, yaml.safe_load(path.read_text()))
    parse_params(values, f"preset {name}")
    return values


def header(name: str) -> str:
    return (f"# Written by `smartmtl preset {name}`: edit freely, or switch scale with\n"
            f"# `smartmtl preset {{{','.join(available())}}}`. Every key is explained in README.md.\n")


def write(name: str, destination: Path = Path("params.yaml")) -> None:
    text = header(name) + yaml.safe_dump(render(name), sort_keys=False, default_flow_style=False)
    destination.write_text(text)
