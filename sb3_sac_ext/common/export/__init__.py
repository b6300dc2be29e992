"""
Export a trained policy for deployment, as ONNX or TorchScript, with the observation preprocessing included.

The exported graph takes the observation **as the environment returns it** and returns the action **the
environment receives**, the same as ``model.predict(obs, deterministic=True)`` on a batch::

    raw obs -> [VecNormalize statistics, when passed] -> [HWC -> CHW, when SB3 wrapped the env in VecTransposeImage]
            -> SB3's preprocess_obs (images / 255, one-hot of Discrete / MultiDiscrete, float cast)
            -> actor -> tanh(mean) rescaled to the Box bounds and clipped (SAC) | argmax of the logits (DiscreteSAC)

Image layout: SB3 transposes channel-last image observations to channel-first with ``VecTransposeImage``; the
exported file then takes the **channel-last** images that the env returns. Whether that happened is read from
``model.get_env()`` (or from the shape of ``normalize.observation_space``); for a model loaded without its env,
pass ``channels_last=True`` or ``False``. Without that information the input layout is the model's
``observation_space`` (channel-first for images).

Both formats have a dynamic batch dimension and carry metadata (observation and action spaces, input and
output names, library versions): ONNX as metadata properties, TorchScript as the extra file ``metadata.json``
inside the archive and as a side file ``<path>.json``.

The actor is read through its layers: SB3's SAC ``Actor`` layout (``features_extractor``, ``latent_pi``, ``mu``,
``log_std``) for Box actions, a categorical actor (``features_extractor``, ``logits_net``) for Discrete actions.

Recurrent policies (``MlpLstmPolicy``, ``CnnLstmPolicy``, ``MultiInputLstmPolicy``: an actor with an ``rnn``
:class:`~sb3_sac_ext.common.recurrent.layers.RNNBlock`) export the RNN state as explicit inputs and outputs, one
step per call, as ``model.predict(obs, state, episode_start)`` does::

    inputs:  obs (batch, ...) [or one per Dict key], h (n_layers, batch, hidden), c (LSTM only), episode_start (batch,)
    outputs: action [or mean, log_std | logits], h_out, c_out (LSTM only)

The state of the envs whose ``episode_start`` is 1 is zeroed before the step (float32 0./1.; TorchScript also takes
bool). A GRU has no cell state: its file has no ``c`` input and no ``c_out`` output (``predict`` carries a zero
``c`` for it). The batch dimension (dimension 1 of ``h`` and ``c``) is dynamic.

Why this engine sits in ``common``: it reads any policy of the package through the actors' own layers and methods
(it imports no algorithm), and ``model.export(...)`` is a method of both algorithms, so it must sit below them.
The public import path stays :mod:`sb3_sac_ext.export`; the command line is :mod:`sb3_sac_ext.commands.export`.

Modules: :mod:`.graph` (the torch module that is exported), :mod:`.layout` (spaces and image layout), :mod:`.writers`
(ONNX, TorchScript, metadata), :mod:`.verify` (comparison with the model) and :mod:`.pipeline` (:func:`export_policy`).
"""

from sb3_sac_ext.common.export.graph import (
    ExportedPolicy,
    actor_export_outputs,
    preprocess_for_export,
    recurrent_actor_export_outputs,
    recurrent_actor_rnn,
)
from sb3_sac_ext.common.export.layout import space_to_json, to_model_layout
from sb3_sac_ext.common.export.pipeline import export_policy
from sb3_sac_ext.common.export.verify import ExportVerificationError
from sb3_sac_ext.common.export.writers import (
    FORMATS,
    INSTALL_HINT,
    ExportDependencyError,
    ExportFormatError,
    read_metadata,
    resolve_format,
)

__all__ = [
    "FORMATS",
    "INSTALL_HINT",
    "ExportDependencyError",
    "ExportFormatError",
    "ExportVerificationError",
    "ExportedPolicy",
    "actor_export_outputs",
    "export_policy",
    "preprocess_for_export",
    "read_metadata",
    "recurrent_actor_export_outputs",
    "recurrent_actor_rnn",
    "resolve_format",
    "space_to_json",
    "to_model_layout",
]
