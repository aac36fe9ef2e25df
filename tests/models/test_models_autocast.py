"""bf16 autocast training steps: on CPU always, on CUDA when there is a GPU (`gpu` marker)."""

from __future__ import annotations

import pytest
import torch
from model_cases import ALL_TERMS, build_small, random_inputs, random_labels

from quantray.train.losses import objective

needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_forward_backward_under_bf16_autocast(case: tuple[str, dict], device: str) -> None:
    family, arch = case
    model = build_small(family, **arch).to(device).train()
    x, asset_ids, mask = (t.to(device) for t in random_inputs(seed=12, batch=16))
    labels = {key: value.to(device) for key, value in random_labels(mask).items()}
    with torch.autocast(device, dtype=torch.bfloat16):
        out = model(x, asset_ids, mask, return_attention=True)
        loss, _ = objective(out, labels, ALL_TERMS, cost_bps=5.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert out.position.abs().max() <= 1.0 and (out.position[~mask] == 0).all()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_in_float32(family: str) -> None:
    model = build_small(family).eval()
    x, asset_ids, mask = random_inputs(seed=13)
    # cuDNN would run convolutions and LSTMs in TF32 (10-bit mantissa) by default
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        cpu = model(x, asset_ids, mask)
        gpu = model.cuda()(x.cuda(), asset_ids.cuda(), mask.cuda())
    torch.testing.assert_close(gpu.position.cpu(), cpu.position, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu.embedding.cpu(), cpu.embedding, atol=1e-4, rtol=1e-4)
