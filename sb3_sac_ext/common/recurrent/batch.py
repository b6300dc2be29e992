"""
The batch adapter of recurrent policies: sequences of :class:`~sb3_sac_ext.common.recurrent.buffers.RecurrentReplayBuffer`
turned into the per-transition :class:`~sb3_sac_ext.common.training.TransitionBatch` of the one training loop.

Each network (actor, critic, target critic) is unrolled once over ``[obs[t0], next_obs[t0..t0+T)]`` from a zero
state; the current (step ``k``) and next (step ``k + 1``) latents of each transition are read from that one unroll,
and only the masked steps (not burn-in, not padding) are kept. The losses then see ``B`` transitions whose inputs are
latents instead of observations. The eager update does this outside the losses (:meth:`SequenceBatches.transitions`);
the compiled update inside its program (:func:`fixed_length`, :func:`masked_latents`), where the unroll is part of the
function whose gradient is taken.
"""

from typing import Any, NamedTuple

import torch as th

from sb3_sac_ext.common.recurrent.policies import unroll_current_next
from sb3_sac_ext.common.training import TransitionBatch


def rnn_grad_norm(network: Any) -> th.Tensor | None:
    """Global norm of the gradients of ``network.rnn`` (after clipping), ``None`` when it has none."""
    grads = [p.grad for p in network.rnn.parameters() if p.grad is not None]
    if not grads:
        return None
    return th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))


class SequenceBatch(NamedTuple):
    """
    Sampled sequences before any unroll: what :meth:`SequenceBatches.sample` returns. The eager update turns it into a
    :class:`TransitionBatch` (:meth:`SequenceBatches.transitions`); the compiled update unrolls inside its program
    (:func:`masked_latents`), where the gradient reaches the RNN weights.
    """

    #: ``(N, T + 1, ...)`` observations (or a dict of such)
    observations: Any
    #: ``(N, T)`` bool, the transitions that enter the losses
    mask: th.Tensor
    #: ``(B,)`` positions of the ``True`` entries of ``mask.flatten()``, in order (``None`` until
    #: :func:`fixed_length` sets it)
    index: th.Tensor | None
    #: ``(B, ...)`` of the kept transitions
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    discounts: float


def fixed_length(batch: SequenceBatch, length: int) -> SequenceBatch:
    """
    The same batch over ``length`` steps (the compiled program's static shape): the sequences are padded by repeating
    their last observation (the RNN being causal, the kept steps' latents do not change) and the index of the kept
    transitions is computed (on the host: their number varies between batches).
    """
    mask = batch.mask
    pad = length - mask.shape[1]
    if pad > 0:
        mask = th.nn.functional.pad(mask, (0, pad))

        def padded(obs: th.Tensor) -> th.Tensor:
            return th.cat([obs, obs[:, -1:].expand(-1, pad, *obs.shape[2:])], dim=1)

        obs = batch.observations
        observations = {k: padded(v) for k, v in obs.items()} if isinstance(obs, dict) else padded(obs)
        batch = batch._replace(observations=observations)
    return batch._replace(mask=mask, index=mask.flatten().nonzero().squeeze(1))


def masked_latents(network: Any, batch: SequenceBatch) -> tuple[th.Tensor, th.Tensor]:
    """:func:`unroll_current_next` with the index of :func:`fixed_length` instead of the boolean mask."""
    latent_NTH, _ = network.unroll(batch.observations)
    hidden = latent_NTH.shape[-1]
    current_BH = latent_NTH[:, :-1].reshape(-1, hidden).index_select(0, batch.index)
    return current_BH, latent_NTH[:, 1:].reshape(-1, hidden).index_select(0, batch.index)


class SequenceBatches:
    """Recurrent batches: one unroll per network, then the masked transitions (see the module docstring)."""

    log_keys = ("actor_rnn_grad_norm", "critic_rnn_grad_norm")

    def sample(self, model: Any, batch_size: int, update_actor: bool) -> SequenceBatch:
        """
        :param model: The algorithm
        :param batch_size: Number of transitions (masked steps) in the batch
        :param update_actor: Whether the actor is updated at this step (unused here)
        :return: The sequences
        """
        data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
        mask = data.mask
        return SequenceBatch(
            data.observations,
            mask,
            None,
            data.actions[mask],
            data.rewards[mask].unsqueeze(-1),
            data.dones[mask].unsqueeze(-1),
            model.gamma,
        )

    def transitions(self, model: Any, batch: SequenceBatch, update_actor: bool) -> TransitionBatch:
        """
        :param model: The algorithm
        :param batch: Sequences of :meth:`sample`
        :param update_actor: Whether the actor is updated at this step: its unroll then keeps its graph
        :return: The batch of the eager update
        """
        data, mask = batch, batch.mask
        with model._autocast(), th.set_grad_enabled(update_actor):
            actor_now_BH, actor_next_BH = unroll_current_next(model.actor, data.observations, mask)
        with th.no_grad(), model._autocast():
            _, target_next_BH = unroll_current_next(model.critic_target, data.observations, mask)
        with model._autocast():
            critic_now_BH, _ = unroll_current_next(model.critic, data.observations, mask)
        return TransitionBatch(
            actor_obs=actor_now_BH,
            actor_next_obs=actor_next_BH.detach(),
            critic_obs=critic_now_BH,
            # d(Q)/d(action) only in the actor loss: no gradient into the critic's RNN
            critic_obs_for_actor=critic_now_BH.detach(),
            target_next_obs=target_next_BH,
            actions=batch.actions,
            rewards=batch.rewards,
            dones=batch.dones,
            discounts=batch.discounts,
        )

    def after_step(self, name: str, model: Any, logs: dict[str, list[th.Tensor]]) -> None:
        """Log the gradient norm of the stepped network's RNN (unless it is the actor's, shared)."""
        network = model.actor if name == "actor" else model.critic
        if not getattr(network, "shares_rnn", False):
            norm = rnn_grad_norm(network)
            if norm is not None:
                logs[f"{name}_rnn_grad_norm"].append(norm.detach())
