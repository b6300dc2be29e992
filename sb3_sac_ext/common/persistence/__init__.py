"""
Safe persistence and fault tolerance for SAC and DiscreteSAC.

File format (``format_version`` 1), a ``.zip`` container like SB3's, that never needs pickle:

- ``manifest.json``: format name and version, what the file holds (``kind``: model, replay_buffer,
  vec_normalize), the algorithm, library versions, and the sha256 and size of every other member;
- ``data.json``: settings and hyperparameters as tagged JSON (see :class:`Encoder`): spaces as data,
  schedules as ``{"name", "args"}``, classes and functions (policy class, activation functions, replay
  buffer class, ...) as import paths ``"module:qualname"`` that are re-imported on load only from
  :data:`TRUSTED_MODULES`;
- ``tensors.safetensors`` + ``tensors.json``: every tensor (policy weights, every optimizer's state,
  the temperature) in safetensors, and the nesting around them (optimizer ``param_groups``, int keys,
  tuples such as ``betas``) in tagged JSON, so optimizer state dicts round-trip exactly;
- replay buffers and normalisation statistics: one ``.npy`` member per array (read with
  ``allow_pickle=False``) + JSON.

Why safetensors rather than ``torch.load(weights_only=True)``: safetensors has no unpickler at all (a
restricted unpickler is still a parser of a code-carrying format), it is tiny, and it is what the Hub
expects. The nesting it cannot hold goes to JSON.

Schedules: the built-in schedule classes are stored as data. An arbitrary callable (a lambda) cannot be
stored as data: it is stored as a constant schedule with its *current* value and a ``UserWarning`` says
so (refusing would make every SB3-style ``learning_rate=lambda p: ...`` model unsaveable).

Loading refuses pickles by default: a Stable-Baselines3 zip (whose ``data`` always has cloudpickled
``:serialized:`` items) raises :class:`~sb3_sac_ext.common.errors.PickleNotAllowedError` naming those items, and
is loaded through SB3's own path only with ``allow_pickle=True``. Every damaged file raises one typed error
(subclasses of ``ValueError``) naming the file and the problem.

Modules: :mod:`.files` (atomic write, sha256, path suffixes), :mod:`.codec` (tagged JSON, trusted imports, the
space schema), :mod:`.container` (zip container and manifest), :mod:`.models`, :mod:`.buffers`,
:mod:`.vec_normalize`, :mod:`.checkpoints`. Every name is re-exported here: files name classes by their import
path, and ``sb3_sac_ext.common.persistence:<name>`` must keep resolving.
"""

from sb3_sac_ext.common.persistence.buffers import load_replay_buffer, save_replay_buffer
from sb3_sac_ext.common.persistence.checkpoints import (
    CHECKPOINT_META,
    SafeCheckpointCallback,
    get_rng_state,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from sb3_sac_ext.common.persistence.codec import (
    TRUSTED_MODULES,
    Decoder,
    Encoder,
    resolve_import,
    space_from_json,
    space_to_json,
)
from sb3_sac_ext.common.persistence.container import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    Container,
    ContainerWriter,
    is_our_format,
    open_container,
)
from sb3_sac_ext.common.persistence.files import PathLike, atomic_write, read_path, sha256_file
from sb3_sac_ext.common.persistence.models import load_model, read_model_file, read_parameters, save_model
from sb3_sac_ext.common.persistence.vec_normalize import load_vec_normalize, save_vec_normalize

# Kept only for compatibility: these names moved to other modules (old files, pickles and user code name them here)
from sb3_sac_ext.common.validation import check_finite, check_predict_observation, check_transition
from sb3_sac_ext.common.vec_env import SafeSubprocVecEnv

_read_path = read_path
_is_our_format = is_our_format
save_vec_normalize_fn = save_vec_normalize

__all__ = [
    "CHECKPOINT_META",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "TRUSTED_MODULES",
    "Container",
    "ContainerWriter",
    "Decoder",
    "Encoder",
    "PathLike",
    "SafeCheckpointCallback",
    "SafeSubprocVecEnv",
    "atomic_write",
    "check_finite",
    "check_predict_observation",
    "check_transition",
    "get_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "load_replay_buffer",
    "load_vec_normalize",
    "open_container",
    "read_model_file",
    "read_parameters",
    "resolve_import",
    "save_checkpoint",
    "save_model",
    "save_replay_buffer",
    "save_vec_normalize",
    "set_rng_state",
    "sha256_file",
    "space_from_json",
    "space_to_json",
]
