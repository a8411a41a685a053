"""The optimiser make_optimizer returns is the reference's Adam: TF1's epsilon on the uncorrected sqrt(v)."""

from __future__ import annotations

import math

import numpy as np
import torch

from hvae.model import ModelConfig, ReferenceAdam, make_optimizer

torch.set_num_threads(1)


def tf1_adam(theta: np.ndarray, grads: list[np.ndarray], lr: float, b1=0.9, b2=0.999, eps=1e-8) -> np.ndarray:
    """TensorFlow 1's AdamOptimizer, written from its documented update, in float64."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        theta = theta - lr_t * m / (np.sqrt(v) + eps)
    return theta


def test_make_optimizer_steps_as_tf1_adam_does():
    # Tiny gradients make epsilon matter: there torch's plain Adam and TF1's differ by far more than rounding.
    rng = np.random.default_rng(0)
    start = rng.normal(size=(64,))
    grads = [rng.normal(scale=1e-7, size=(64,)) for _ in range(5)]
    model = torch.nn.Linear(64, 1, bias=False)
    param = model.weight
    with torch.no_grad():
        param.copy_(torch.tensor(start[None], dtype=torch.float64).float())
    optimizer = make_optimizer(model, ModelConfig(learning_rate=1e-3))
    assert isinstance(optimizer, ReferenceAdam)
    for g in grads:
        param.grad = torch.tensor(g[None]).float()
        optimizer.step()
    expected = tf1_adam(start.astype(np.float32).astype(np.float64), grads, 1e-3)
    plain = torch.nn.Parameter(torch.tensor(start[None]).float())
    torch_adam = torch.optim.Adam([plain], lr=1e-3)
    for g in grads:
        plain.grad = torch.tensor(g[None]).float()
        torch_adam.step()
    ours = np.abs(param.detach().double().numpy()[0] - expected).max()
    theirs = np.abs(plain.detach().double().numpy()[0] - expected).max()
    assert ours < 5e-7  # float32 rounding of weights near 1
    assert theirs > 100 * ours  # the test can tell the two apart


def test_its_state_resumes_and_a_plain_adams_state_is_read():
    model = torch.nn.Linear(4, 4)
    optimizer = make_optimizer(model, ModelConfig())
    for _ in range(3):
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
    again = make_optimizer(torch.nn.Linear(4, 4), ModelConfig())
    again.load_state_dict(optimizer.state_dict())
    assert [g["steps_taken"] for g in again.param_groups] == [3]
    plain = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 4)).sum().backward()
    plain.step()
    plain.step()
    read = make_optimizer(model, ModelConfig())
    read.load_state_dict(plain.state_dict())
    assert read.param_groups[0]["steps_taken"] == 2 and read.param_groups[0]["reference_eps"] == 1e-8
