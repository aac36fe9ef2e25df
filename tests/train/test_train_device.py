"""The loop's device path: batches gathered on the device, bf16 autocast, torch.compile.

`DeviceWindows` must give exactly `Windows.gather`'s batches. On CUDA (tests marked `gpu`),
bf16 autocast and torch.compile must reach the validation Sharpe of float32 eager within a
stated tolerance: compile changes only the order of float operations (dropout is off here), so
within 0.05 annualized; bf16 rounds every matmul input to 8 bits of mantissa, so the same
weights evaluate within 0.1 and two epochs trained under it within 0.5.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from quantray.config import OptimConfig, TrainConfig, check_gpus
from quantray.data.pipeline import prepare
from quantray.errors import BadInput
from quantray.train.batches import DeviceWindows
from quantray.train.loop import InProcessSession, directory_reporter, evaluate, fit

from tests.train.test_train_loop import CONFIG, DATA

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def data():
    return prepare(DATA)


def test_device_windows_gather_what_windows_gather(data) -> None:
    windows = data.windows("train")
    dates = windows.dates_idx[[0, 5, 6, 7, len(windows) - 1]]
    expected = windows.gather(dates)
    actual = DeviceWindows(windows, "cpu").gather(dates)
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].numpy().dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(actual[key].numpy(), value, err_msg=key)


def test_optim_precision_and_gpu_shares_are_validated() -> None:
    with pytest.raises(BadInput, match="optim.precision"):
        OptimConfig(precision="fp16")
    for ok in (0, 0.25, 1, 2):
        check_gpus(ok, "g")
    for bad in (-0.5, 1.5):
        with pytest.raises(BadInput, match="g: GPUs must be 0, a fraction"):
            check_gpus(bad, "g")


def run(config: TrainConfig, data, tmp_path: Path, device: str) -> float:
    """The run's score: the chosen epoch's validation Sharpe."""
    session = InProcessSession(data, config, report=directory_reporter(tmp_path), device=device)
    return fit(config, data, session).best_val_sharpe


def with_optim(**changes) -> TrainConfig:
    return dataclasses.replace(CONFIG, optim=dataclasses.replace(CONFIG.optim, **changes))


@pytest.mark.gpu
@needs_cuda
def test_bf16_reaches_the_float32_validation_sharpe(data, tmp_path: Path) -> None:
    fp32 = run(CONFIG, data, tmp_path / "fp32", "cuda")
    bf16 = run(with_optim(precision="bf16"), data, tmp_path / "bf16", "cuda")
    assert abs(bf16 - fp32) < 0.5


@pytest.mark.gpu
@needs_cuda
def test_bf16_evaluates_the_same_weights_like_float32(data) -> None:
    from quantray.train.checkpoint import build_model

    torch.manual_seed(0)
    model = build_model(CONFIG, data.pipeline(0)).cuda()
    windows = data.windows("val")
    fp32 = evaluate(model, windows, CONFIG, "cuda").metrics["val_sharpe"]
    bf16 = evaluate(model, windows, with_optim(precision="bf16"), "cuda").metrics["val_sharpe"]
    assert abs(bf16 - fp32) < 0.1


@pytest.mark.gpu
@needs_cuda
def test_compiled_training_reaches_the_eager_validation_sharpe_on_cuda(data, tmp_path: Path) -> None:
    eager = run(CONFIG, data, tmp_path / "eager", "cuda")
    compiled = run(with_optim(compile=True), data, tmp_path / "compiled", "cuda")
    assert abs(compiled - eager) < 0.05


@pytest.mark.slow  # compiling with inductor takes minutes on a 2-core CPU
def test_compiled_training_reaches_the_eager_validation_sharpe_on_cpu(data, tmp_path: Path) -> None:
    eager = run(CONFIG, data, tmp_path / "eager", "cpu")
    compiled = run(with_optim(compile=True), data, tmp_path / "compiled", "cpu")
    assert abs(compiled - eager) < 0.05
