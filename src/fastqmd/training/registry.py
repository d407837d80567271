"""The model kinds `fastqmd train` knows, by the name a config gives in `model.kind`.

    register_kind(name, factory)   factory() -> (ModelKind, its config class, a `TrainerSettings` subclass)
    get_kind(name)                 -> (ModelKind, config class); an unknown name is an InputError naming the known
    load_train_config(path)        -> (ModelKind, validated config) of a YAML training config

`model.kind` absent means "nnh" (every NNH config predates the registry); the NNH config has no `kind` key of its
own, so an explicit `model: {kind: nnh}` is accepted and dropped before validation. Factories import their
modules when called, so the CLI stays light until a kind is used. Built in: nnh (`fastqmd.nnh.train`), bp and
equivariant (energy MLIPs on one `fastqmd.mlip.kind.MLIPKind`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastqmd.errors import InputError

DEFAULT_KIND = "nnh"

_FACTORIES: dict[str, Callable[[], tuple]] = {}


def register_kind(name: str, factory: Callable[[], tuple]) -> None:
    """Make `model.kind: name` train with `factory()` = (ModelKind, config class); replaces an earlier entry."""
    _FACTORIES[name] = factory


def known_kinds() -> list[str]:
    return sorted(_FACTORIES)


def get_kind(name: str) -> tuple:
    """(ModelKind, config class) of `name`; InputError listing the known kinds when there is none."""
    if name not in _FACTORIES:
        raise InputError(f"unknown model kind {name!r} (known: {', '.join(known_kinds())})")
    return _FACTORIES[name]()


def kind_name(data: dict) -> str:
    """`model.kind` of a raw config mapping (default "nnh")."""
    model = data.get("model")
    name = model.get("kind", DEFAULT_KIND) if isinstance(model, dict) else DEFAULT_KIND
    if not isinstance(name, str):
        raise InputError(f"config key 'model.kind' must be a name, got {name!r}")
    return name


def load_train_config(path: str | Path) -> tuple:
    """(ModelKind, config) of the YAML training config at `path`; one-line InputError on any problem."""
    from pydantic import ValidationError

    from fastqmd.config import format_validation_error, read_yaml

    data = read_yaml(path)
    name = kind_name(data)
    kind, config_type = get_kind(name)
    if name == DEFAULT_KIND and isinstance(data.get("model"), dict):
        data = {**data, "model": {k: v for k, v in data["model"].items() if k != "kind"}}
    try:
        return kind, config_type.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{Path(path).name}: {format_validation_error(exc, data)}") from None


def _nnh():
    from fastqmd.nnh.train import NNHKind, TrainConfig

    return NNHKind(), TrainConfig


def _mlip(architecture: str):
    def factory():
        from fastqmd.mlip.kind import MLIPKind, train_config_type

        return MLIPKind(), train_config_type(architecture)

    return factory


register_kind("nnh", _nnh)
register_kind("bp", _mlip("bp"))
register_kind("equivariant", _mlip("equivariant"))
