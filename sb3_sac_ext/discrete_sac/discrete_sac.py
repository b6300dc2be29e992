import math
import numbers
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_sac_ext.common.errors import InvalidHyperparameterError, UnsupportedSpaceError
from sb3_sac_ext.common.soft_algorithm import SoftOffPolicyMixin
from sb3_sac_ext.common.training import TransitionBatch
from sb3_sac_ext.discrete_sac import losses
from sb3_sac_ext.common.validation import check_action_space
from sb3_sac_ext.discrete_sac.policies import (
    CategoricalActor,
    CnnPolicy,
    DiscreteSACPolicy,
    EnsembleDiscreteCritic,
    MlpPolicy,
    MultiInputPolicy,
    SimbaPolicy,
    SimbaV2Policy,
)
from sb3_sac_ext.discrete_sac.recurrent_policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy

SelfDiscreteSAC = TypeVar("SelfDiscreteSAC", bound="DiscreteSAC")


class DiscreteSAC(SoftOffPolicyMixin, OffPolicyAlgorithm):
    """
    Soft Actor-Critic for discrete action spaces.

    Paper: Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings", https://arxiv.org/abs/1910.07207.
    Reference implementation: CleanRL's ``sac_atari.py`` (https://docs.cleanrl.dev/rl-algorithms/sac/).

    The actor outputs the logits of a categorical policy; each of the ``n_critics`` critics outputs ``Q(s, a)``
    for every action. The critic target, the actor loss and the temperature loss use the exact expectation over
    the policy's action probabilities instead of a sampled action (see :func:`soft_state_value`,
    :func:`actor_loss`, :func:`negative_entropy`). Arguments shared with :class:`~sb3_sac_ext.SAC` have the same
    names and meaning.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, SimbaPolicy, SimbaV2Policy, the LSTM
        policies)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the actor, and of the critic and temperature when
        ``qf_learning_rate`` / ``ent_coef_learning_rate`` are ``None``. A float, a callable of the progress
        remaining (from 1 to 0), an RL Zoo string such as ``"lin_3e-4"`` or a schedule from
        :mod:`sb3_sac_ext.common.schedules`
    :param buffer_size: Size of the replay buffer
    :param learning_starts: How many steps of the model to collect transitions for before learning starts
        (actions are uniformly random until then)
    :param batch_size: Minibatch size for each gradient update
    :param tau: The soft update coefficient ("Polyak update", in [0, 1]; 1.0 for hard updates, 0 freezes the target)
    :param gamma: The discount factor, in [0, 1]
    :param train_freq: Update the model every ``train_freq`` steps, or a tuple such as ``(5, "step")``
        or ``(2, "episode")``
    :param gradient_steps: How many gradient steps to do after each rollout (``-1``: as many as env steps collected,
        ``0``: collect without training)
    :param replay_buffer_class: Replay buffer class to use
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation
    :param optimize_memory_usage: Enable a memory efficient variant of the replay buffer
    :param n_steps: n-step returns (SB3's ``NStepReplayBuffer``) when ``n_steps > 1``
    :param ent_coef: Entropy regularization coefficient: a number, ``"auto"`` to learn it,
        or ``"auto_0.1"`` to learn it starting from 0.1
    :param target_update_interval: Update the target network every ``target_update_interval`` gradient steps
        (counted over the whole run; with ``tau=1.0`` this gives DQN-style hard updates)
    :param target_entropy: Target entropy when learning ``ent_coef``, in nats: ``"auto"`` for
        ``target_entropy_scale * log(n_actions)``, or a number
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
        the max over critics and the actor minimises ``E_pi[Q + alpha * log pi]``)
    :param precision: ``"fp32"``, ``"bf16"`` (autocast of the network forward passes; losses, targets,
        temperature and optimizer state stay fp32) or ``"auto"`` (bf16 where the hardware runs it natively)
    :param target_entropy_scale: Fraction of the maximum entropy ``log(n_actions)`` used as target entropy when
        ``target_entropy="auto"``. The default 0.89 is CleanRL's (``sac_atari.py``), found stable over long Atari
        runs; the paper's 0.98 keeps the policy close to uniform. Lower values give a more greedy policy.
    :param distributed: Data-parallel training on ``torch.distributed`` (see :mod:`sb3_sac_ext.common.distributed`):
        ``"auto"`` (on when launched by ``torchrun`` with ``WORLD_SIZE > 1``), ``True`` (required) or ``False``.
        Not saved: a loaded model uses ``"auto"``
    :param compile: Run each gradient step as one compiled program (see :class:`~sb3_sac_ext.sac.SAC`):
        ``True``, ``False`` or ``"auto"``
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
    policy: DiscreteSACPolicy
    actor: CategoricalActor
    critic: EnsembleDiscreteCritic
    critic_target: EnsembleDiscreteCritic

    def __init__(
        self,
        policy: str | type[DiscreteSACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule | str = 3e-4,
        buffer_size: int = 1_000_000,  # 1e6
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
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
        target_entropy_scale: float = 0.89,
        distributed: bool | str = "auto",
        compile: bool | str = "auto",
        param_resets: list[int] | None = None,
        reset_networks: list[str] | None = None,
    ):
        self._store_init_params(locals())
        self._check_params(self.get_params())
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
            action_noise=None,
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
            use_sde=False,
            sde_support=False,
            # Checked in _setup_model with a typed error (SB3 uses assert, skipped under python -O)
            supported_action_spaces=None,
            support_multi_env=True,
        )
        self._set_shared_hyperparameters()
        self.target_entropy_scale = target_entropy_scale
        if _init_setup_model:
            self._setup_model()

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        scale = params["target_entropy_scale"]
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0.0 <= float(scale) <= 1.0:
            raise InvalidHyperparameterError(f"target_entropy_scale must be a number in [0, 1], got {scale!r}")

    def _setup_model(self) -> None:
        if self.action_space is not None:
            check_action_space(self.action_space, (spaces.Discrete,), "DiscreteSAC")
            if int(self.action_space.start) != 0:  # type: ignore[attr-defined]
                # Actions are indices of the logits (as in SB3's DQN): a shifted space would get wrong actions
                raise UnsupportedSpaceError(
                    f"DiscreteSAC needs a Discrete action space starting at 0, got {self.action_space}; "
                    "wrap the env with a gymnasium.ActionWrapper that adds the offset"
                )
        super()._setup_model()

    def _default_target_entropy(self) -> float:
        # target_entropy_scale * log(n_actions): a fraction of the maximum entropy (Christodoulou 2019 uses 0.98)
        return self.target_entropy_scale * math.log(int(self.action_space.n))  # type: ignore[union-attr]

    # The update rule, called by the one training loop (sb3_sac_ext.common.training.train) on a TransitionBatch

    def _critic_target(self, batch: TransitionBatch, ent_coef: th.Tensor) -> th.Tensor:
        """``y = r + gamma (1 - done) pi(s')^T [min_k Q_targ_k(s') - alpha log pi(s')]`` (no gradient)."""
        next_probs_BA, next_log_probs_BA = self.actor.action_probs(batch.actor_next_obs)
        next_q_KBA = self.critic_target.q_values(batch.target_next_obs).float()
        next_v_B = losses.soft_state_value(next_q_KBA, next_probs_BA, next_log_probs_BA, ent_coef, self._minimize)
        return losses.critic_target(batch.rewards, batch.dones, batch.discounts, next_v_B)

    def _critic_loss(self, batch: TransitionBatch, target_B1: th.Tensor) -> th.Tensor:
        with self._autocast():
            q_KBA = self.critic.q_values(batch.critic_obs).float()
        return losses.critic_loss(q_KBA, batch.actions, target_B1)

    def _actor_loss(self, batch: TransitionBatch, ent_coef: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:return: The actor loss and ``sum_a pi(a|s) log pi(a|s)`` (the temperature loss's input)."""
        with self._autocast():
            probs_BA, log_probs_BA = self.actor.action_probs(batch.actor_obs)
            # No gradient for the critics: the actor loss only trains the actor
            with th.no_grad():
                q_pi_KBA = self.critic.q_values(batch.critic_obs_for_actor, detach_params=True).float()
        loss = losses.actor_loss(q_pi_KBA, probs_BA, log_probs_BA, ent_coef, self._minimize)
        return loss, losses.negative_entropy(probs_BA, log_probs_BA)

    def learn(
        self: SelfDiscreteSAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DiscreteSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDiscreteSAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
