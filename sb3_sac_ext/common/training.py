"""
The one training loop of SAC and DiscreteSAC (feed-forward and recurrent).

Each gradient step: sample a :class:`TransitionBatch` (a feed-forward sample as SB3 gives it, or recurrent sequences
turned into the same per-transition tensors by :meth:`~sb3_sac_ext.common.recurrent.batch.SequenceBatches.transitions`
for the eager update; the compiled one unrolls them inside its program), then call the algorithm's three loss
methods, which apply the pure functions of ``sac/losses.py`` or ``discrete_sac/losses.py``:

- ``_critic_target(batch, ent_coef)``: the soft Bellman target (called without gradient),
- ``_critic_loss(batch, target)``: the critics' regression loss,
- ``_actor_loss(batch, ent_coef)``: the policy loss and the ``log pi`` that feeds the temperature loss,

and step every optimizer through one hook (:meth:`SoftOffPolicyMixin._optimizer_steps`: clipping, non-finite guard,
data-parallel averaging). With ``compile``, the same step (the same three methods, the temperature loss, the
optimizer steps and the Polyak update) runs as one compiled program instead:
:class:`~sb3_sac_ext.common.compiled_update.CompiledUpdate`. The loop has no host synchronisation: statistics stay
tensors until the logger dumps.
"""

from typing import Any, NamedTuple

import torch as th

# Training statistics every algorithm logs (``train/<key>``); batch sources may add their own
LOG_KEYS = ("critic_loss", "actor_loss", "ent_coef", "ent_coef_loss")


class TransitionBatch(NamedTuple):
    """
    One batch of ``B`` transitions, with the input of each network. In a feed-forward batch every network reads the
    observations; in a recurrent batch each network reads its own unrolled latents.
    """

    #: Input of the actor for the actor and temperature losses (with gradient)
    actor_obs: Any
    #: Input of the actor for the next actions of the target (no gradient)
    actor_next_obs: Any
    #: Input of the online critics for the critic loss (with gradient)
    critic_obs: Any
    #: Input of the online critics for the actor loss (no gradient into the critics)
    critic_obs_for_actor: Any
    #: Input of the target critics for the target (no gradient)
    target_next_obs: Any
    #: Actions taken, ``(B, action_dim)`` for Box, ``(B, 1)`` indices for Discrete
    actions: th.Tensor
    #: ``(B, 1)``
    rewards: th.Tensor
    #: Episode ended (not truncated), ``(B, 1)``
    dones: th.Tensor
    #: ``gamma``, or ``gamma ** n`` per transition ``(B, 1)`` for n-step returns
    discounts: th.Tensor | float


class TrainLogs(dict):
    """
    The training statistics of the last ``train()`` call, logger key -> scalar tensor. They stay tensors (no host
    sync) until the logger dumps (:meth:`flush`).
    """

    def record(self, logs: dict[str, list[th.Tensor]]) -> None:
        """:param logs: Logger key -> one scalar tensor per gradient step (their mean is kept)."""
        for key, values in logs.items():
            if values:
                self[key] = values[0].detach() if len(values) == 1 else th.stack(values).mean().detach()

    def flush(self, logger: Any) -> None:
        """Record the latest value of each statistic (with ``policy_delay > 1``, the actor's may be from an earlier call)."""
        for key, value in self.items():
            logger.record(key, float(value))


class FeedForwardBatches:
    """Batches of SB3's replay buffers (``ReplayBuffer``, ``DictReplayBuffer``, n-step, HER) as they are."""

    log_keys: tuple[str, ...] = ()

    def sample(self, model: Any, batch_size: int, update_actor: bool) -> TransitionBatch:
        """
        :param model: The algorithm (its ``replay_buffer``, ``_vec_normalize_env`` and ``gamma``)
        :param batch_size: Number of transitions
        :param update_actor: Whether the actor is updated at this step (unused here)
        :return: The batch
        """
        data = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
        # For n-step replay, the discount is gamma ** n (when the episode did not end before)
        discounts = data.discounts if data.discounts is not None else model.gamma
        obs, next_obs = data.observations, data.next_observations
        return TransitionBatch(obs, next_obs, obs, obs, next_obs, data.actions, data.rewards, data.dones, discounts)

    def transitions(self, model: Any, batch: TransitionBatch, update_actor: bool) -> TransitionBatch:
        """The batch of the eager update: a feed-forward sample as it is."""
        return batch

    def after_step(self, name: str, model: Any, logs: dict[str, list[th.Tensor]]) -> None:
        """Statistics of an optimizer step that only this kind of batch has (none here)."""

    def prefetch(self, model: Any, batch_size: int, n_batches: int) -> "PrefetchedBatches":
        """
        Sample ``n_batches`` batches at once: one call of the replay buffer instead of ``n_batches`` (the same
        distribution: SB3's buffers sample uniformly with replacement). Used by the compiled update only, so that the
        eager update's random stream stays as recorded by the golden runs.

        :return: A batch source whose ``sample`` returns the next one
        """
        return PrefetchedBatches(self.sample(model, batch_size * n_batches, True), batch_size)


class PrefetchedBatches(FeedForwardBatches):
    """Successive ``batch_size`` slices of one large :class:`TransitionBatch`."""

    def __init__(self, batch: TransitionBatch, batch_size: int):
        self._batch, self._batch_size, self._next = batch, batch_size, 0

    def sample(self, model: Any, batch_size: int, update_actor: bool) -> TransitionBatch:
        start, self._next = self._next, self._next + self._batch_size
        # One slice per distinct tensor: fields that share a tensor (observations) keep sharing it
        sliced: dict[int, Any] = {}
        return TransitionBatch(*(_rows(field, start, self._next, sliced) for field in self._batch))


def _rows(value: Any, start: int, stop: int, sliced: dict[int, Any]) -> Any:
    """Rows ``start:stop`` of a tensor, of every tensor of a dict (Dict observations); numbers unchanged."""
    if id(value) not in sliced:
        if isinstance(value, dict):
            sliced[id(value)] = {key: _rows(item, start, stop, sliced) for key, item in value.items()}
        elif isinstance(value, th.Tensor):
            sliced[id(value)] = value[start:stop]
        else:
            return value
    return sliced[id(value)]


def observe_rewards(model: Any, rewards: Any, dones: Any) -> None:
    """
    Add one env step's rewards to the policy's reward scaler (``SimbaV2Policy``'s, see
    :mod:`sb3_sac_ext.common.reward_scaling`), if it has one.
    """
    scaler = getattr(model.policy, "reward_scaler", None)
    if scaler is not None:
        scaler.update(rewards, dones, model.gamma)


def train(model: Any, gradient_steps: int, batch_size: int) -> None:
    """
    ``gradient_steps`` updates of the critics, and of the actor and the temperature every ``policy_delay`` critic
    updates, then a Polyak update of the target critics every ``target_update_interval`` updates. With a reward
    scaler (``SimbaV2Policy``), the rewards of every batch are multiplied by its scale of the moment.

    :param model: The algorithm (``SAC`` or ``DiscreteSAC``)
    :param gradient_steps: Number of gradient steps
    :param batch_size: Transitions per batch
    """
    model.policy.set_training_mode(True)
    model._update_learning_rates()
    batches = model._batches
    logs: dict[str, list[th.Tensor]] = {key: [] for key in (*LOG_KEYS, *batches.log_keys)}
    if gradient_steps > 1 and model._compiled_update is not None and hasattr(batches, "prefetch"):
        # As SBX: one replay sample of gradient_steps * batch_size transitions, then one slice per step
        batches = batches.prefetch(model, batch_size, gradient_steps)
    scaler = getattr(model.policy, "reward_scaler", None)
    reward_scale = None if scaler is None else scaler.scale(model.gamma)

    for gradient_step in range(gradient_steps):
        update_index = model._n_updates + gradient_step
        update_actor = update_index % model.policy_delay == 0
        update_target = (update_index + 1) % model.target_update_interval == 0
        batch = batches.sample(model, batch_size, update_actor)
        if reward_scale is not None:
            batch = batch._replace(rewards=batch.rewards * reward_scale)
        # The fast path: this same step as one compiled program (None when the model trains eagerly)
        step_logs = model._compiled_step(batch, update_actor, update_target)
        if step_logs is not None:
            for key, value in step_logs.items():
                if key.endswith("_grad_norm"):
                    model._train_logs[f"train/{key}"] = value
                else:
                    logs[key].append(value)
            continue
        batch = batches.transitions(model, batch, update_actor)
        if model.use_sde:
            model.actor.reset_noise()
        ent_coef = model.temperature.value

        with th.no_grad(), model._autocast():
            target = model._critic_target(batch, ent_coef)
        critic_loss = model._critic_loss(batch, target)
        model._optimizer_steps([("critic", critic_loss)])
        logs["critic_loss"].append(critic_loss)
        batches.after_step("critic", model, logs)

        if update_actor:
            actor_loss, log_prob = model._actor_loss(batch, ent_coef)
            # The temperature's step comes after the actor's: alpha was read before both, so the order changes
            # nothing, and the two share one gradient all-reduce in data-parallel training
            steps = [("actor", actor_loss)]
            ent_coef_loss = model.temperature.loss(log_prob)
            if ent_coef_loss is not None:
                steps.append(("ent_coef", ent_coef_loss))
                logs["ent_coef_loss"].append(ent_coef_loss)
            model._optimizer_steps(steps)
            logs["actor_loss"].append(actor_loss)
            batches.after_step("actor", model, logs)
        logs["ent_coef"].append(ent_coef)

        if update_target:
            model._update_target()

    model._n_updates += gradient_steps
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    if reward_scale is not None:
        model.logger.record("train/reward_scale", reward_scale)
    model._record_train_logs({f"train/{key}": values for key, values in logs.items()})
