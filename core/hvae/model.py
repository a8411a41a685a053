"""MusicVAE: an encoder, a decoder and a loss from the registry, trained as the reference trains it.

Shapes: B batch, T steps, D output depth, Z latent size, R the loss's raw size.

    model = build_model(ModelConfig(z_size=256), converter)     # refuses a loss that does not fit
    out = model(batch, step)                                     # out.loss, out.r_loss, out.kl_bits, ...
    optimizer = make_optimizer(model, model.config)
    schedule = make_lr_schedule(optimizer, model.config)
    out.loss.backward(); clip_gradients(model, model.config); optimizer.step(); schedule.step()
    samples = model.sample(8, temperature=0.5)                   # (8, T, D)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import torch
from torch import nn

from hvae import arguments
from hvae.errors import HvaeError
from hvae.interfaces import Converter, Decoder, Encoder, Loss, check_compatible
from hvae.plugins import Registry, registry

LN2 = math.log(2.0)
SAMPLING_SCHEDULES = ("constant", "exponential", "inverse_sigmoid")
# The loss used for an output kind when neither the config nor the decoder names one.
DEFAULT_LOSSES = {"onehot": "categorical", "groove": "groove", "multihot": "bernoulli",
                  "onehot-parts": "multi-categorical"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model and its optimisation, with the reference's defaults."""

    encoder: str = "bidirectional"  # registered encoder name
    encoder_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the encoder's Options fields
    decoder: str = "flat"  # registered decoder name
    decoder_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the decoder's Options fields
    loss: str | None = None  # registered loss name; None: the decoder's default, else the output kind's
    loss_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the loss's Options fields
    z_size: int = 32  # latent size
    dropout: float | None = None  # set: the encoder's and decoder's dropout (1 - the reference's keep prob)
    free_bits: float = 0.0  # KL below this many bits per sequence is free
    max_beta: float = 1.0  # KL weight once annealed
    beta_rate: float = 0.0  # KL annealing: beta = (1 - beta_rate^step) * max_beta; 0 is no annealing
    learning_rate: float = 1e-3  # initial Adam learning rate
    decay_rate: float = 0.9999  # learning rate decay per step
    min_learning_rate: float = 1e-5  # learning rate floor
    grad_clip: float = 1.0  # global-norm gradient clip
    grad_norm_clip_to_zero: float = 10000.0  # a global norm at or above this zeroes the step's gradients
    sampling_schedule: str = "constant"  # scheduled sampling: constant, exponential or inverse_sigmoid
    sampling_rate: float = 0.0  # its rate: the probability, the decay base, or the inverse-sigmoid k

    def __post_init__(self) -> None:
        for name in ("encoder", "decoder", "loss", "sampling_schedule"):
            value = getattr(self, name)
            if not (isinstance(value, str) or (value is None and name == "loss")):
                raise HvaeError(f"Model option {name} must be a name, got {value!r}.")
        for name in ("encoder_options", "decoder_options", "loss_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise HvaeError(f"Model option {name} must be a mapping of options, got {getattr(self, name)!r}.")
        if not _is_int(self.z_size) or not 1 <= self.z_size <= MAX_Z_SIZE:
            raise HvaeError(f"Model option z_size must be a whole number from 1 to {MAX_Z_SIZE}, got {self.z_size!r}.")
        for name, low, high, open_low in FLOAT_RANGES:
            value = getattr(self, name)
            if value is None and name == "dropout":
                continue
            if not _is_number(value) or not math.isfinite(value) or value < low or (open_low and value == low) \
                    or value > high:
                bounds = f"{'above' if open_low else 'at least'} {low:g}" + (f" and at most {high:g}"
                                                                            if math.isfinite(high) else "")
                raise HvaeError(f"Model option {name} must be a finite number {bounds}, got {value!r}.")


MAX_Z_SIZE = 65536  # latent sizes beyond this are typing mistakes (the reference's largest is 512)
# (field, lowest, highest, lowest excluded) of ModelConfig's numbers
FLOAT_RANGES = (("dropout", 0.0, 1.0, False), ("free_bits", 0.0, math.inf, False), ("max_beta", 0.0, math.inf, False),
                ("beta_rate", 0.0, 1.0, False), ("learning_rate", 0.0, math.inf, True), ("decay_rate", 0.0, 1.0, True),
                ("min_learning_rate", 0.0, math.inf, False), ("grad_clip", 0.0, math.inf, True),
                ("grad_norm_clip_to_zero", 0.0, math.inf, True), ("sampling_rate", 0.0, math.inf, False))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its converter."""

    converter: str  # registered converter name (for messages and checkpoints)
    output_kind: str  # one of hvae.interfaces.OUTPUT_KINDS
    input_depth: int  # encoder input size per step (without controls)
    output_depth: int  # D
    control_depth: int  # C, 0 without controls
    steps: int  # T
    parts: tuple[tuple[str, int], ...] = ()  # "onehot-parts" outputs: (name, depth) of each part, in order
    padded_rows: bool = False  # rows of all zeros pad the windows: left out of the loss and metrics

    def __post_init__(self) -> None:  # JSON gives lists: keep parts hashable and comparable
        object.__setattr__(self, "parts", tuple((str(name), int(depth)) for name, depth in self.parts))

    @classmethod
    def of(cls, source: "Converter | DataSpec") -> "DataSpec":
        if isinstance(source, DataSpec):
            return source
        return cls(converter=getattr(source, "name", type(source).__name__), output_kind=source.output_kind,
                   input_depth=source.input_depth, output_depth=source.output_depth,
                   control_depth=source.control_depth, steps=source.steps,
                   parts=getattr(source, "parts", ()), padded_rows=getattr(source, "padded_rows", False))


@dataclasses.dataclass
class Batch:
    """A batch of examples as tensors; ``controls`` is None without controls."""

    inputs: torch.Tensor  # (B, T, input_depth)
    outputs: torch.Tensor  # (B, T, D)
    lengths: torch.Tensor  # (B,) int64
    controls: torch.Tensor | None = None  # (B, T, C)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return Batch(move(self.inputs), move(self.outputs), move(self.lengths), move(self.controls))


@dataclasses.dataclass
class ModelOutput:
    """One forward pass. Scalars are 0-dim tensors on the model's device (no host sync)."""

    loss: torch.Tensor  # mean r_loss + beta * mean kl_loss: what to minimise
    r_loss: torch.Tensor  # reconstruction loss summed over steps, mean over the batch
    kl_loss: torch.Tensor  # max(KL - free_bits * ln 2, 0), mean over the batch
    kl: torch.Tensor  # KL(q(z|x) || N(0, I)) in nats, mean over the batch
    kl_bits: torch.Tensor  # the same in bits
    beta: float  # KL weight at this step
    sampling_probability: float  # scheduled sampling probability at this step
    metrics: dict[str, torch.Tensor]  # the loss's metrics (accuracy, or hit/velocity/offset figures)
    raw: torch.Tensor  # (B, T, R) decoder outputs
    mu: torch.Tensor  # (B, Z)
    sigma: torch.Tensor  # (B, Z)


def beta_at(step: int, cfg: ModelConfig) -> float:
    """KL weight: ``(1 - beta_rate^step) * max_beta``."""
    return (1.0 - cfg.beta_rate ** step) * cfg.max_beta


def learning_rate_at(step: int, cfg: ModelConfig) -> float:
    """``(learning_rate - min_learning_rate) * decay_rate^step + min_learning_rate``."""
    return (cfg.learning_rate - cfg.min_learning_rate) * cfg.decay_rate ** step + cfg.min_learning_rate


def _check_sampling(cfg: ModelConfig) -> None:
    schedule, rate = cfg.sampling_schedule, cfg.sampling_rate
    if schedule not in SAMPLING_SCHEDULES:
        raise HvaeError(f"Unknown sampling_schedule {schedule!r}. Valid: {', '.join(SAMPLING_SCHEDULES)}.")
    if schedule == "constant" and not 0.0 <= rate <= 1.0:
        raise HvaeError(f"A constant sampling_rate is a probability in [0, 1], got {rate}.")
    if schedule == "exponential" and not 0.0 < rate < 1.0:
        raise HvaeError(f"An exponential sampling_rate is a decay base in (0, 1), got {rate}.")
    if schedule == "inverse_sigmoid" and rate < 1.0:
        raise HvaeError(f"An inverse_sigmoid sampling_rate is at least 1, got {rate}.")


def uses_scheduled_sampling(cfg: ModelConfig) -> bool:
    return not (cfg.sampling_schedule == "constant" and cfg.sampling_rate == 0.0)


def sampling_probability_at(step: int, cfg: ModelConfig, training: bool = True) -> float:
    """Probability of feeding the model its own draw instead of the target, as the reference.

    constant: ``rate``; exponential: ``1 - rate^step``; inverse_sigmoid: ``1 - k / (k + exp(step / k))``.
    Out of training, a model trained with scheduled sampling is fed its own draws (probability 1).
    """
    if not uses_scheduled_sampling(cfg):
        return 0.0
    if not training:
        return 1.0
    rate = cfg.sampling_rate
    if cfg.sampling_schedule == "constant":
        return rate
    if cfg.sampling_schedule == "exponential":
        return 1.0 - rate ** step
    return 1.0 - rate / (rate + math.exp(min(step / rate, 700.0)))


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma²) || N(0, I)) in nats, summed over z: ``(B, Z) -> (B,)``."""
    return 0.5 * (sigma.square() + mu.square() - 1.0 - 2.0 * torch.log(sigma)).sum(dim=-1)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, T)`` float mask, 1.0 on each sequence's first ``length`` steps."""
    return (torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)).float()


def valid_steps(spec: DataSpec, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` float mask of the steps the loss and metrics count: each sequence's first ``length`` steps,
    less the padding rows (all zeros) where the converter pads its windows, as the reference's per-segment
    lengths do."""
    mask = step_mask(lengths, targets.shape[1])
    return mask * (targets != 0).any(dim=-1) if spec.padded_rows else mask


class MusicVAE(nn.Module):
    """Encoder, decoder and loss; ``config``, ``spec`` and ``forced`` rebuild it (see ``to_dict``)."""

    def __init__(self, config: ModelConfig, spec: DataSpec, encoder: Encoder, decoder: Decoder,
                 loss: Loss, forced: bool = False):
        super().__init__()
        self.config, self.spec, self.forced = config, spec, forced
        self.encoder, self.decoder, self.loss = encoder, decoder, loss

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' float type: data is cast to it (float32; float64 for a reference run)."""
        return next(self.parameters()).dtype

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able) that :func:`model_from_dict` rebuilds the same architecture from."""
        return {"config": dataclasses.asdict(self.config), "spec": dataclasses.asdict(self.spec),
                "forced": self.forced}

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor,
               controls: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)``, each ``(B, Z)``; controls are concatenated to the inputs, as the reference."""
        inputs = inputs.to(self.dtype)
        if controls is not None:
            inputs = torch.cat([inputs, controls.to(self.dtype)], dim=-1)
        return self.encoder(inputs, lengths)

    def forward(self, batch: Batch, step: int = 0, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> ModelOutput:
        """Loss and its parts for ``batch`` at global step ``step`` (which sets beta and scheduled sampling).

        ``noise`` ``(B, Z)`` is the standard normal draw that samples z from q(z|x); None draws it here.
        """
        cfg = self.config
        targets = batch.outputs[:, :self.spec.steps].to(self.dtype)  # (B, T, D)
        steps = targets.shape[1]
        controls = None if batch.controls is None else batch.controls[:, :steps].to(self.dtype)
        lengths = batch.lengths.to(targets.device).clamp(max=steps)  # (B,)
        mu, sigma = self.encode(batch.inputs[:, :steps], lengths, controls)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + sigma * noise.to(mu.dtype)  # (B, Z)
        probability = sampling_probability_at(step, cfg, self.training)
        raw = self.decoder(z, targets, lengths, controls, sampling_probability=probability,
                           loss=self.loss, generator=generator)  # (B, T, R)
        r_loss, metrics = self.loss(raw, targets, valid_steps(self.spec, targets, lengths))  # (B,)
        exact = torch.promote_types(mu.dtype, torch.float32)  # float32 at least (mu is bfloat16 under autocast)
        kl = kl_divergence(mu.to(exact), sigma.to(exact))  # (B,)
        kl_cost = torch.clamp(kl - cfg.free_bits * LN2, min=0.0)  # (B,)
        beta = beta_at(step, cfg)
        return ModelOutput(loss=r_loss.mean() + beta * kl_cost.mean(), r_loss=r_loss.mean(),
                           kl_loss=kl_cost.mean(), kl=kl.mean(), kl_bits=kl.mean() / LN2, beta=beta,
                           sampling_probability=probability, metrics=metrics, raw=raw, mu=mu, sigma=sigma)

    def _controls_for(self, controls: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if controls is None:
            return None
        controls = controls.to(self.device, self.dtype)
        return controls.unsqueeze(0).expand(n, -1, -1) if controls.dim() == 2 else controls

    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 1.0, controls: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Free-running outputs ``(B, T, D)`` from z ``(B, Z)``; controls ``(T, C)`` or ``(B, T, C)``. Temperature 0
        decodes greedily; :class:`~hvae.errors.InvalidArgument` for one that is not a finite number at least 0."""
        temperature = arguments.temperature(temperature)
        z = z.to(self.device, self.dtype)
        return self.decoder.sample(z, self.spec.steps, temperature, self.loss,
                                   self._controls_for(controls, z.shape[0]), generator)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, z: torch.Tensor | None = None,
               controls: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences ``(n, T, D)`` from z ~ N(0, I) (or the given z ``(n, Z)``)."""
        n = arguments.count(n, "The number of samples")
        if z is None:
            z = torch.randn((n, self.config.z_size), generator=generator, device=self.device)
        elif z.shape[0] != n:
            raise HvaeError(f"z holds {z.shape[0]} latent vectors; {n} samples were asked for.")
        return self.decode(z, temperature, controls, generator)

    @torch.no_grad()
    def reconstruct(self, inputs: torch.Tensor, lengths: torch.Tensor, controls: torch.Tensor | None = None,
                    temperature: float = 0.0, use_mean: bool = True,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode, then decode free-running from mu (or a draw of z): ``(B, T, D)``.

        Temperature 0 (the default) draws greedily: the most likely class, a hit where p > 0.5.
        Call ``model.eval()`` first: in training mode the encoder applies dropout.
        """
        inputs = inputs.to(self.device)
        lengths = lengths.to(self.device)
        controls = None if controls is None else controls.to(self.device)
        mu, sigma = self.encode(inputs, lengths, controls)
        z = mu
        if not use_mean:
            z = mu + sigma * torch.randn(mu.shape, generator=generator, device=mu.device)
        return self.decode(z, temperature, controls, generator)


def _with_dropout(cls: type, options: Mapping[str, Any], dropout: float | None) -> dict[str, Any]:
    options = dict(options)
    if dropout is not None and any(f.name == "dropout" for f in dataclasses.fields(cls.Options)):
        options["dropout"] = dropout
    return options


def _with_parts(cls: type, options: Mapping[str, Any], spec: DataSpec) -> dict[str, Any]:
    """``options`` with the converter's parts filled in where the component's Options have the fields and
    were given none: ``output_depths`` (each part's depth) and ``part_names`` (each part's name; filled
    only where the depths are the parts' own)."""
    options, known = dict(options), getattr(cls, "Options", None)
    fields = {f.name for f in dataclasses.fields(known)} if dataclasses.is_dataclass(known) else set()
    if not spec.parts or "output_depths" not in fields:
        return options
    depths, names = tuple(d for _, d in spec.parts), tuple(n for n, _ in spec.parts)
    if not options.get("output_depths"):
        options["output_depths"] = depths
    if "part_names" in fields and not options.get("part_names") and \
            tuple(int(d) for d in options["output_depths"]) == depths:
        options["part_names"] = names
    return options


def _resolve_loss(config: ModelConfig, decoder_cls: type, spec: DataSpec, reg: Registry) -> str:
    if config.loss is not None:
        return config.loss
    preferred = getattr(decoder_cls, "default_loss", None)
    if preferred and spec.output_kind in reg.get("losses", preferred).factory.accepts:
        return preferred
    return DEFAULT_LOSSES.get(spec.output_kind, "categorical")


def build_model(config: ModelConfig, data: Converter | DataSpec, force: bool = False) -> MusicVAE:
    """A model for ``data``'s tensors, its components looked up in the plugin registry.

    Raises :class:`hvae.errors.IncompatibleError` before building anything when the loss does not
    accept the converter's output kind, unless ``force`` (to reproduce such a run on purpose).
    ``model.config`` holds the resolved loss and every component option.
    """
    reg = registry()
    spec = DataSpec.of(data)
    _check_sampling(config)
    encoder_reg, decoder_reg = reg.get("encoders", config.encoder), reg.get("decoders", config.decoder)
    encoder_cls, decoder_cls = encoder_reg.factory, decoder_reg.factory
    loss_name = _resolve_loss(config, decoder_cls, spec, reg)
    loss_reg = reg.get("losses", loss_name)
    if not force:
        check_compatible(spec.output_kind, loss_reg.factory, loss_name, spec.converter,
                         [r.factory for r in reg.registrations("losses")], spec.output_depth)
    loss = loss_reg.build(spec.output_depth, **_with_parts(loss_reg.factory, config.loss_options, spec))
    steps = {"steps": spec.steps} if getattr(encoder_cls, "takes_steps", False) else {}
    encoder = encoder_reg.build(spec.input_depth + spec.control_depth, config.z_size, **steps,
                                **_with_dropout(encoder_cls, config.encoder_options, config.dropout))
    decoder = decoder_reg.build(output_depth=spec.output_depth, raw_size=loss.raw_size, z_size=config.z_size,
                                control_depth=spec.control_depth, steps=spec.steps,
                                **_with_dropout(decoder_cls, config.decoder_options, config.dropout))
    resolved = dataclasses.replace(
        config, loss=loss_name, loss_options=dataclasses.asdict(loss.options),
        encoder_options=dataclasses.asdict(encoder.options), decoder_options=dataclasses.asdict(decoder.options))
    return MusicVAE(resolved, spec, encoder, decoder, loss, forced=force)


def model_from_dict(data: Mapping[str, Any]) -> MusicVAE:
    """Rebuild the architecture :meth:`MusicVAE.to_dict` described (weights freshly initialised)."""
    return build_model(ModelConfig(**data["config"]), DataSpec(**data["spec"]), force=bool(data["forced"]))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimiser updates (the LSTMs' second bias is held at zero, see hvae_decoders.lstm)."""
    return [p for p in model.parameters() if p.requires_grad]


class ReferenceAdam(torch.optim.Adam):
    """Adam as the reference's optimiser (TensorFlow 1's ``AdamOptimizer``) computes it.

    TF1 adds its epsilon to the bias-uncorrected ``sqrt(v)``: ``lr * sqrt(1 - b2^t) / (1 - b1^t) *
    m / (sqrt(v) + eps)``. Torch's Adam adds it to the corrected one, ``sqrt(v / (1 - b2^t))``, so
    the two agree when torch's epsilon at step t is ``eps / sqrt(1 - b2^t)``: this optimiser sets
    it so before every step. (With torch's plain epsilon the first steps of a large model differ
    visibly: 3.6 % in hierdec-mel_16bar's loss after one step.) ``reference_eps`` and
    ``steps_taken`` live in each parameter group, so they are saved and restored with the state.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 fused: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=fused)
        for group in self.param_groups:
            group.setdefault("reference_eps", eps)
            group.setdefault("steps_taken", 0)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            t = group["steps_taken"] + 1
            group["eps"] = group["reference_eps"] / math.sqrt(1.0 - group["betas"][1] ** t)
        loss = super().step(closure)
        for group in self.param_groups:
            group["steps_taken"] += 1
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """Also reads the state of a plain Adam: its epsilon becomes the reference's, and the steps
        taken come from the per-parameter step counts."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            if "steps_taken" not in group:
                steps = [self.state[p]["step"] for p in group["params"] if "step" in self.state.get(p, {})]
                group["steps_taken"] = int(steps[0]) if steps else 0
            group.setdefault("reference_eps", group["eps"])


def make_optimizer(model: nn.Module, cfg: ModelConfig) -> ReferenceAdam:
    """The reference's Adam (:class:`ReferenceAdam`) at ``cfg.learning_rate``: betas 0.9, 0.999,
    epsilon 1e-8 added as TF1 adds it.

    The fused implementation updates each parameter in one pass: the same arithmetic to float
    rounding, and much faster on CPU (the figures: benchmarks/RESULTS.md, "Changes and what they measured").
    """
    return ReferenceAdam(trainable_parameters(model), lr=cfg.learning_rate, fused=True)


def make_lr_schedule(optimizer: torch.optim.Optimizer, cfg: ModelConfig,
                     start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate :func:`learning_rate_at` the scheduler's step, starting at ``start_step`` (a run
    that continues from imported weights); call ``.step()`` after each update."""
    if start_step:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_at(step, cfg) / cfg.learning_rate, last_epoch=start_step - 1)


@torch.no_grad()
def clip_gradients(model: nn.Module, cfg: ModelConfig) -> torch.Tensor:
    """Clip gradients to global norm ``grad_clip`` in place, as the reference; returns the norm before.

    Gradients are scaled by ``grad_clip / max(norm, grad_clip)``; when the norm is not below
    ``grad_norm_clip_to_zero`` (or is not finite) they are zeroed, so the step changes nothing but
    Adam's moments. Computed on the device, without reading the norm on the host.
    """
    grads = [p.grad for p in trainable_parameters(model) if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
    scale = cfg.grad_clip / torch.clamp(norm, min=cfg.grad_clip)
    scale = torch.where(norm < cfg.grad_norm_clip_to_zero, scale, torch.zeros_like(scale))
    torch._foreach_mul_(grads, scale)
    for grad in grads:
        grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    return norm
