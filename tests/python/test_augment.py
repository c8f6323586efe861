"""Augmentation: the transforms form the YX symmetry group, and signal, target and mask move together."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spotlight_ops.data import ManifestRow, PatchSampler, VolumePair
from spotlight_ops.data import augment as aug


def coded_volume(shape) -> np.ndarray:
    """Every voxel holds a distinct value (its flat index), so a patch tells where it came from."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def coded_pair(shape=(8, 20, 24)) -> VolumePair:
    volume = coded_volume(shape)
    return VolumePair(signal=volume, target=-volume, foreground=np.ones(shape, bool),
                      source=ManifestRow(None, None), mask=volume.astype(np.int64))


def test_modes_draw_the_whole_group_uniformly():
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng, "yx") for _ in range(4000)]
    assert {d.flip_z for d in draws} == {False}
    counts = {}
    for d in draws:
        counts[d] = counts.get(d, 0) + 1
    assert len(counts) == 8 and min(counts.values()) > 400  # 500 expected each
    images = {aug.Transform(*t).apply(coded_volume((2, 3, 3))).tobytes() for t in
              itertools.product(range(4), [False], [False, True], [False])}
    assert len(images) == 8  # rotations and a y flip: all 8 distinct symmetries of the square
    assert {aug.draw(rng, "zyx").flip_z for _ in range(100)} == {False, True}
    state = rng.bit_generator.state
    assert aug.draw(rng, "none") == aug.IDENTITY and rng.bit_generator.state == state
    with pytest.raises(ValueError, match="augment must be one of none, yx, zyx"):
        aug.draw(rng, "flips")


@pytest.mark.parametrize("rotations,flip_z,flip_y,flip_x", list(itertools.product(range(4), *[[False, True]] * 3)))
def test_transform_inverts_and_keeps_the_patch_shape(rotations, flip_z, flip_y, flip_x):
    t = aug.Transform(rotations, flip_z, flip_y, flip_x)
    source = coded_volume(t.source_shape((4, 6, 10)))
    out = t.apply(source)
    assert out.shape == (4, 6, 10) and out.flags.c_contiguous
    np.testing.assert_array_equal(t.invert(out), source)
    expected = np.rot90(source, rotations, axes=(1, 2))
    for axis, flip in enumerate((flip_z, flip_y, flip_x)):
        if flip:
            expected = np.flip(expected, axis)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("patch", [(4, 8, 8), (4, 8, 12)])
def test_sampler_applies_one_transform_to_signal_target_and_mask(patch):
    pair = coded_pair()
    sampler = PatchSampler([pair], patch, batch_size=32, seed=3, augment="zyx", min_foreground_fraction=0.0)
    signal, target, mask = sampler.sample(with_mask=True)
    assert signal.shape == target.shape == mask.shape == (32, 1) + patch
    np.testing.assert_array_equal(target, -signal)
    np.testing.assert_array_equal(mask, signal.astype(np.int64))
    found = set()
    for s in signal[:, 0]:
        # undo each candidate transform: exactly the drawn one gives a box of the volume
        matches = []
        for t in itertools.product(range(4), [False, True], [False, True], [False]):
            t = aug.Transform(*t)
            box = t.invert(s)
            z, y, x = np.unravel_index(int(box[0, 0, 0]), pair.shape)
            shape = box.shape
            if z + shape[0] <= pair.shape[0] and y + shape[1] <= pair.shape[1] and x + shape[2] <= pair.shape[2] \
                    and np.array_equal(box, pair.signal[z:z + shape[0], y:y + shape[1], x:x + shape[2]]):
                matches.append(t)
        assert len(matches) == 1
        found.add(matches[0])
    assert len(found) > 8  # rotations, y flips and z flips all occur


def test_off_switch_and_augmentation_leave_positions_alone():
    pair = coded_pair()
    plain = PatchSampler([pair], (4, 8, 8), 16, seed=5, min_foreground_fraction=0.0)
    again = PatchSampler([pair], (4, 8, 8), 16, seed=5, min_foreground_fraction=0.0, augment="none")
    a, b = plain.sample()[0], again.sample()[0]
    np.testing.assert_array_equal(a, b)
    for s in a[:, 0]:  # no augmentation: plain boxes
        z, y, x = np.unravel_index(int(s[0, 0, 0]), pair.shape)
        np.testing.assert_array_equal(s, pair.signal[z:z + 4, y:y + 8, x:x + 8])


def test_augmented_sampler_state_roundtrip():
    pair = coded_pair()
    a = PatchSampler([pair], (4, 8, 12), 4, seed=7, augment="yx", min_foreground_fraction=0.0)
    a.sample()
    state = a.state_dict()
    expected = a.sample()[0]
    b = PatchSampler([pair], (4, 8, 12), 4, seed=7, augment="yx", min_foreground_fraction=0.0)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.sample()[0], expected)


def test_rotated_patch_must_fit(tmp_path):
    pair = coded_pair((8, 12, 24))
    PatchSampler([pair], (4, 8, 16), 2, augment="none")
    with pytest.raises(Exception, match="quarter turn"):
        PatchSampler([pair], (4, 8, 16), 2, augment="yx")
