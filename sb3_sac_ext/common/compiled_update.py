"""
The fast path of the one update: the same losses in one program without autograd tape or optimizer objects, compiled
by ``torch.compile(fullgraph=True)`` into one graph per kind of step.

The eager path (:func:`sb3_sac_ext.common.training.train` with ``compile=False``) backpropagates each loss and steps
torch optimizers. Here, one gradient step of :func:`~sb3_sac_ext.common.training.train` is one call of
:meth:`CompiledUpdate.step`, which runs, as one compiled program:

- the algorithm's own ``_critic_target``, ``_critic_loss`` and ``_actor_loss`` (the math is written once, in
  ``sac/losses.py`` and ``discrete_sac/losses.py``) and :func:`~sb3_sac_ext.common.entropy.temperature_loss`;
- their gradients with ``torch.func.grad``, the trained parameters being swapped into the networks by
  ``torch.func.functional_call`` (no ``.backward()``, which would split the graph);
- Adam/AdamW (:func:`adam_step`) as tensor ops on the torch optimizers' own state (``exp_avg``, ``exp_avg_sq``,
  ``step``): saving, loading and the eager path see one optimizer state;
- the running statistics that a loss updates (SimBa's observation normalisation, CrossQ's batch renormalisation):
  staged inside the differentiated function, written right after it (:mod:`~sb3_sac_ext.common.running_stats`);
- clipping by ``max_grad_norm``, the non-finite guard (an update whose loss or gradient norm is NaN/inf changes no
  weight and no optimizer state, as fused Adam's ``found_inf`` does in the eager path) and the Polyak update.

Recurrent policies (:class:`~sb3_sac_ext.common.recurrent.batch.SequenceBatch`): each loss unrolls its network
inside the differentiated function (the gradient reaches the RNN weights), the RNNs running as cell loops
(:meth:`~sb3_sac_ext.common.recurrent.layers.RNNBlock.unrolled`: the fused LSTM/GRU kernel's backward cannot be
traced), over sequences padded to ``burn_in + sequence_length`` steps, the kept transitions read by an index whose
length (varying between batches) is the program's one dynamic dimension.

Learning is the same as the eager path's up to float rounding (tested in ``tests/test_compiled_update.py``); random
numbers come from inductor's generator instead of the eager one. When a setting has no fast path
(:func:`unsupported_reason`) or compilation fails (no C++ compiler, an op dynamo cannot trace), training stays eager,
with one warning when the user asked for ``compile=True`` or when compilation failed.
"""

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from torch import nn
from torch.func import functional_call, grad

from sb3_sac_ext.common.ensemble import EnsembleMLP
from sb3_sac_ext.common.entropy import temperature_loss
from sb3_sac_ext.common.recurrent.batch import fixed_length, masked_latents
from sb3_sac_ext.common.recurrent.layers import RNNBlock
from sb3_sac_ext.common.running_stats import Stage

# The values of the ``compile`` argument
COMPILE_MODES = (True, False, "auto")
# compile="auto" compiles when a learn() call plans at least this many gradient steps: compilation (30-60 s on a
# slow CPU core) then costs less than the time the fast update saves
AUTO_COMPILE_MIN_UPDATES = 5_000
# The same for recurrent policies: their program (every RNN step unrolled, forward and backward) compiles in 3-3.5
# minutes on a slow CPU core and saves about 7 ms per update (MlpLstmPolicy, LSTM 64, sequence_length 16, burn_in 8;
# benchmarks/compiled_ab.py)
AUTO_COMPILE_MIN_UPDATES_RECURRENT = 30_000
# Optimizers whose update rule adam_step implements
_ADAM_CLASSES = (th.optim.Adam, th.optim.AdamW)
# The networks the losses read, by attribute of the algorithm
_NETWORKS = ("actor", "critic", "critic_target")


def check_compile_arg(value: Any) -> None:
    """
    :param value: The ``compile`` argument
    :raise InvalidHyperparameterError: When it is not ``True``, ``False`` or ``"auto"``
    """
    from sb3_sac_ext.common.errors import InvalidHyperparameterError

    if not any(value is mode or (isinstance(mode, str) and value == mode) for mode in COMPILE_MODES):
        raise InvalidHyperparameterError(f"compile must be True, False or 'auto', got {value!r}")


def unsupported_reason(model: Any) -> str | None:
    """
    :param model: The algorithm
    :return: Why this model's update has no compiled fast path, or ``None`` when it has one
    """
    if model._is_recurrent:
        if model.replay_buffer is not None and model.replay_buffer.sequence_length is None:
            return "whole-episode sequences (sequence_length=None: their length varies without bound)"
        if getattr(model.critic, "shares_rnn", False):
            return "shared_lstm=True (the critics read the actor's RNN without gradient)"
    if model.use_sde:
        return "gSDE (use_sde=True)"
    if model._distributed is not None:
        return "data-parallel training (the gradient all-reduce runs between the backward pass and the step)"
    for name, optimizer in model.optimizers.items():
        if type(optimizer) not in _ADAM_CLASSES:
            return f"the {name} optimizer {type(optimizer).__name__} (the fast path implements Adam and AdamW)"
        for group in optimizer.param_groups:
            if group.get("amsgrad") or group.get("differentiable"):
                return f"the {name} optimizer's amsgrad/differentiable options"
            if isinstance(group["lr"], th.Tensor) or isinstance(group["betas"][0], th.Tensor):
                return f"the {name} optimizer's tensor learning rate or betas"
    if model.device.type == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        return "no C++ compiler on this machine (torch.compile's CPU backend needs one, e.g. gcc)"
    return None


class _Networks(nn.Module):
    """
    The algorithm's networks under one module, so that ``functional_call`` can swap any of their parameters while an
    algorithm method (``_critic_loss`` etc.) runs. The algorithm itself is not registered as a submodule.
    """

    def __init__(self, model: Any):
        super().__init__()
        self._model = [model]
        for name in _NETWORKS:
            setattr(self, name, getattr(model, name))

    def forward(self, method: str | Callable, *args: Any) -> Any:
        return (method if callable(method) else getattr(self._model[0], method))(*args)


class _AdamHyperparameters:
    """The constant part of an Adam/AdamW parameter group (the learning rate is a tensor input)."""

    def __init__(self, optimizer: th.optim.Optimizer):
        group = optimizer.param_groups[0]
        self.beta1, self.beta2 = (float(beta) for beta in group["betas"])
        self.eps = float(group["eps"])
        self.weight_decay = float(group["weight_decay"])
        self.decoupled = isinstance(optimizer, th.optim.AdamW) or bool(group.get("decoupled_weight_decay", False))
        self.maximize = bool(group.get("maximize", False))


def adam_step(
    params: list[th.Tensor],
    grads: list[th.Tensor],
    states: list[dict[str, th.Tensor]],
    coefficients: th.Tensor,
    hp: _AdamHyperparameters,
    ok: th.Tensor,
) -> None:
    """
    One Adam (AdamW when ``hp.decoupled``) step in place, PyTorch's update rule (Kingma & Ba 2015, Algorithm 1 with
    bias correction), skipped exactly when ``ok`` is false: no parameter or state changes, as fused Adam with
    ``found_inf`` set.

    :param params: Parameters, updated in place
    :param grads: Their gradients
    :param states: ``optimizer.state[p]`` of each parameter (``step``, ``exp_avg``, ``exp_avg_sq``)
    :param coefficients: ``[lr, lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t)]`` for this step ``t``
        (:meth:`CompiledUpdate._coefficients`): computed outside the program, so that the compiled kernels do not
        recompute the powers for every element
    :param hp: Betas, eps, weight decay
    :param ok: 0-d bool tensor, false when the loss or gradient was not finite
    """
    okf = ok.to(th.float32)
    lr, step_size, inv_bc2_sqrt = coefficients[0], coefficients[1] * okf, coefficients[2]
    for param, grad_, state in zip(params, grads, states):
        g = -grad_ if hp.maximize else grad_
        state["step"].add_(okf)
        if hp.weight_decay != 0.0:
            if hp.decoupled:
                param.mul_(1 - lr * hp.weight_decay * okf)
            else:
                g = g + hp.weight_decay * param
        # A skipped step adds nothing to the moments (and a NaN gradient must not reach them)
        g = th.where(ok, g, 0.0)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.add_((g - exp_avg) * ((1 - hp.beta1) * okf))
        exp_avg_sq.mul_(1 - (1 - hp.beta2) * okf).addcmul_(g, g, value=1 - hp.beta2)
        param.sub_(step_size * exp_avg / (exp_avg_sq.sqrt() * inv_bc2_sqrt + hp.eps))


def _clip(grads: list[th.Tensor], max_norm: float) -> tuple[list[th.Tensor], th.Tensor]:
    """``clip_grad_norm_``'s rule: scale by ``max_norm / (norm + 1e-6)`` when that is below 1."""
    norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [g * scale for g in grads], norm


class CompiledUpdate:
    """
    One gradient step of SAC or DiscreteSAC as one compiled program (see the module docstring).

    :param model: The algorithm; its networks, optimizers, temperature and hyperparameters are read at each call
    :param trainable: Names (in :class:`_Networks`) of the parameters each optimizer steps, by optimizer name
    :param compiler: Turns the program into its fast version (``torch.compile`` by default; the identity runs the same
        program eagerly, which the tests use)
    """

    def __init__(self, model: Any, trainable: dict[str, list[str]], compiler: Callable | None = None):
        self.model = model
        self.networks = _Networks(model)
        self.trainable = trainable
        named = dict(self.networks.named_parameters(remove_duplicate=False))
        if model.temperature.log_ent_coef is not None:
            named["log_ent_coef"] = model.temperature.log_ent_coef
        self.params = {name: {key: named[key] for key in keys} for name, keys in trainable.items()}
        self.names = tuple(model._optimizer_stepper.names)
        self.hyperparameters = {name: _AdamHyperparameters(opt) for name, opt in model.optimizers.items()}
        self.coefficients = {name: th.zeros(3, device=model.device) for name in model.optimizers}
        self._recurrent = bool(model._is_recurrent)
        if self._recurrent:
            # The fixed length of the unrolled sequences (burn-in included): shorter batches are padded to it
            buffer = model.replay_buffer
            self._sequence_steps = buffer.burn_in + buffer.sequence_length
        if compiler is None:
            # Recurrent: the number of kept transitions varies between batches (marked dynamic in step)
            self._program = _default_compiler(self._update, dynamic=None if self._recurrent else False)
        else:
            self._program = compiler(self._update)
        #: Steps run so far (the first one compiles)
        self.calls = 0
        #: Seconds the first step took (compilation included)
        self.compile_seconds: float | None = None

    @classmethod
    def build(cls, model: Any, batch: Any, compiler: Callable | None = None) -> "CompiledUpdate":
        """
        Find which parameters of each optimizer the losses train (an eager forward and backward pass on ``batch``,
        nothing stepped: an optimizer skips a parameter without gradient, so the program must too), create the
        optimizer states that do not exist yet, and build the program.

        :param model: The algorithm
        :param batch: A batch of the run
        :param compiler: See the class
        """
        names = {id(p): key for key, p in _Networks(model).named_parameters(remove_duplicate=False)}
        ent_coef = model.temperature.value
        batch = model._batches.transitions(model, batch, True)
        # The probe draws random actions: the run's random stream must not depend on whether it compiles
        # (and the running statistics it would update are staged, then dropped)
        with th.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []), Stage():
            with th.no_grad(), model._autocast():
                target = model._critic_target(batch, ent_coef)
            losses = {"critic": model._critic_loss(batch, target), "actor": model._actor_loss(batch, ent_coef)[0]}
        trainable: dict[str, list[str]] = {}
        for name, optimizer in model.optimizers.items():
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if name == "ent_coef":
                used = params
            else:
                grads = th.autograd.grad(losses[name], params, allow_unused=True, retain_graph=True)
                used = [p for p, g in zip(params, grads) if g is not None]
            trainable[name] = [names[id(p)] if name != "ent_coef" else "log_ent_coef" for p in used]
            for p in used:
                _init_adam_state(optimizer, p)
        update = cls(model, trainable, compiler)
        update._set_layout(feature_major=True)
        return update

    def close(self) -> None:
        """Give the networks back to the eager update (after a failed compilation)."""
        self._set_layout(feature_major=False)

    def _set_layout(self, feature_major: bool) -> None:
        for module in self.networks.modules():
            if isinstance(module, EnsembleMLP):
                module.feature_major = feature_major

    def step(
        self, batch: Any, update_actor: bool, update_target: bool, guard: tuple[th.Tensor, th.Tensor]
    ) -> dict[str, th.Tensor]:
        """
        One gradient step.

        :param batch: The :class:`~sb3_sac_ext.common.training.TransitionBatch`
        :param update_actor: Whether the actor and the temperature are updated at this step (``policy_delay``)
        :param update_target: Whether the target critics are updated at this step (``target_update_interval``)
        :param guard: The non-finite guard's ``(flag, where)`` tensors (see
            :class:`~sb3_sac_ext.common.optim.OptimizerStep`), updated in place
        :return: This step's statistics (``critic_loss``, ``ent_coef``, and when the actor is updated ``actor_loss``
            and ``ent_coef_loss``; ``<name>_grad_norm`` with ``max_grad_norm``), as tensors
        """
        model = self.model
        states = {name: [model.optimizers[name].state[p] for p in params.values()] for name, params in self.params.items()}
        for name, optimizer in model.optimizers.items():
            if states[name]:
                self._coefficients(name, optimizer.param_groups[0]["lr"], states[name][0]["step"])
        if self._recurrent:
            batch = fixed_length(batch, self._sequence_steps)
            # The number of kept transitions varies between batches: one program for all of them
            for tensor in (batch.index, batch.actions, batch.rewards, batch.dones):
                th._dynamo.maybe_mark_dynamic(tensor, 0)
        start = time.perf_counter()
        with th.no_grad(), _cell_loops(self.networks):
            logs = self._program(self.params, states, self.coefficients, batch, guard, update_actor, update_target)
        if self.calls == 0:
            self.compile_seconds = time.perf_counter() - start
            if model.verbose >= 1:
                print(f"Compiled the update in {self.compile_seconds:.1f} s (compile=False turns compilation off)")
        self.calls += 1
        return logs

    def _coefficients(self, name: str, lr: float, step: th.Tensor) -> None:
        """
        Fill ``self.coefficients[name]`` for the next Adam step ``t = step + 1``: ``[lr, lr / (1 - beta1^t),
        1 / sqrt(1 - beta2^t)]``. If that step is skipped (non-finite guard), ``step`` does not advance and the next
        call computes the same ``t`` again. A CPU step is read directly; elsewhere tensor ops avoid a host sync.
        """
        hp = self.hyperparameters[name]
        out = self.coefficients[name]
        if step.device.type == "cpu":
            t = float(step) + 1.0
            out.copy_(th.tensor([lr, lr / (1 - hp.beta1**t), (1 - hp.beta2**t) ** -0.5]))
        else:
            t = step.to(out.device) + 1.0
            out[0].fill_(lr)
            out[1].copy_(lr / (1 - hp.beta1**t))
            out[2].copy_((1 - hp.beta2**t).rsqrt())

    # The program: everything below runs inside torch.compile

    def _update(
        self,
        params: dict[str, dict[str, th.Tensor]],
        states: dict[str, list[dict[str, th.Tensor]]],
        coefficients: dict[str, th.Tensor],
        batch: Any,
        guard: tuple[th.Tensor, th.Tensor],
        update_actor: bool,
        update_target: bool,
    ) -> dict[str, th.Tensor]:
        model, networks = self.model, self.networks
        logs: dict[str, th.Tensor] = {}
        temperature = model.temperature
        log_ent_coef = temperature.log_ent_coef
        ent_coef = log_ent_coef.detach().exp() if log_ent_coef is not None else temperature.ent_coef_tensor
        sequences = batch if self._recurrent else None
        if sequences is not None:
            # Recurrent: each loss unrolls its network inside the differentiated function (see _transitions)
            batch = _transitions(model, sequences, target_next=True)
        with model._autocast():
            target = model._critic_target(batch, ent_coef)

        # The running statistics (batch renormalisation, observation normalisation) that a differentiated loss updates
        # come out with its gradient and are written after it (see running_stats)
        stage = Stage()

        def critic_loss(p: dict[str, th.Tensor]) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor, list[th.Tensor]]]:
            with stage:
                if sequences is None:
                    loss = functional_call(networks, p, ("_critic_loss", batch, target), strict=False)
                    # (the second output, the critics' latents of a recurrent batch, is unused: a None fails dynamo)
                    return loss, (loss, loss, stage.values)

                def loss_of_sequences() -> tuple[th.Tensor, th.Tensor]:
                    transitions = _transitions(model, sequences, critic=True)
                    return model._critic_loss(transitions, target), transitions.critic_obs

                loss, critic_latents = functional_call(networks, p, (loss_of_sequences,), strict=False)
                return loss, (loss, critic_latents, stage.values)

        grads, (logs["critic_loss"], critic_latents, statistics) = grad(critic_loss, has_aux=True)(params["critic"])
        stage.commit(statistics)
        self._apply("critic", params, grads, states, coefficients, logs, guard)

        if update_actor:

            def actor_loss(p: dict[str, th.Tensor]) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor, list[th.Tensor]]]:
                with stage:
                    if sequences is None:
                        loss, log_prob = functional_call(networks, p, ("_actor_loss", batch, ent_coef), strict=False)
                    else:
                        # As the eager update: the critics read the latents of their unroll before their step
                        loss, log_prob = functional_call(
                            networks, p, (_recurrent_actor_loss, model, sequences, critic_latents, ent_coef), strict=False
                        )
                    return loss, (loss, log_prob, stage.values)

            grads, (logs["actor_loss"], log_prob, statistics) = grad(actor_loss, has_aux=True)(params["actor"])
            stage.commit(statistics)
            # As in the eager path, the temperature's step shares the actor's guard decision
            ok = self._apply("actor", params, grads, states, coefficients, logs, guard)
            if log_ent_coef is not None:
                target_entropy = temperature.target_entropy

                def ent_coef_loss(value: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
                    loss = temperature_loss(value, log_prob, target_entropy)
                    return loss, loss

                gradient, logs["ent_coef_loss"] = grad(ent_coef_loss, has_aux=True)(log_ent_coef)
                self._apply("ent_coef", params, {"log_ent_coef": gradient}, states, coefficients, logs, guard, ok)
        logs["ent_coef"] = ent_coef

        if update_target:
            model._update_target()
        return logs

    def _apply(
        self,
        name: str,
        params: dict[str, dict[str, th.Tensor]],
        grads: dict[str, th.Tensor],
        states: dict[str, list[dict[str, th.Tensor]]],
        coefficients: dict[str, th.Tensor],
        logs: dict[str, th.Tensor],
        guard: tuple[th.Tensor, th.Tensor],
        ok: th.Tensor | None = None,
    ) -> th.Tensor:
        """
        Clip, guard and step one optimizer (its loss is ``logs[name + "_loss"]``; the gradient norm before clipping
        goes to ``logs[name + "_grad_norm"]``).

        :return: Whether the step was applied (0-d bool)
        """
        flag, where = guard
        keys = list(params[name])
        grad_list = [grads[key] for key in keys]
        checked = [logs[f"{name}_loss"]]
        max_grad_norm = self.model.max_grad_norm
        if max_grad_norm is not None and name != "ent_coef":
            grad_list, logs[f"{name}_grad_norm"] = _clip(grad_list, max_grad_norm)
            checked.append(logs[f"{name}_grad_norm"])
        if self._recurrent and name != "ent_coef":
            # As SequenceBatches.after_step: the norm of the RNN's gradient after clipping
            rnn = [g for key, g in zip(keys, grad_list) if key.startswith(f"{name}.rnn.")]
            if rnn:
                logs[f"{name}_rnn_grad_norm"] = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g) for g in rnn]))
        # A reduction: computed once into a buffer, not again inside every element's update
        bad = ~th.isfinite(th.stack(checked)).all()
        # The first offending network is recorded without a host sync, as OptimizerStep does
        where.copy_(th.where((flag == 0) & bad, self.names.index(name), where))
        th.maximum(flag, bad.to(flag.dtype), out=flag)
        applied = flag == 0
        if ok is not None:
            applied = applied & ok
        param_list = [params[name][key] for key in keys]
        adam_step(param_list, grad_list, states[name], coefficients[name], self.hyperparameters[name], applied)
        return applied


@contextlib.contextmanager
def _cell_loops(networks: nn.Module) -> Iterator[None]:
    """The RNNs run as cell loops (:meth:`RNNBlock.unrolled`) in the program only: acting keeps the fused kernels."""
    rnns = [module for module in networks.modules() if isinstance(module, RNNBlock)]
    for rnn in rnns:
        rnn.cell_loop = True
    try:
        yield
    finally:
        for rnn in rnns:
            rnn.cell_loop = False


def _transitions(model: Any, sequences: Any, target_next: bool = False, critic: bool = False) -> Any:
    """
    The :class:`~sb3_sac_ext.common.training.TransitionBatch` fields that one loss reads, unrolled from the sequences
    (the other inputs are ``None``): the next latents of the actor and the target critics (``target_next``, no
    gradient), or the current latents of the critics (``critic``, differentiated with their loss).
    """
    from sb3_sac_ext.common.training import TransitionBatch

    actor_next = target_next_obs = critic_obs = None
    with model._autocast():
        if target_next:
            actor_next = masked_latents(model.actor, sequences)[1]
            target_next_obs = masked_latents(model.critic_target, sequences)[1]
        if critic:
            critic_obs = masked_latents(model.critic, sequences)[0]
    return TransitionBatch(
        actor_obs=None,
        actor_next_obs=actor_next,
        critic_obs=critic_obs,
        critic_obs_for_actor=None,
        target_next_obs=target_next_obs,
        actions=sequences.actions,
        rewards=sequences.rewards,
        dones=sequences.dones,
        discounts=sequences.discounts,
    )


def _recurrent_actor_loss(model: Any, sequences: Any, critic_latents: th.Tensor, ent_coef: th.Tensor) -> Any:
    """The actor loss on the actor's latents, unrolled here (with gradient), and the critics' latents given."""
    with model._autocast():
        actor_obs = masked_latents(model.actor, sequences)[0]
    transitions = _transitions(model, sequences)._replace(actor_obs=actor_obs, critic_obs_for_actor=critic_latents)
    return model._actor_loss(transitions, ent_coef)


def _default_compiler(fn: Callable, dynamic: bool | None = False) -> Callable:
    # cpp_wrapper: the compiled graph calls its kernels from C++ instead of Python (measured +5% updates/s on CPU).
    # allow_rnn: dynamo refuses any access to an nn.LSTM/nn.GRU by default; the program reads their weights only (the
    # recurrent networks run RNNBlock.unrolled there), so this program alone lifts the ban
    compiled = th.compile(fn, fullgraph=True, dynamic=dynamic, options={"cpp_wrapper": True})
    return th._dynamo.config.patch(allow_rnn=True)(compiled)


def _init_adam_state(optimizer: th.optim.Optimizer, param: th.Tensor) -> None:
    """Create a parameter's Adam state as torch does at its first step, when it does not exist yet."""
    state = optimizer.state[param]
    if len(state) == 0:
        fused = bool(optimizer.defaults.get("fused"))
        state["step"] = th.zeros((), dtype=th.float32, device=param.device if fused else "cpu")
        state["exp_avg"] = th.zeros_like(param, memory_format=th.preserve_format)
        state["exp_avg_sq"] = th.zeros_like(param, memory_format=th.preserve_format)


def warn_eager(reason: str) -> None:
    """The one warning of a model that trains eagerly although compilation was asked for (or failed)."""
    warnings.warn(f"The compiled update is not used ({reason}); training with the eager update", stacklevel=3)


def compiled_step(model: Any, batch: Any, update_actor: bool, update_target: bool) -> dict[str, th.Tensor] | None:
    """
    One gradient step of ``model`` on the fast path, its :class:`CompiledUpdate` built at the first step that uses it.

    ``compile=True`` always uses it; ``"auto"`` once a ``learn()`` call plans at least ``AUTO_COMPILE_MIN_UPDATES``
    (recurrent policies: ``AUTO_COMPILE_MIN_UPDATES_RECURRENT``) gradient steps (or that many were done), where
    compilation pays for itself; ``False`` never (also after
    ``set_params(compile=False)``). Settings without a fast path, and a failed compilation, train eagerly (with one
    warning, except for an unsupported setting under ``"auto"``).

    :return: The step's statistics, or ``None`` when the caller must run the eager step
    """
    update = model._compiled_update
    if update is not None and model.compile is False:
        update.close()
        model._compiled_update = update = None
    if update is None:
        if model._eager_only or not _wants_compiled_update(model):
            return None
        update = model._compiled_update = CompiledUpdate.build(model, batch)
    guard = model._optimizer_stepper._flags(model.device, model._n_updates)
    try:
        return update.step(batch, update_actor, update_target, guard)
    except Exception as e:
        if update.calls > 0:
            raise
        # The first call compiles: it failed before running anything, the eager step runs instead
        update.close()
        model._compiled_update, model._eager_only = None, True
        warn_eager(f"compilation failed with {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
        return None


def _wants_compiled_update(model: Any) -> bool:
    mode = model.compile
    threshold = AUTO_COMPILE_MIN_UPDATES_RECURRENT if model._is_recurrent else AUTO_COMPILE_MIN_UPDATES
    if mode is False or (mode == "auto" and max(model._planned_updates, model._n_updates) < threshold):
        return False
    reason = unsupported_reason(model)
    if reason is not None:
        model._eager_only = True
        if mode is True:
            warn_eager(f"no fast path for {reason}")
        return False
    return True


def estimate_updates(model: Any, total_timesteps: int) -> int:
    """
    :param model: The algorithm (``train_freq`` already converted)
    :param total_timesteps: The env step count ``learn()`` runs until
    :return: About how many gradient steps learning until then will do (for ``compile="auto"``)
    """
    env_steps = total_timesteps - max(model.num_timesteps, model.learning_starts)
    per_step = model.train_freq.unit == TrainFrequencyUnit.STEP
    frequency = model.train_freq.frequency if per_step else 1
    per_round = model.gradient_steps if model.gradient_steps >= 0 else frequency * model.n_envs
    return max(env_steps, 0) * per_round // max(frequency, 1)
