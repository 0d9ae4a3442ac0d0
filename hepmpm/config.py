"""Typed configurations read from YAML files.

Every config is a pydantic model with ``extra="forbid"`` and strict types, so a misspelt key or a
value of the wrong type is an error that names the key and the file. A YAML file may start from
another one with ``inherit: NAME`` (a path relative to the file, or a packaged config) and then
only state what differs, which keeps e.g. the ``data`` generator preset a readable list of shifts
with respect to ``sim``. Command-line overrides ``a.b.c=value`` are applied last.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hepmpm.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every hepmpm config: unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def packaged_config_path(*parts: str) -> Path:
    """Path of a config shipped with hepmpm: ``packaged_config_path("generate", "sim.yaml")``."""
    return Path(str(resources.files("hepmpm.configs").joinpath(*parts)))


def packaged_configs(folder: str) -> list[str]:
    """Names of the configs packaged in ``configs/FOLDER`` (``tiny``, ``small``, ...)."""
    return sorted(Path(p).stem for p in Path(packaged_config_path(folder)).glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path, folder: str) -> Path:
    """The YAML file a config argument means: a path, or the name of a packaged config
    (``small`` → ``configs/FOLDER/small.yaml``); a clear error listing the names otherwise."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or "/" in text or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    packaged = packaged_config_path(folder, f"{text}.yaml")
    if not packaged.is_file():
        raise ConfigError(
            f"unknown {folder} config {text!r}; packaged: {', '.join(packaged_configs(folder))}, "
            "or give the path of a .yaml file"
        )
    return packaged


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-3`` and ``3E4`` are numbers, as people
    write them (YAML 1.1, PyYAML's default, needs a dot, ``1.0e-3``, and reads ``1e-3`` as a
    string)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float | int:
    """A YAML float; a whole number written without a dot (``2e4``) is an int, so that it
    fills integer settings (``trainer.max_steps: 2e4``) as people write them."""
    text = loader.construct_scalar(node)
    value = loader.construct_yaml_float(node)
    whole = "." not in text and "e" in text.lower() and value.is_integer()
    return int(value) if whole else value


_Loader.add_constructor("tag:yaml.org,2002:float", _number)


def parse_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML (numbers as YAML 1.2 reads them); a one-line
    :class:`ConfigError` naming ``source``, the line and the column otherwise."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    data = parse_yaml(text, f"config file {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, found {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged over ``base``: mappings key by key (recursively), the rest replaced."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml_with_inheritance(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path``; if it has ``inherit: OTHER``, deep-merge it over OTHER (recursively)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    data = _read_yaml(path)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"config file {path}: key 'inherit' must be a file name")
    parent_path = _inherited_path(path, parent)
    return deep_merge(load_yaml_with_inheritance(parent_path, (*_seen, path)), data)


def _inherited_path(path: Path, parent: str) -> Path:
    """The file ``inherit: PARENT`` of ``path`` means: beside it, else a packaged config
    (``sim.yaml`` when one packaged folder has it, or ``generate/sim.yaml``)."""
    beside = path.parent / parent
    if beside.exists():
        return beside
    root = packaged_config_path()
    candidates = [root / parent] if "/" in parent else sorted(root.glob(f"*/{parent}"))
    found = [c for c in candidates if c.is_file()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        options = ", ".join(str(c.relative_to(root)) for c in found)
        raise ConfigError(f"config file {path}: inherit {parent!r} is ambiguous; write one of "
                          f"{options}")  # fmt: skip
    raise ConfigError(
        f"config file {path}: inherited file {parent!r} is neither beside it ({beside}) nor a "
        f"packaged config"
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``3``, ``1e-3``, ``[1, 2]``)."""
    data = copy.deepcopy(data)
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like key.subkey=value")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node[leaf] = parse_yaml(raw_value, f"override {override!r}")
    return data


def _format_validation_error(err: ValidationError, source: str) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif item["type"] == "missing":
            problems.append(f"missing key '{key}'")
        elif not key:
            # A check across keys: its message names them, and its input is the whole config.
            problems.append(str(item.get("ctx", {}).get("error") or item["msg"]))
        else:
            problems.append(f"key '{key}': {item['msg']} (got {item.get('input')!r})")
    return f"{source}: " + "; ".join(problems)


_MISSING = object()  #: a key absent from a config mapping

#: Spellings of earlier versions (dotted key -> the key that replaced it), refused with the
#: new name in every config: one vocabulary, no silent aliases.
RENAMED_KEYS = {
    "optimiser": "optimizer",
    "optimizer.final_lr_fraction": "optimizer.min_lr_ratio",
    "trainer.val_every": "trainer.val_every_steps",
    "trainer.batch_size": "data.batch_size",
}


def _renamed_key(data: dict[str, Any]) -> tuple[str, str] | None:
    """The first (old, new) key pair of :data:`RENAMED_KEYS` that ``data`` still spells the
    old way (``optimiser.final_lr_fraction`` counts under both renames)."""
    for old, new in RENAMED_KEYS.items():
        for spelled in (old, old.replace("optimizer.", "optimiser.")):
            node: Any = data
            for part in spelled.split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is not _MISSING:
                return spelled, new
    return None


def parse_config(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    """Validate ``data`` against ``model``; errors name each bad key and the ``source``."""
    renamed = _renamed_key(data)
    if renamed is not None:
        raise ConfigError(f"{source}: key '{renamed[0]}' was renamed: use '{renamed[1]}' instead")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(model: type[ModelT], path: Path, overrides: list[str] | None = None) -> ModelT:
    """Read a YAML config (with ``inherit``), apply overrides, validate it as ``model``."""
    data = apply_overrides(load_yaml_with_inheritance(Path(path)), overrides or [])
    return parse_config(model, data, f"config {path}")


def resolve_config(
    model: type[ModelT],
    config: str | Path | BaseModel,
    folder: str,
    overrides: list[str] | None = None,
) -> ModelT:
    """The config every library entry point takes, in one of three forms: a packaged name
    (``tiny``, from ``configs/FOLDER``), a YAML path, or an already validated ``model``;
    ``a.b=value`` ``overrides`` applied last and the result validated again."""
    if isinstance(config, BaseModel):
        data = apply_overrides(config.model_dump(), overrides or [])
        return parse_config(model, data, f"{folder} config")
    return load_config(model, resolve_config_path(config, folder), overrides)
