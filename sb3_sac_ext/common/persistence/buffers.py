"""
Replay buffers without pickle: every array as a ``.npy`` member (read with ``allow_pickle=False``), the rest of the
buffer's attributes as tagged JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.save_util import load_from_pkl

from sb3_sac_ext.common.errors import CorruptedFileError
from sb3_sac_ext.common.persistence.codec import Decoder, Encoder, dumps, import_path
from sb3_sac_ext.common.persistence.container import (
    ContainerWriter,
    is_our_format,
    open_container,
    refuse_pickle_file,
    write_container,
)
from sb3_sac_ext.common.persistence.files import PathLike, file_name, read_path

_BUFFER_EXCLUDED = ("env", "device")


def save_replay_buffer(buffer: Any, path: PathLike) -> None:
    """
    Save a replay buffer without pickle, atomically: arrays as ``.npy`` members, the rest as tagged JSON.
    ``HerReplayBuffer`` keeps no env reference in the file (set it again on load).

    :param buffer: The replay buffer (any SB3 buffer, or a subclass importable by its module path)
    :param path: File path (``.zip`` is appended when it has no suffix) or a writable binary file
    :raise TypeError: for a buffer class that cannot be re-imported by its module path
    """
    arrays: dict[str, np.ndarray] = {}
    encoder = Encoder(array_sink=arrays, array_min_size=1)
    state = {key: value for key, value in vars(buffer).items() if key not in _BUFFER_EXCLUDED}
    encoded = encoder(state, "replay_buffer")
    cls_path = import_path(type(buffer))
    if cls_path is None:
        raise TypeError(f"{type(buffer)!r} cannot be re-imported by its module path; it cannot be saved as data")

    def fill(writer: ContainerWriter) -> None:
        writer.write("buffer.json", dumps({"class": cls_path, "state": encoded}), compress=True)
        for key, array in arrays.items():
            writer.write(
                f"arrays/{key}.npy",
                lambda f, a=array: np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False),
            )

    write_container(path, "replay_buffer", {"class": cls_path}, fill)


def load_replay_buffer(path: PathLike, device: Any = "cpu", allow_pickle: bool = False) -> Any:
    """
    Read a replay buffer saved by :func:`save_replay_buffer`. An SB3 pickled buffer (``.pkl``) is read
    only with ``allow_pickle=True``.

    :param path: File path (``.zip``, then ``.pkl``, is tried when it does not exist) or a readable binary file
    :param device: Torch device of the samples
    :param allow_pickle: Whether a pickled buffer, or untrusted import paths, may be read
    :return: The replay buffer (without env: set it again for ``HerReplayBuffer``)
    :raise PickleNotAllowedError: for a pickled buffer without ``allow_pickle``
    """
    path = read_path(path, ("zip", "pkl"))
    name = file_name(path)
    if is_our_format(path) is not True:
        refuse_pickle_file(path, name, "replay buffer", allow_pickle)
        return load_from_pkl(path)
    container = open_container(path, "replay_buffer", required=("buffer.json",))
    with container.zip:
        desc = container.json("buffer.json")
        if not isinstance(desc, dict) or "class" not in desc or "state" not in desc:
            raise CorruptedFileError(f"{name}: buffer.json lacks 'class' or 'state'")
        decoder = Decoder(f"{name} (buffer.json)", allow_pickle, arrays=lambda key: container.array(f"arrays/{key}.npy"))
        cls = decoder({"::import": desc["class"]}, "class")
        if not (isinstance(cls, type) and issubclass(cls, BaseBuffer)):
            raise CorruptedFileError(f"{name}: {desc['class']!r} is not a replay buffer class")
        buffer = cls.__new__(cls)
        state = decoder(desc["state"], "state")
        if not isinstance(state, dict):
            raise CorruptedFileError(f"{name}: the buffer state is not a JSON object")
        buffer.__dict__.update(state)
    buffer.device = th.device(device) if not isinstance(device, th.device) else device
    return buffer
