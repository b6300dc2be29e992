"""
Export a trained policy for deployment, as ONNX or TorchScript, with the observation preprocessing included:
``export_policy(model, "actor.onnx")``, the same as ``model.export("actor.onnx")``. See
:mod:`sb3_sac_ext.common.export` for what the exported file takes and returns; the command line is
``sb3-sac-ext export`` (:mod:`sb3_sac_ext.commands.export`).
"""

from typing import Any

from sb3_sac_ext.common import export as _engine
from sb3_sac_ext.common.export import *  # noqa: F403 (this module is the engine's public face)
from sb3_sac_ext.experiment import find_model


def __getattr__(name: str) -> Any:
    # The command line moved above the features it uses: a tombstone with the new place instead of an import upward
    if name == "export_main":
        raise AttributeError("sb3_sac_ext.export.export_main moved to sb3_sac_ext.commands.export.export_main")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_engine.__all__, "find_model"]
