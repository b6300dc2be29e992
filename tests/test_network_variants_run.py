"""
Each network variant trains a few hundred steps for SAC and DiscreteSAC, saves and loads exactly, resumes, and exports
(TorchScript and ONNX) with actions equal to ``predict(deterministic=True)``. ``layer_norm`` alone and SimBa's dropout
share their code paths with the variants run here (their units: ``test_network_variants.py``).
"""

from typing import Any

import numpy as np
import pytest
import torch as th

from tests._helpers import MODEL_LIST, assert_state_dicts_equal, sample_observations
from tests.test_network_variants import ort, variant_model

RUN_VARIANTS = ["droq", "simba", "simbav2"]


@pytest.mark.parametrize("variant", RUN_VARIANTS)
@pytest.mark.parametrize("model_class", MODEL_LIST)
def test_trains_saves_and_exports(model_class: type, variant: str, tmp_path: Any) -> None:
    """A few hundred steps; save -> load identical (weights, buffers, optimizer states, actions); resume; export."""
    model = variant_model(model_class, variant)
    model.learn(150)
    assert model._n_updates > 0
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = type(model).load(path, device="cpu")
    assert type(loaded.policy) is type(model.policy)
    assert_state_dicts_equal(model.policy.state_dict(), loaded.policy.state_dict(), "policy")
    for name, optimizer in model.optimizers.items():
        assert_state_dicts_equal(optimizer.state_dict(), loaded.optimizers[name].state_dict(), name)
    obs = sample_observations(model, 7, seed=3)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    # Exported actions equal predict(deterministic=True)
    pt_path = model.export(tmp_path / "policy.pt", verify=False)
    module = th.jit.load(str(pt_path))
    with th.no_grad():
        (action,) = [out.numpy() for out in module(th.as_tensor(obs))]
    np.testing.assert_allclose(action.reshape(expected.shape), expected, atol=1e-5)
    if ort is not None:
        onnx_path = model.export(tmp_path / "policy.onnx", verify=False)
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        (action,) = session.run(None, {"obs": obs})
        np.testing.assert_allclose(action.reshape(expected.shape), expected, atol=1e-5)
    # Training resumes from the loaded file
    loaded.set_env(model.get_env())
    loaded.learn(10, reset_num_timesteps=False)
