"""fp32 linear layers through oneDNN (rewards/ml/gemm.py): same products and gradients as torch's, fp32 arithmetic,
only where eligible, and the choice recorded with a training run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewards.ml import gemm

needs_onednn = pytest.mark.skipif(not gemm.available(), reason="this torch has no oneDNN")


def through_onednn(y: torch.Tensor) -> bool:
    """Whether y's last op (past views) was onednn_linear."""
    node = y.grad_fn
    while node is not None and type(node).__name__ in ("ViewBackward0", "UnsafeViewBackward0"):
        node = node.next_functions[0][0]
    return node is not None and type(node).__name__ == "_OneDnnLinearBackward"


def _grads(fn, x, weight, bias, seed=0):
    """(y, dx, dW, db) of sum(fn(x, W, b) * a fixed random tensor), fresh leaves each call."""
    leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in (x, weight, bias)]
    y = fn(*leaves)
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    (y * probe).sum().backward()
    return (y.detach(), *(t.grad for t in leaves))


@needs_onednn
@pytest.mark.parametrize("features", [(48, 192), (192, 48), (64, 64)])  # out > in, out < in (both dW forms), square
def test_the_product_and_its_three_gradients_equal_torchs_in_fp32_arithmetic(features):
    rows, (inputs, outputs) = 300, features
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, inputs, generator=g).requires_grad_()
    weight = (torch.randn(outputs, inputs, generator=g) / inputs**0.5).requires_grad_()
    bias = torch.randn(outputs, generator=g).requires_grad_()
    ours = _grads(gemm.onednn_linear, x, weight, bias)
    torchs = _grads(F.linear, x, weight, bias)
    exact = _grads(F.linear, x.double(), weight.double(), bias.double())
    for name, o, t, e in zip(("y", "dx", "dW", "db"), ours, torchs, exact):
        assert o.shape == t.shape and o.dtype == torch.float32, name
        scale = e.abs().max().item()
        # an fp32 sum's error against float64: ~1e-7 of the scale per term; bf16 or tf32 inputs would be ~1e-3
        assert (o.double() - e).abs().max().item() < 2e-6 * scale, name
        assert (t.double() - e).abs().max().item() < 2e-6 * scale, name
        assert o.is_contiguous(), name


@needs_onednn
def test_three_dimensional_and_strided_inputs_without_bias_and_a_frozen_weight():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 3, 16, generator=g).transpose(0, 1).requires_grad_()  # (3, 40, 16), not contiguous
    weight = torch.randn(24, 16, generator=g)  # frozen, as a LoRA base layer is
    y = gemm.onednn_linear(x, weight)
    assert y.shape == (3, 40, 24) and through_onednn(y)
    torch.testing.assert_close(y, F.linear(x, weight), rtol=1e-5, atol=1e-5)
    y.square().sum().backward()
    reference = x.detach().clone().requires_grad_()
    F.linear(reference, weight).square().sum().backward()
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-5, atol=1e-5)
    assert weight.grad is None


@needs_onednn
def test_inside_the_context_a_models_linear_layers_go_through_onednn_and_outside_they_do_not():
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    with gemm.faster_linear(gemm.ONEDNN) as used:
        inside = layer(x)
    outside = layer(x)
    assert used == gemm.ONEDNN
    assert through_onednn(inside) and not through_onednn(outside)
    torch.testing.assert_close(inside, outside, rtol=1e-5, atol=1e-6)
    with gemm.faster_linear(gemm.ONEDNN), torch.inference_mode():  # held-out scoring
        torch.testing.assert_close(layer(x), outside, rtol=1e-5, atol=1e-6)


@needs_onednn
def test_other_dtypes_and_autocast_regions_keep_torchs_own_path():
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16, requires_grad=True)
    with gemm.faster_linear(gemm.ONEDNN):
        double = layer.double()(x.double())
        layer.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = layer(x)
    assert double.dtype == torch.float64 and not through_onednn(double)
    assert autocast.dtype == torch.bfloat16 and not through_onednn(autocast)


def test_the_default_backend_changes_nothing():
    layer = torch.nn.Linear(16, 8)
    with gemm.faster_linear(gemm.DEFAULT) as used:
        y = layer(torch.randn(2, 16))
    assert used == gemm.DEFAULT and not through_onednn(y)
    with pytest.raises(ValueError, match="backend"):
        with gemm.faster_linear("mkl"):
            pass


def test_the_choice_follows_prefloop_gemm_and_is_measured_once(monkeypatch):
    monkeypatch.setenv("PREFLOOP_GEMM", "default")
    assert gemm.choose() == gemm.DEFAULT
    monkeypatch.setenv("PREFLOOP_GEMM", "fast")
    with pytest.raises(ValueError, match="PREFLOOP_GEMM"):
        gemm.choose()
    if gemm.available():
        monkeypatch.setenv("PREFLOOP_GEMM", "onednn")
        assert gemm.choose() == gemm.ONEDNN
    monkeypatch.setenv("PREFLOOP_GEMM", "auto")
    monkeypatch.setattr(gemm, "_CHOICE", {})
    first = gemm.choose()
    assert first in (gemm.ONEDNN, gemm.DEFAULT) and gemm._CHOICE == {torch.get_num_threads(): first}
    assert gemm.choose() == first
    if not gemm.available():
        assert first == gemm.DEFAULT


@pytest.mark.slow
@needs_onednn
def test_a_packed_and_a_lora_run_train_the_same_through_onednn_and_record_it(tiny_model_dir, easy_pairs, monkeypatch):
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.train import train_reward_model

    runs = {}
    for backend in (gemm.DEFAULT, gemm.ONEDNN):
        monkeypatch.setenv("PREFLOOP_GEMM", backend)
        for lora in (None, {"r": 4, "alpha": 8}):
            cfg = RewardTrainConfig(
                base_model=str(tiny_model_dir), max_length=64, lr=1e-3, batch_size=8, max_steps=4, seed=0, lora=lora
            )
            runs[backend, lora is None] = train_reward_model(cfg, easy_pairs[:48], easy_pairs[48:80])
    for full in (True, False):
        default, onednn = runs[gemm.DEFAULT, full], runs[gemm.ONEDNN, full]
        assert default.metrics["linear_backend"] == gemm.DEFAULT and onednn.metrics["linear_backend"] == gemm.ONEDNN
        assert onednn.metrics["packed"] and onednn.metrics["pairs_trained"] == 32
        losses = [[p["loss"] for p in run.curves["train"]] for run in (default, onednn)]
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
        assert onednn.metrics["loss"] == pytest.approx(default.metrics["loss"], rel=1e-4)
