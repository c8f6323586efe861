"""Otsu + watershed segmentation: synthetic cases, ground-truth instances, and the real
QCANet embryos against their masks.

Measured on the full QCANet volumes (default WatershedParams) against connected components
of nsn_*: 8-cell AP@0.5 = 0.778 (mean AP 0.5..0.95 = 0.283), 16-cell AP@0.5 = 1.000
(mean AP = 0.680). The floors asserted below sit a little under those values.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spotlight_ops.evaluation import WatershedParams, average_precision, segment_nuclei, to_instances
from spotlight_ops.evaluation.cellpose_backend import cellpose_status, segment_cellpose
from spotlight_ops.evaluation.segmentation import clear_border_labels, filter_sizes

from evaluation_scenes import QCANET_STAGES, ball_labels, load_qcanet, scene  # noqa: F401 (scene is a fixture)

# stage: (AP@0.5 floor, mean AP floor), measured 0.778/0.283 and 1.000/0.680
QCANET_FLOORS = {"8_cell_stage": (0.7, 0.25), "16_cell_stage": (0.9, 0.6)}


def test_separate_nuclei_are_found(scene):
    labels, image = scene
    found = segment_nuclei(image)
    assert found.dtype == np.int32 and found.max() == 5
    result = average_precision(labels, found)
    assert result["ap"][0] == 1.0
    assert result["mean_ap"] > 0.6


def test_touching_nuclei_are_split():
    labels = ball_labels((24, 48, 64), [(12, 24, 22), (12, 24, 38)], [8, 8])  # overlapping balls
    image = ndimage.gaussian_filter((labels > 0).astype(float), 1.0) * 1000 + 50
    semantic = to_instances(labels > 0)
    assert semantic.max() == 1  # connected components cannot split them
    found = segment_nuclei(image, WatershedParams(footprint=9))
    assert found.max() == 2
    assert average_precision(labels, found)["ap"][0] == 1.0


def test_border_and_size_filters():
    labels = ball_labels((20, 40, 40), [(10, 20, 3), (10, 20, 25), (10, 6, 31)], [6, 6, 3])
    image = ndimage.gaussian_filter((labels > 0).astype(float), 0.8) * 1000 + 50
    xy = segment_nuclei(image, WatershedParams(clear_border="xy", min_volume=300))
    assert xy.max() == 1  # the ball cut by x = 0 and the small one (~120 voxels) are gone
    kept = segment_nuclei(image, WatershedParams(clear_border="none", min_volume=10))
    assert kept.max() == 3
    z_touching = np.zeros((5, 6, 6), dtype=np.int32)
    z_touching[0, 2:4, 2:4] = 4
    assert clear_border_labels(z_touching, "xy").max() == 4  # top/bottom faces are not lateral
    assert clear_border_labels(z_touching, "all").max() == 0
    assert filter_sizes(z_touching, 5, None).max() == 0
    assert filter_sizes(z_touching, 1, 3).max() == 0
    assert np.array_equal(filter_sizes(z_touching, 4, 4), (z_touching > 0).astype(int))


def test_params_are_validated():
    with pytest.raises(ValueError, match="clear_border"):
        WatershedParams(clear_border="top")
    with pytest.raises(ValueError, match="spacing"):
        WatershedParams(spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="max_volume"):
        WatershedParams(min_volume=100, max_volume=10)
    with pytest.raises(ValueError, match="volume must have 3 dimensions"):
        segment_nuclei(np.zeros((10, 10)))
    assert segment_nuclei(np.ones((8, 8, 8))).max() == 0  # constant volume: no nuclei


def test_instances_from_masks_and_seeds():
    labels = ball_labels((24, 48, 64), [(12, 24, 22), (12, 24, 38)], [8, 8])
    semantic = (labels > 0).astype(np.uint8) * 255
    seeds = np.zeros_like(semantic)
    seeds[11:14, 23:26, 18:21] = 255
    seeds[11:14, 23:26, 40:43] = 255
    split = to_instances(semantic, seeds)
    assert split.max() == 2
    assert average_precision(labels, split)["ap"][0] == 1.0
    assert np.array_equal(to_instances(labels * 3), labels)  # instance labels pass through, relabelled
    with pytest.raises(ValueError, match="seeds"):
        to_instances(labels, seeds)


@pytest.mark.parametrize("stage", QCANET_STAGES)
def test_qcanet_ground_truth_instances(shared_data, stage):
    _, nsn, ndn = load_qcanet(shared_data, stage)
    components = to_instances(nsn)
    seeded = to_instances(nsn, ndn)
    centres = ndimage.label(ndn > 0)[1]
    assert components.max() == centres == seeded.max()  # the nuclei do not touch in these masks
    assert average_precision(components, seeded)["mean_ap"] == 1.0


@pytest.mark.parametrize("stage", QCANET_STAGES)
def test_qcanet_otsu_watershed_ap_floor(shared_data, stage):
    raw, nsn, _ = load_qcanet(shared_data, stage)
    truth = to_instances(nsn)
    found = segment_nuclei(raw)
    result = average_precision(truth, found)
    ap50_floor, mean_floor = QCANET_FLOORS[stage]
    assert result["ap"][0] >= ap50_floor, result["ap"]
    assert result["mean_ap"] >= mean_floor, result["ap"]
    assert abs(int(found.max()) - int(truth.max())) <= 1


def test_cellpose_is_optional(tmp_path):
    runnable, message = cellpose_status(None)
    assert not runnable and "no local model file" in message
    with pytest.raises(FileNotFoundError, match="cellpose_model"):
        cellpose_status(tmp_path / "missing.model")
    model = tmp_path / "nuclei.model"
    model.write_bytes(b"not a real model")
    try:
        import cellpose  # noqa: F401
    except ImportError:
        runnable, message = cellpose_status(model)
        assert not runnable and "not installed" in message
        with pytest.raises(RuntimeError, match="not installed"):
            segment_cellpose(np.zeros((4, 8, 8)), model)
    else:
        assert cellpose_status(model)[0]
