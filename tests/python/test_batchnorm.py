"""Recomputed BatchNorm statistics (spotlight_ops.training.batchnorm) and their use by training and prediction."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from spotlight_ops.models import FNet
from spotlight_ops.training import batchnorm as BN
from spotlight_ops.training import train
from spotlight_ops.files.checkpoint import load_checkpoint
from spotlight_ops.training.log import read_log

from _training_helpers import tiny_config, tiny_dataset


def _model(seed: int = 0) -> FNet:
    torch.manual_seed(seed)
    model = FNet(depth=1, base_channels=4)
    with torch.no_grad():  # running averages far from any batch's, so a no-op recomputation cannot pass
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.fill_(5.0)
                m.running_var.fill_(9.0)
    return model


def _batches(count: int, seed: int = 1) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 1, 8, 16, 16, generator=g) * (1 + i) + i for i in range(count)]


def test_statistics_are_the_average_of_the_batch_statistics_float64():
    model, batches = _model(), _batches(3)
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm3d)]
    # the reference: every layer's input in a training-mode forward (batch statistics), in float64
    probe, seen = copy.deepcopy(model).train(), {n: [] for n in layers}
    for name in layers:
        probe.get_submodule(name).register_forward_hook(
            lambda mod, inp, out, name=name: seen[name].append(inp[0].detach().double()))
    with torch.no_grad():
        for b in batches:
            probe(b)
    result = BN.recompute_statistics(model, batches)
    for name in layers:
        x = seen[name]
        mean = torch.stack([t.mean(dim=(0, 2, 3, 4)) for t in x]).mean(0)
        var = torch.stack([t.var(dim=(0, 2, 3, 4), unbiased=True) for t in x]).mean(0)
        layer = result.get_submodule(name)
        np.testing.assert_allclose(layer.running_mean.double(), mean, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(layer.running_var.double(), var, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not result.training


def test_the_source_model_is_untouched_and_the_weights_are_copied():
    model = _model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = BN.recompute_statistics(model, _batches(2))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in result.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, before[k]), k


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="batches"):
        BN.recompute_statistics(_model(), [])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("bn_data"))


def _pairs(dataset):
    from spotlight_ops.data import load_pairs

    return load_pairs(dataset["train"])


def _stats(model) -> torch.Tensor:
    return torch.cat([m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)])


def test_inference_model_draws_its_own_stream(dataset):
    pairs, model = _pairs(dataset), _model()
    args = dict(patch_size=(8, 16, 16), batch_size=2, count=3, seed=0, min_foreground_fraction=0.001, max_retries=100)
    a = BN.inference_model(model, pairs, iteration=10, **args)
    b = BN.inference_model(model, pairs, iteration=10, **args)
    c = BN.inference_model(model, pairs, iteration=20, **args)
    assert torch.equal(_stats(a), _stats(b))
    assert not torch.equal(_stats(a), _stats(c))
    with pytest.raises(ValueError, match="count"):
        BN.inference_model(model, pairs, iteration=1, **{**args, "count": 0})


def test_inference_model_leaves_a_volume_buffer_as_it_is(dataset):
    from spotlight_ops.data import StatsCache, VolumeBuffer, read_manifest
    from spotlight_ops.data.dataset import PreprocessConfig

    rows = read_manifest(dataset["train"])
    buffer = VolumeBuffer(rows, PreprocessConfig(), size=1, switch_every=1,
                          cache=StatsCache(Path(dataset["train"]).parent / "stats.json"), seed=0)
    before = buffer.state_dict()
    BN.inference_model(_model(), buffer, (8, 16, 16), 2, 4, 0, 1, 0.001, 100)
    assert buffer.state_dict() == before


def test_training_is_unchanged_and_written_models_carry_the_statistics(dataset, tmp_path):
    plain = train(tiny_config(dataset["train"], tmp_path / "off", bn_batches=0))
    recomputed = train(tiny_config(dataset["train"], tmp_path / "on", bn_batches=3))
    # the recomputation draws from a stream of its own: the training losses are the same bits
    assert [r["loss"] for r in read_log(plain.run_dir / "log.csv")] == \
        [r["loss"] for r in read_log(recomputed.run_dir / "log.csv")]
    off = load_checkpoint(plain.run_dir / "checkpoints" / "checkpoint_latest.pt")
    on = load_checkpoint(recomputed.run_dir / "checkpoints" / "checkpoint_latest.pt")
    assert "inference_model" not in off
    for k, v in off["model"].items():
        assert torch.equal(v, on["model"][k]), k  # the training state is the same
    assert not torch.equal(_first_running_mean(on["model"]), _first_running_mean(on["inference_model"]))
    model_pt = load_checkpoint(recomputed.run_dir / "model.pt")
    for k, v in on["inference_model"].items():
        assert torch.equal(v, model_pt["model"][k]), k
    # prediction from the checkpoint reads the recomputed statistics
    from spotlight_ops.predict import load_model

    loaded, _ = load_model(recomputed.run_dir / "checkpoints" / "checkpoint_latest.pt")
    assert torch.equal(_stats(loaded), torch.cat([v for k, v in on["inference_model"].items()
                                                  if k.endswith("running_mean")]))


def _first_running_mean(state: dict) -> torch.Tensor:
    return next(v for k, v in state.items() if k.endswith("running_mean"))


def test_bn_batches_must_be_non_negative(dataset, tmp_path):
    with pytest.raises(ValueError, match="bn_batches"):
        tiny_config(dataset["train"], tmp_path, bn_batches=-1)
