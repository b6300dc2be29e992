import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.sac import policies as sb3_sac_policies

from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.entropy import parse_ent_coef
from sb3_sac_ext.common.soft_algorithm import SoftOffPolicyMixin, is_optimizer_state
from sb3_sac_ext.common.training import TransitionBatch
from sb3_sac_ext.sac import losses
from sb3_sac_ext.common.validation import check_action_space
from sb3_sac_ext.sac.policies import (
    CnnPolicy,
    EnsembleContinuousCritic,
    MlpPolicy,
    MultiInputPolicy,
    SimbaPolicy,
    SimbaV2Policy,
    SACPolicy,
    SquashedGaussianActor,
    convert_sb3_critic_optimizer_state,
)
from sb3_sac_ext.sac.recurrent_policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy

SelfSAC = TypeVar("SelfSAC", bound="SAC")


class CrossQNext(NamedTuple):
    """What CrossQ's critic loss needs of the next state: sampled next actions, their log-probabilities, alpha."""

    actions: th.Tensor
    log_prob: th.Tensor
    ent_coef: th.Tensor


def _cat_obs(obs: Any, next_obs: Any) -> Any:
    """Observations and next observations stacked along the batch (per key for Dict observations)."""
    if isinstance(obs, dict):
        return {key: th.cat([obs[key], next_obs[key]]) for key in obs}
    return th.cat([obs, next_obs])


@contextlib.contextmanager
def _eval_mode(module: th.nn.Module | None) -> Iterator[None]:
    """``module`` in evaluation mode inside the block (nothing when ``None``), its mode restored after."""
    if module is None:
        yield
        return
    training = module.training
    module.train(False)
    try:
        yield
    finally:
        module.train(training)


# Policies of models saved by stable_baselines3.SAC, replaced by ours on load
_SB3_POLICY_MAP: dict[type, type[SACPolicy]] = {
    sb3_sac_policies.SACPolicy: MlpPolicy,
    sb3_sac_policies.CnnPolicy: CnnPolicy,
    sb3_sac_policies.MultiInputPolicy: MultiInputPolicy,
}


class SAC(SoftOffPolicyMixin, OffPolicyAlgorithm):
    """
    Soft Actor-Critic (SAC), a drop-in superset of Stable-Baselines3's ``SAC``.

    Off-Policy Maximum Entropy Deep Reinforcement Learning with a Stochastic Actor.
    Paper: https://arxiv.org/abs/1801.01290, automatic temperature: https://arxiv.org/abs/1812.05905.
    Reference implementations: https://github.com/haarnoja/sac, Stable-Baselines3's ``SAC``.

    The constructor takes every argument of SB3's ``SAC`` with the same names, order and defaults; the
    arguments after ``_init_setup_model`` are new. The critics are evaluated as one batched ensemble and
    the optimizers use fused kernels; learning is the same as SB3's.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, SimbaPolicy, SimbaV2Policy, the LSTM
        policies)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the actor, and of the critic and temperature when
        ``qf_learning_rate`` / ``ent_coef_learning_rate`` are ``None``. A float, a callable of the progress
        remaining (from 1 to 0), an RL Zoo string such as ``"lin_3e-4"`` or a schedule from
        :mod:`sb3_sac_ext.common.schedules`
    :param buffer_size: Size of the replay buffer
    :param learning_starts: How many steps of the model to collect transitions for before learning starts
    :param batch_size: Minibatch size for each gradient update
    :param tau: The soft update coefficient ("Polyak update", in [0, 1]; 0 freezes the target)
    :param gamma: The discount factor, in [0, 1]
    :param train_freq: Update the model every ``train_freq`` steps, or a tuple such as ``(5, "step")``
        or ``(2, "episode")``
    :param gradient_steps: How many gradient steps to do after each rollout (``-1``: as many as env steps collected,
        ``0``: collect without training)
    :param action_noise: The action noise type (None by default)
    :param replay_buffer_class: Replay buffer class to use (for instance ``HerReplayBuffer``)
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation
    :param optimize_memory_usage: Enable a memory efficient variant of the replay buffer
    :param n_steps: n-step returns (SB3's ``NStepReplayBuffer``) when ``n_steps > 1``
    :param ent_coef: Entropy regularization coefficient: a number, ``"auto"`` to learn it,
        or ``"auto_0.1"`` to learn it starting from 0.1
    :param target_update_interval: Update the target network every ``target_update_interval`` gradient steps
        (counted over the whole run)
    :param target_entropy: Target entropy when learning ``ent_coef`` (``"auto"``: ``-dim(action space)``)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: only at rollout start)
    :param use_sde_at_warmup: Whether to use gSDE instead of uniform sampling during the warm up phase
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 none, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param qf_learning_rate: Learning rate (or schedule) of the critics; ``None`` uses ``learning_rate``
    :param ent_coef_learning_rate: Learning rate (or schedule) of the temperature; ``None`` uses ``learning_rate``
    :param max_grad_norm: Clip the gradients of the actor and of the critics by this global norm (``None``: off)
    :param policy_delay: Update the actor and the temperature once every ``policy_delay`` critic updates
    :param objective: ``"maximize"`` (rewards) or ``"minimize"`` (rewards are costs: the critic target uses
        the max over critics and the actor minimises ``Q + alpha * log pi``)
    :param precision: ``"fp32"``, ``"bf16"`` (autocast of the network forward passes; losses, targets,
        temperature and optimizer state stay fp32) or ``"auto"`` (bf16 where the hardware runs it natively:
        AMX or AVX512_BF16 on CPU, compute capability >= 8 on CUDA)
    :param distributed: Data-parallel training on ``torch.distributed`` (see :mod:`sb3_sac_ext.common.distributed`):
        ``"auto"`` turns it on when the process was launched by ``torchrun`` with ``WORLD_SIZE > 1``, ``True``
        requires it (:class:`~sb3_sac_ext.common.errors.DistributedError` when no process group can be formed),
        ``False`` turns it off. Not saved: a loaded model uses ``"auto"``
    :param compile: Run each gradient step as one program compiled by ``torch.compile`` (see
        :mod:`sb3_sac_ext.common.compiled_update`; same learning, faster): ``True``, ``False`` (the eager update) or
        ``"auto"`` (compile when a ``learn()`` call plans at least 5,000 gradient steps, where the one-off
        compilation pays for itself). Settings without a fast path (recurrent policies, gSDE, data-parallel
        training, optimizers other than Adam/AdamW) and machines where compilation fails train eagerly
    :param param_resets: Environment timesteps after which the networks and their optimizer states are
        re-initialised (Nikishin et al. 2022, https://arxiv.org/abs/2205.07802; SBX's ``param_resets``), checked at the
        start of each ``train()`` call; the temperature is kept. ``None``: never
    :param reset_networks: What ``param_resets`` re-initialises: ``None`` (actor and critic, as SBX), or a list of
        ``"actor"`` / ``"critic"`` (the target critic is set equal to the new critic)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
        # SimBa networks (https://arxiv.org/abs/2410.09754), SBX's name
        "SimbaPolicy": SimbaPolicy,
        # SimbaV2 networks (https://arxiv.org/abs/2503.15256)
        "SimbaV2Policy": SimbaV2Policy,
        # Recurrent policies: sequence replay buffer, sequence batches in the training loop
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    policy: SACPolicy
    actor: SquashedGaussianActor
    critic: EnsembleContinuousCritic
    critic_target: EnsembleContinuousCritic

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule | str = 3e-4,
        buffer_size: int = 1_000_000,  # 1e6
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        qf_learning_rate: float | Schedule | str | None = None,
        ent_coef_learning_rate: float | Schedule | str | None = None,
        max_grad_norm: float | None = None,
        policy_delay: int = 1,
        objective: str = "maximize",
        precision: str = "auto",
        distributed: bool | str = "auto",
        compile: bool | str = "auto",
        param_resets: list[int] | None = None,
        reset_networks: list[str] | None = None,
    ):
        self._store_init_params(locals())
        self._check_params(self.get_params())
        parse_ent_coef(ent_coef)  # fail fast, before the env and the networks are built
        # Before SB3's constructor, which asserts finite Box bounds (an AssertionError, skipped under python -O)
        if isinstance(getattr(env, "action_space", None), spaces.Space):
            check_action_space(env.action_space, (spaces.Box,), "SAC")  # type: ignore[union-attr]
        super().__init__(
            policy,
            env,
            learning_rate,  # type: ignore[arg-type]
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            # A copy: SB3 adds keys (use_sde) to the dict it is given, which would leak into the caller's dict
            policy_kwargs=None if policy_kwargs is None else dict(policy_kwargs),
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            # Checked in _setup_model with a typed error (SB3 uses assert, skipped under python -O)
            supported_action_spaces=None,
            support_multi_env=True,
        )
        self._set_shared_hyperparameters()
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # Models saved by stable_baselines3.SAC name SB3's policy classes: use ours (same weights)
        self.policy_class = _SB3_POLICY_MAP.get(self.policy_class, self.policy_class)  # type: ignore[has-type]
        if self.action_space is not None:
            check_action_space(self.action_space, (spaces.Box,), "SAC")
        super()._setup_model()

    def _default_target_entropy(self) -> float:
        # -dim(A), as in SB3 and the SAC paper (https://arxiv.org/abs/1812.05905)
        return -float(np.prod(self.action_space.shape))  # type: ignore[union-attr]

    # The update rule, called by the one training loop (sb3_sac_ext.common.training.train) on a TransitionBatch

    @property
    def _crossq(self) -> bool:
        """Whether the critics use CrossQ's batch renormalisation (``policy_kwargs=dict(batch_norm=True)``)."""
        return bool(getattr(self.critic.qf, "batch_norm", False))

    @property
    def _support(self) -> th.Tensor | None:
        """The values of the categorical critic's bins (``SimbaV2Policy``'s ``num_bins``), ``None`` for Q-heads."""
        return getattr(self.critic, "support", None)

    @property
    def _actor_batch_norm(self) -> bool:
        """Whether the actor has batch renormalisation (``policy_kwargs=dict(batch_norm_actor=True)``)."""
        return getattr(self.policy, "batch_norm_actor", False)

    def _critic_target(self, batch: TransitionBatch, ent_coef: th.Tensor) -> "th.Tensor | CrossQNext":
        """
        Soft Bellman target: next actions from the current policy, pessimistic target critics (no gradient). With
        CrossQ, only the next actions and their log-probabilities: the next Q-values come from the joint forward pass
        of :meth:`_critic_loss`. With SimbaV2's categorical critic (``num_bins``), the target distribution
        ``(batch, num_bins)``.
        """
        # A batch-renormalised actor (batch_norm_actor) uses its running statistics here, as SBX's CrossQ
        with _eval_mode(self.actor if self._actor_batch_norm else None):
            next_actions, next_log_prob = self.actor.action_log_prob(batch.actor_next_obs)
        if self._crossq:
            return CrossQNext(next_actions, next_log_prob, ent_coef)
        support = self._support
        if support is not None:  # SimbaV2's categorical critic: the target is a distribution on its bins
            next_logits_KBN = self.critic_target.q_logits(batch.target_next_obs, next_actions).float()
            return losses.categorical_target(
                next_logits_KBN,
                next_log_prob.float().unsqueeze(-1),
                ent_coef,
                batch.rewards,
                batch.dones,
                batch.discounts,
                support,
                self._minimize,
            )
        next_q_KB1 = self.critic_target.q_values(batch.target_next_obs, next_actions).float()
        next_v_B1 = losses.soft_value(next_q_KB1, next_log_prob.float().unsqueeze(-1), ent_coef, self._minimize)
        return losses.critic_target(batch.rewards, batch.dones, batch.discounts, next_v_B1)

    def _critic_loss(self, batch: TransitionBatch, target_B1: "th.Tensor | CrossQNext") -> th.Tensor:
        if isinstance(target_B1, CrossQNext):
            return self._crossq_critic_loss(batch, target_B1)
        if self._support is not None:  # target_B1: the target distribution (batch, num_bins)
            with self._autocast():
                logits_KBN = self.critic.q_logits(batch.critic_obs, batch.actions).float()
            return losses.categorical_critic_loss(logits_KBN, target_B1)
        with self._autocast():
            q_KB1 = self.critic.q_values(batch.critic_obs, batch.actions).float()
        return losses.critic_loss(q_KB1, target_B1)

    def _crossq_critic_loss(self, batch: TransitionBatch, next_: "CrossQNext") -> th.Tensor:
        """
        CrossQ's critic loss (Bhatt et al. 2024, https://arxiv.org/abs/1902.05605, Section 3): no target network; the
        current ``(s, a)`` and the next ``(s', a')`` go through the online critics in one forward pass, so that the
        batch renormalisation normalises both with the same statistics; the next values carry no gradient.
        """
        with self._autocast():
            q_all_KN1 = self.critic.q_values(
                _cat_obs(batch.critic_obs, batch.target_next_obs), th.cat([batch.actions, next_.actions])
            ).float()
        q_KB1, next_q_KB1 = q_all_KN1.chunk(2, dim=1)
        next_v_B1 = losses.soft_value(
            next_q_KB1.detach(), next_.log_prob.float().unsqueeze(-1), next_.ent_coef, self._minimize
        )
        return losses.critic_loss(q_KB1, losses.critic_target(batch.rewards, batch.dones, batch.discounts, next_v_B1))

    def _actor_loss(self, batch: TransitionBatch, ent_coef: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        :return: The actor loss and ``log pi(a|s)`` of the sampled actions (the temperature loss's input). With CrossQ,
            the critics read their running statistics (evaluation mode), as SBX's CrossQ.
        """
        with self._autocast(), _eval_mode(self.critic.qf if self._crossq else None):
            actions_pi, log_prob = self.actor.action_log_prob(batch.actor_obs)
            # No gradient for the critics' weights: only d(Q)/d(action) is needed
            q_pi_KB1 = self.critic.q_values(batch.critic_obs_for_actor, actions_pi, detach_params=True).float()
        log_prob_B1 = log_prob.float().unsqueeze(-1)
        return losses.actor_loss(q_pi_KB1, log_prob_B1, ent_coef, self._minimize), log_prob_B1

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: th.device | str = "auto") -> None:
        # Parameters saved by stable_baselines3.SAC keep one optimizer state per critic: stack them. A malformed
        # state is left to torch, which raises as it does for SB3 (see SoftOffPolicyMixin.set_parameters)
        if (
            isinstance(load_path_or_dict, dict)
            and is_optimizer_state(load_path_or_dict.get("critic.optimizer"))
            and isinstance(self.critic.qf, EnsembleMLP)  # SB3's layout has MLP critics only
        ):
            load_path_or_dict = dict(load_path_or_dict)
            load_path_or_dict["critic.optimizer"] = convert_sb3_critic_optimizer_state(
                load_path_or_dict["critic.optimizer"],
                self.critic.n_critics,
                len(self.critic.qf.weights),
                n_params=len(self.critic.optimizer.param_groups[0]["params"]),
            )
        if isinstance(load_path_or_dict, dict):
            # Loading an optimizer state also loads its param_groups' implementation flags: SB3's (fused=None)
            # would silently turn our fused Adam into the per-tensor one. Keep this model's implementation.
            load_path_or_dict = dict(load_path_or_dict)
            for name, optimizer in (
                ("actor.optimizer", self.actor.optimizer),
                ("critic.optimizer", self.critic.optimizer),
                ("ent_coef_optimizer", self.ent_coef_optimizer),
            ):
                state = load_path_or_dict.get(name)
                if optimizer is not None and is_optimizer_state(state):
                    flags = {key: optimizer.defaults[key] for key in ("fused", "foreach") if key in optimizer.defaults}
                    groups = [{**group, **flags} for group in state["param_groups"]]
                    load_path_or_dict[name] = {**state, "param_groups": groups}
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)

    def learn(
        self: SelfSAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
