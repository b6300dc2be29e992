"""
Reading hyperparameters in RL Zoo's YAML format (``hyperparams/<algo>.yml``), without ``eval``.

RL Zoo stores some values as Python expressions in strings (``policy_kwargs: "dict(net_arch=[64, 64])"``,
``normalize: "{'norm_obs': True}"``). RL Zoo ``eval``s them; here they are parsed with :mod:`ast` and only
literals and an allowlist of names (activation functions, ``dict``) are accepted.
"""

import ast
import importlib
import os
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from sb3_sac_ext.common.errors import InvalidHyperparameterError

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

# Names allowed inside RL Zoo's policy_kwargs strings
_ALLOWED_NAMES: dict[str, Any] = {
    "nn.ReLU": nn.ReLU,
    "nn.Tanh": nn.Tanh,
    "nn.ELU": nn.ELU,
    "nn.LeakyReLU": nn.LeakyReLU,
    "nn.SiLU": nn.SiLU,
    "nn.GELU": nn.GELU,
    "th.nn.ReLU": nn.ReLU,
    "th.nn.Tanh": nn.Tanh,
    "th.nn.ELU": nn.ELU,
    "th.nn.LeakyReLU": nn.LeakyReLU,
    "th.nn.SiLU": nn.SiLU,
    "th.nn.GELU": nn.GELU,
    "True": True,
    "False": False,
    "None": None,
}


def _dotted_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parent = _dotted_name(node.value)
        return None if parent is None else f"{parent}.{node.attr}"
    return None


def _literal(node: ast.AST, source: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(element, source) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        return {_literal(key, source): _literal(value, source) for key, value in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and _dotted_name(node.func) == "dict" and not node.args:
        return {keyword.arg: _literal(keyword.value, source) for keyword in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand, source)
    name = _dotted_name(node)
    if name is not None and name in _ALLOWED_NAMES:
        return _ALLOWED_NAMES[name]
    raise InvalidHyperparameterError(
        f"Cannot parse {source!r}: only literals, dict(...) and activation functions such as nn.ReLU are allowed"
    )


def parse_python_value(text: str) -> Any:
    """
    Parse an RL Zoo string value such as ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` safely.

    :param text: The string
    :return: The value
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise InvalidHyperparameterError(f"Cannot parse {text!r}: {e.msg}") from None
    return _literal(tree.body, text)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """
    :param path: A YAML file in RL Zoo's format
    :return: Its content (env id -> hyperparameters)
    """
    with open(path) as file:
        content = yaml.safe_load(file)
    if not isinstance(content, dict):
        raise InvalidHyperparameterError(f"{path} is not an RL Zoo hyperparameter file (expected a mapping of env ids)")
    return content


def default_hyperparams_file(algo: str) -> Path:
    """:return: The ``<algo>.yml`` file shipped with the package."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def get_hyperparams(algo: str, env_id: str, hyperparams_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """
    The hyperparameters for ``env_id``: its entry, or the ``default`` entry (or ``atari`` for
    ``NoFrameskip`` envs), as RL Zoo picks them. A file with a single entry applies to any env
    (the format ``sb3-sac-ext tune`` writes).

    :param algo: Algorithm key (``sac``, ``discrete_sac``)
    :param env_id: Gymnasium env id
    :param hyperparams_file: YAML file; defaults to the one shipped for ``algo``
    :return: A copy of the entry
    """
    path = Path(hyperparams_file) if hyperparams_file is not None else default_hyperparams_file(algo)
    if not path.is_file():
        raise InvalidHyperparameterError(f"Hyperparameter file {path} does not exist")
    content = load_yaml(path)
    if env_id in content:
        return dict(content[env_id])
    if "NoFrameskip" in env_id and "atari" in content:
        return dict(content["atari"])
    if "default" in content:
        return dict(content["default"])
    if len(content) == 1:
        return dict(next(iter(content.values())))
    raise InvalidHyperparameterError(f"{path} has no entry for {env_id!r} and no 'default' entry")


def normalize_kwargs(value: Any) -> dict[str, Any] | None:
    """RL Zoo's ``normalize`` entry (bool, dict or string) as ``VecNormalize`` keyword arguments, or None."""
    if isinstance(value, str):
        value = parse_python_value(value)
    if value is True:
        return {}
    if not value:
        return None
    if isinstance(value, dict):
        return dict(value)
    raise InvalidHyperparameterError(f"normalize must be a bool or a dict, got {value!r}")


def prepare_model_kwargs(hyperparams: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Split an RL Zoo entry into model constructor arguments and run settings.

    :param hyperparams: The entry (not modified)
    :return: ``(model kwargs, settings)`` where settings holds ``n_timesteps``, ``n_envs``, ``normalize``,
        ``env_wrapper``, ``frame_stack``, ``env_kwargs``, ``callback``
    """
    kwargs = dict(hyperparams)
    settings = {key: kwargs.pop(key) for key in list(kwargs) if key in _RUN_SETTINGS}
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = parse_python_value(kwargs["policy_kwargs"])
    for key in ("replay_buffer_kwargs",):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = parse_python_value(kwargs[key])
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    return kwargs, settings


_RUN_SETTINGS = (
    "n_timesteps",
    "n_envs",
    "normalize",
    "env_wrapper",
    "frame_stack",
    "env_kwargs",
    "callback",
    "vec_env_wrapper",
)


def _import_by_name(dotted: str) -> Any:
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name:
        raise InvalidHyperparameterError(f"env_wrapper {dotted!r} must be a full name such as 'module.Class'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise InvalidHyperparameterError(f"cannot import env_wrapper {dotted!r}: {e}") from None


def get_env_wrapper(spec: Any) -> Any:
    """
    RL Zoo's ``env_wrapper`` entry as one callable ``env -> wrapped env``, or None.

    The entry is a string ``"module.Class"``, or a list of strings and one-key dicts
    ``{"module.Class": {kwarg: value}}``, applied in order (the first wraps the raw env).

    The classes are imported by name, which runs the code of the named modules: this is allowed because
    a hyperparameter file is the user's own configuration (as in RL Zoo). Do not use hyperparameter files
    from untrusted sources.

    :param spec: The ``env_wrapper`` entry (None for no wrapper)
    :return: The wrapping function, or None
    """
    if spec is None:
        return None
    entries = spec if isinstance(spec, list) else [spec]
    wrappers: list[tuple[Any, dict[str, Any]]] = []
    for entry in entries:
        if isinstance(entry, str):
            wrappers.append((_import_by_name(entry), {}))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, kwargs = next(iter(entry.items()))
            if isinstance(kwargs, str):
                kwargs = parse_python_value(kwargs)
            if kwargs is not None and not isinstance(kwargs, dict):
                raise InvalidHyperparameterError(f"env_wrapper {name!r}: keyword arguments must be a mapping, got {kwargs!r}")
            wrappers.append((_import_by_name(name), dict(kwargs or {})))
        else:
            raise InvalidHyperparameterError(
                f"env_wrapper entries must be 'module.Class' or {{'module.Class': {{kwargs}}}}, got {entry!r}"
            )
    return _WrapperChain(wrappers)


class _WrapperChain:
    """Picklable ``env -> wrapped env`` applying RL Zoo's wrappers in order."""

    def __init__(self, wrappers: list[tuple[Any, dict[str, Any]]]):
        self.wrappers = wrappers

    def __call__(self, env: Any) -> Any:
        for wrapper_class, kwargs in self.wrappers:
            env = wrapper_class(env, **kwargs)
        return env


def to_yaml_value(value: Any) -> Any:
    """
    A hyperparameter value as RL Zoo's YAML files store it: activation functions and classes as
    ``"nn.ReLU"`` style names inside ``"dict(...)"`` strings, tuples as lists.

    :param value: A constructor argument
    :return: A value ``yaml.safe_dump`` can write and :func:`prepare_model_kwargs` reads back
    """
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{key}={_python_repr(item)}" for key, item in value.items()) + ")"
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e4:
        return int(value)
    return value


def _python_repr(value: Any) -> str:
    if isinstance(value, type):
        for name, obj in _ALLOWED_NAMES.items():
            if obj is value and name.startswith("nn."):
                return name
        raise InvalidHyperparameterError(f"cannot write {value!r} to a YAML file")
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{key}={_python_repr(item)}" for key, item in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_python_repr(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner},)"
    return repr(value)
