"""Box math in one place. Boxes are `(x1, y1, x2, y2)` in pixels."""
from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU. a: [N, 4], b: [M, 4] -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou(a, b) -> float:
    """IoU of two single boxes."""
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


#: The GMNER protocol counts a region as correct when IoU is strictly greater than this.
IOU_THRESHOLD = 0.5


def matches_any(box, gold_boxes, threshold: float = IOU_THRESHOLD) -> bool:
    """True when `box` has IoU > threshold with at least one of `gold_boxes`."""
    if box is None or len(gold_boxes) == 0:
        return False
    return bool((iou_matrix(np.asarray(box)[None], np.asarray(gold_boxes)) > threshold).any())
