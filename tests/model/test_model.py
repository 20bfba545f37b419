"""The model: shapes, input transform, and that it learns a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_job.evaluation.scoring import evaluate
from mnist_job.model.network import PIXEL_MEAN, PIXEL_STD, build_model, count_flops_per_image, images_to_tensor
from mnist_job.training.epoch import run_epoch, shard_indices, split_train_validation


def test_output_shape_and_channels_last():
    model = build_model(width=8, dropout=0.0)
    x = images_to_tensor(np.zeros((5, 28, 28), dtype=np.uint8))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (5, 10)


def test_input_normalisation():
    x = images_to_tensor(np.array([[[0, 255] * 14] * 28], dtype=np.uint8))
    assert torch.isclose(x.min(), torch.tensor((0 - PIXEL_MEAN) / PIXEL_STD))
    assert torch.isclose(x.max(), torch.tensor((1 - PIXEL_MEAN) / PIXEL_STD))


def test_loss_decreases_on_a_fixed_batch(prepared_dataset):
    torch.manual_seed(0)
    images = np.load(prepared_dataset / "train_images.npy", mmap_mode="r")[:64]
    labels = torch.as_tensor(np.load(prepared_dataset / "train_labels.npy")[:64].astype(np.int64))
    x = images_to_tensor(np.array(images))
    model = build_model(width=16, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    assert evaluate(model, np.array(images), labels.numpy().astype(np.uint8)).accuracy > 0.9


def test_flop_count_matches_shape_arithmetic():
    w = 8
    # three 3x3 convs on 28x28, 14x14 and 7x7 maps, then the linear layer on the 4x4 map
    expected = 2 * (28 * 28 * w * 9 + 14 * 14 * 2 * w * w * 9 + 7 * 7 * 4 * w * 2 * w * 9 + 4 * w * 16 * 10)
    assert count_flops_per_image(build_model(width=w, dropout=0.0)) == expected


def test_the_last_pooling_uses_the_whole_7x7_map():
    # A plain 2x2 pooling of the 7x7 map gives 3x3 and drops its last row and column: the last conv
    # computes them for nothing. Random images, so every pooling window has its own maximum.
    torch.manual_seed(0)
    model = build_model(width=8, dropout=0.0).eval()
    last_pool = model.features[-1][-1]
    seen = {}
    last_pool.register_forward_pre_hook(lambda _m, inputs: seen.setdefault("map", inputs[0]).retain_grad())
    model(torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)).sum().backward()
    used = seen["map"].grad.abs().sum(dim=(0, 1))
    assert used.shape == (7, 7)
    assert (used > 0).all(), f"positions of the 7x7 map the output never sees: {(used == 0).nonzero().tolist()}"


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    shards = [shard_indices(1003, epoch=2, seed=1, rank=r, world=3) for r in range(3)]
    assert {len(s) for s in shards} == {334}
    joined = torch.cat(shards)
    assert len(set(joined.tolist())) == len(joined)
    assert not torch.equal(shard_indices(1003, 2, 1, 0, 3), shard_indices(1003, 3, 1, 0, 3))  # reshuffled per epoch


def _trained(images: torch.Tensor, labels: torch.Tensor, step_on_floats: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(8, 0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    shard = shard_indices(len(images), epoch=1, seed=3, rank=0, world=1)
    if step_on_floats:  # the old way: the whole set normalised once, then sliced
        x = images_to_tensor(images)
        for step in range(len(shard) // 32):
            idx = shard[step * 32 : (step + 1) * 32]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    else:
        run_epoch(model, optimizer, scheduler, images, labels, shard, 32)
    return [p.detach().clone() for p in model.parameters()]


def test_an_epoch_on_uint8_pixels_equals_one_on_the_normalised_set():
    """run_epoch normalises each batch (no float copy of the training set): the same numbers, bit for bit."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (160, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (160,), generator=generator)
    for per_batch, whole_set in zip(_trained(images, labels, False), _trained(images, labels, True), strict=True):
        assert torch.equal(per_batch, whole_set)
    with pytest.raises(TypeError, match="uint8"):
        run_epoch(build_model(8, 0.0), None, None, images_to_tensor(images), labels, torch.arange(32), 32)


def test_validation_is_held_out_from_training():
    images = np.arange(100)
    (train_x, _), (val_x, _) = split_train_validation(images, images, validation_size=10, subset=50)
    assert len(train_x) == 40 and len(val_x) == 10
    assert not set(train_x) & set(val_x)


def test_a_training_checkpoint_loads_with_weights_only(tmp_path):
    """The checkpoint the loop writes (model, AdamW, OneCycleLR, history) needs nothing beyond weights_only."""
    from mnist_job.model.network import load_checkpoint

    model = build_model(width=8, dropout=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.004, total_steps=10)
    model(images_to_tensor(np.zeros((2, 28, 28), dtype=np.uint8))).sum().backward()
    optimizer.step()
    scheduler.step()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": 1, "history": [{"epoch": 1, "val_accuracy": 0.5}],
                "model_params": {"width": 8, "dropout": 0.1}}, path)
    state = load_checkpoint(path)
    build_model(**state["model_params"]).load_state_dict(state["model"])
    assert state["history"][0]["val_accuracy"] == 0.5


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.getpid, ())


def test_a_checkpoint_that_needs_more_than_weights_is_refused(tmp_path):
    import pytest

    from mnist_job.core.errors import DataError
    from mnist_job.model.network import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(DataError, match="refusing to load it") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
