"""
``VecNormalize`` statistics and settings without pickle (SB3's ``VecNormalize.save`` pickles the whole wrapper).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_sac_ext.common.errors import CorruptedFileError, ModelFileError
from sb3_sac_ext.common.persistence.codec import Decoder, Encoder, dumps
from sb3_sac_ext.common.persistence.container import is_our_format, open_container, refuse_pickle_file, write_container
from sb3_sac_ext.common.persistence.files import PathLike, file_name, read_path

_VECNORM_SETTINGS = ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys")


def save_vec_normalize(vec_normalize: VecNormalize, path: PathLike) -> None:
    """
    Save the statistics and settings of a ``VecNormalize`` without pickle, atomically.

    :param vec_normalize: The wrapper
    :param path: File path (``.zip`` is appended when it has no suffix) or a writable binary file
    """
    encoder = Encoder(array_sink={}, array_min_size=1 << 62)
    state = {
        "settings": {key: getattr(vec_normalize, key) for key in _VECNORM_SETTINGS if hasattr(vec_normalize, key)},
        "obs_rms": _rms_state(vec_normalize.obs_rms),
        "ret_rms": _rms_state(vec_normalize.ret_rms),
        "returns": vec_normalize.returns,
    }
    encoded = encoder(state, "vec_normalize")
    write_container(path, "vec_normalize", {}, lambda w: w.write("vec_normalize.json", dumps(encoded), compress=True))


def _rms_state(rms: Any) -> Any:
    if isinstance(rms, dict):
        return {key: _rms_state(value) for key, value in rms.items()}
    return {"mean": np.asarray(rms.mean), "var": np.asarray(rms.var), "count": float(rms.count)}


def _set_rms(rms: Any, state: Any, name: str) -> None:
    if isinstance(rms, dict):
        if not isinstance(state, dict) or set(state) != set(rms):
            raise CorruptedFileError(f"{name}: the normalisation statistics do not match the env's observation keys")
        for key in rms:
            _set_rms(rms[key], state[key], name)
        return
    mean, var = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["var"], dtype=np.float64)
    if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
        raise CorruptedFileError(f"{name}: statistics of shape {mean.shape} do not fit the env ({np.shape(rms.mean)})")
    rms.mean, rms.var, rms.count = mean, var, float(state["count"])


def load_vec_normalize(path: PathLike, venv: VecEnv, allow_pickle: bool = False) -> VecNormalize:
    """
    Wrap ``venv`` in a ``VecNormalize`` with the statistics saved by :func:`save_vec_normalize`. A file
    saved by SB3's ``VecNormalize.save`` (a pickle) is read only with ``allow_pickle=True``.

    :param path: File path (``.zip``, then ``.pkl``, is tried when it does not exist) or a readable binary file
    :param venv: The env to wrap (its observation keys and shapes must match the statistics)
    :param allow_pickle: Whether a pickled file may be read
    :return: The ``VecNormalize``
    """
    path = read_path(path, ("zip", "pkl"))
    name = file_name(path)
    if is_our_format(path) is not True:
        refuse_pickle_file(path, name, "VecNormalize", allow_pickle)
        return VecNormalize.load(str(path), venv)
    container = open_container(path, "vec_normalize", required=("vec_normalize.json",))
    with container.zip:
        state = Decoder(f"{name} (vec_normalize.json)")(container.json("vec_normalize.json"))
    try:
        settings = state["settings"]
        vec_normalize = VecNormalize(venv, **settings)
        _set_rms(vec_normalize.obs_rms, state["obs_rms"], name)
        _set_rms(vec_normalize.ret_rms, state["ret_rms"], name)
        returns = np.asarray(state["returns"])
        if returns.shape == vec_normalize.returns.shape:
            vec_normalize.returns = returns
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptedFileError(f"{name}: invalid VecNormalize state ({type(e).__name__}: {e})") from None
    return vec_normalize
