"""IoU matching and AP: closed-form cases worked by hand, and agreement with cubic."""

from __future__ import annotations

import numpy as np
import pytest
from evaluation_scenes import scene  # noqa: F401 (a fixture)

from spotlight_ops.evaluation import IOU_THRESHOLDS, average_precision, iou_matrix
from spotlight_ops.evaluation.matching import match_at


def two_cubes(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: two 10^3 cubes. Prediction: the same, the second shifted by ``shift`` in x."""
    truth = np.zeros((12, 12, 40), dtype=np.int32)
    truth[1:11, 1:11, 2:12] = 1
    truth[1:11, 1:11, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[1:11, 1:11, 2:12] = 7
    pred[1:11, 1:11, 20 + shift : 30 + shift] = 3
    return truth, pred


def test_ground_truth_against_itself_is_perfect(scene):
    labels, _ = scene
    result = average_precision(labels, labels)
    assert result["ap"] == [1.0] * len(IOU_THRESHOLDS)
    assert result["mean_ap"] == 1.0
    assert result["precision"][0] == result["recall"][0] == result["f1"][0] == 1.0
    relabelled = np.where(labels > 0, 100 - labels, 0)  # arbitrary, non-sequential ids
    assert average_precision(labels, relabelled)["mean_ap"] == 1.0


def test_shifted_instance_by_hand():
    # Shift by 2 voxels: overlap 10*10*8 = 800, union 2000 - 800 = 1200, IoU = 2/3.
    truth, pred = two_cubes(shift=2)
    iou, true_ids, pred_ids = iou_matrix(truth, pred)
    assert list(true_ids) == [1, 2] and list(pred_ids) == [3, 7]
    assert iou[1, 0] == pytest.approx(2 / 3) and iou[0, 1] == 1.0 and iou[0, 0] == 0 and iou[1, 1] == 0
    result = average_precision(truth, pred)
    by_threshold = dict(zip(result["thresholds"], result["ap"]))
    for t in (0.5, 0.55, 0.6, 0.65):  # both matched
        assert by_threshold[t] == 1.0
    for t in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95):  # TP 1, FP 1, FN 1
        assert by_threshold[t] == pytest.approx(1 / 3)
    assert result["mean_ap"] == pytest.approx((4 * 1 + 6 / 3) / 10)
    assert result["precision"][-1] == 0.5 and result["recall"][-1] == 0.5 and result["f1"][-1] == 0.5


def test_merged_instances_by_hand():
    # One prediction covers both cubes and the 8-voxel-wide gap between them:
    # |pred| = 10*10*28 = 2800, each cube 1000 -> IoU = 1000/2800 = 0.357 < 0.5.
    truth, _ = two_cubes()
    merged = np.zeros_like(truth)
    merged[1:11, 1:11, 2:30] = 1
    result = average_precision(truth, merged)
    assert result["ap"] == [0.0] * 10  # TP 0, FP 1, FN 2
    assert (result["tp"][0], result["fp"][0], result["fn"][0]) == (0, 1, 2)
    # Exactly the union of the two cubes (no gap voxels): IoU = 1000/2000 = 0.5 for each;
    # one-to-one matching lets only one of them match at 0.5: TP 1, FP 0, FN 1 -> AP 1/2.
    union = (truth > 0).astype(np.int32)
    result = average_precision(truth, union)
    assert result["ap"][0] == pytest.approx(0.5)
    assert (result["tp"][0], result["fp"][0], result["fn"][0]) == (1, 0, 1)
    assert result["ap"][1] == 0.0


def test_hungarian_maximises_the_number_of_matches():
    # Greedy (best IoU first) takes (0, 0) and strands row 1; the optimum pairs crosswise.
    iou = np.array([[0.6, 0.4], [0.4, 0.0]])
    match = match_at(iou, 0.3, np.array([1, 2]), np.array([1, 2]))
    assert match.tp == 2
    assert sorted(zip(match.true_labels.tolist(), match.pred_labels.tolist())) == [(1, 2), (2, 1)]


def test_empty_images():
    empty = np.zeros((4, 5, 6), dtype=np.int32)
    one = empty.copy()
    one[1:3, 1:3, 1:3] = 1
    assert np.isnan(average_precision(empty, empty)["ap"][0])  # 0/0
    missed = average_precision(one, empty)
    assert missed["ap"][0] == 0.0 and missed["recall"][0] == 0.0 and np.isnan(missed["precision"][0])
    with pytest.raises(ValueError, match="same shape"):
        average_precision(one, one[:-1])
    with pytest.raises(ValueError, match="IoU threshold"):
        average_precision(one, one, thresholds=[1.5])


def test_matches_cubic_average_precision(scene):
    cubic_ap = pytest.importorskip("cubic.metrics.average_precision", reason="cubic not installed")
    labels, _ = scene
    rng = np.random.default_rng(0)
    # a perturbed segmentation: shift everything by one voxel, drop one nucleus, add a false one
    pred = np.roll(labels, 1, axis=2)
    pred[pred == 3] = 0
    pred[2:6, 2:6, 2:6] = 9
    pred = np.where(rng.random(pred.shape) < 0.02, 0, pred)
    from skimage.segmentation import relabel_sequential

    pred = relabel_sequential(pred)[0]
    thresholds = list(IOU_THRESHOLDS)
    theirs, tp, fp, fn = cubic_ap.average_precision(labels, pred, thresholds)
    mine = average_precision(labels, pred, thresholds)
    assert np.allclose(mine["ap"], theirs)
    assert mine["tp"] == list(tp) and mine["fp"] == list(fp) and mine["fn"] == list(fn)
