"""torchvision baselines of the `anchors` bench suite, timed on the inputs `cargo xtask bench`
wrote (raw little-endian f32/i32 files in --dir):

* target assignment as torchvision's RetinaNet does it per image: `box_iou(gt, anchors)` then
  `Matcher(0.5, 0.4, allow_low_quality_matches=True)`, and the same plus
  `BoxCoder.encode_single` of the foreground anchors (what our fused call also produces);
* `torchvision.ops.nms` (the C++ CPU kernel) and `batched_nms`;
* `BoxCoder.decode_single` with weights (1, 1, 1, 1);
* `RetinaNet.postprocess_detections` (threshold 0.05, top 1000 per level, batched NMS 0.5, 300
  kept) on one image.

Prints one JSON list of rows on its last line. Run by `cargo xtask bench` with `$FOCAL_PYTHON`.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.ops import boxes as box_ops


def load(path, dtype, shape):
    return torch.from_numpy(np.fromfile(path, dtype=dtype).reshape(shape).copy())


def timed(fn, budget):
    fn()
    samples = []
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--gt-counts", default="10,100")
    ap.add_argument("--nms-counts", default="1000,10000")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = args.dir
    anchors = load(f"{d}/anchors.f32", np.float32, (-1, 4))
    a = anchors.shape[0]
    matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)
    coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    rows = []

    def row(group, impl, shape, seconds, nbytes=0.0):
        rows.append(
            {"group": group, "impl": impl, "shape": shape, "threads": args.threads, "median_s": seconds, "bytes": nbytes}
        )

    for m in [int(v) for v in args.gt_counts.split(",")]:
        gt = load(f"{d}/gt{m}.f32", np.float32, (-1, 4))
        shape = f"{a} anchors x {m} boxes"

        def match():
            return matcher(box_ops.box_iou(gt, anchors))

        def match_encode():
            matched = match()
            fg = torch.where(matched >= 0)[0]
            return coder.encode_single(gt[matched[fg]], anchors[fg])

        row("assign_targets", "torchvision box_iou + Matcher", shape, timed(match, args.budget))
        row("assign_targets", "torchvision box_iou + Matcher + encode", shape, timed(match_encode, args.budget))
        # The matches, for the suite to compare with ours before showing times.
        match().numpy().astype(np.int32).tofile(f"{d}/tv_matched{m}.i32")

    for n in [int(v) for v in args.nms_counts.split(",")]:
        boxes = load(f"{d}/nms{n}_boxes.f32", np.float32, (-1, 4))
        scores = load(f"{d}/nms{n}_scores.f32", np.float32, (-1,))
        classes = load(f"{d}/nms{n}_classes.i32", np.int32, (-1,)).long()
        row("nms", "torchvision nms (C++)", f"{n} boxes", timed(lambda: torchvision.ops.nms(boxes, scores, 0.5), args.budget))
        row(
            "batched_nms",
            "torchvision batched_nms",
            f"{n} boxes, 80 classes",
            timed(lambda: box_ops.batched_nms(boxes, scores, classes, 0.5), args.budget),
        )
        torchvision.ops.nms(boxes, scores, 0.5).numpy().astype(np.int64).tofile(f"{d}/tv_nms{n}.i64")

    codes = load(f"{d}/codes.f32", np.float32, (-1, 4))
    row(
        "decode_boxes",
        "torchvision BoxCoder.decode_single",
        f"{a} boxes",
        timed(lambda: coder.decode_single(codes, anchors), args.budget),
        float(a * 48),
    )
    # RetinaNet.postprocess_detections on one image: per-level head outputs [1, HWA, C].
    num_classes = 80
    logits = load(f"{d}/head_logits.f32", np.float32, (1, a, num_classes))
    regression = load(f"{d}/head_regression.f32", np.float32, (1, a, 4))
    per_level = [h * w * 9 for h, w in ((100, 100), (50, 50), (25, 25), (13, 13), (7, 7))]
    assert sum(per_level) == a

    class Holder:  # the attributes postprocess_detections reads
        score_thresh, nms_thresh, detections_per_img, topk_candidates = 0.05, 0.5, 300, 1000
        box_coder = coder

    head = {
        "cls_logits": list(logits.split(per_level, dim=1)),
        "bbox_regression": list(regression.split(per_level, dim=1)),
    }
    split_anchors = [list(anchors.split(per_level))]

    def post():
        return RetinaNet.postprocess_detections(Holder(), head, split_anchors, [(800, 800)])

    row(
        "retinanet_postprocess",
        "torchvision RetinaNet.postprocess_detections",
        f"1 x {a} anchors x {num_classes} classes",
        timed(post, args.budget),
        float(a * (num_classes + 4) * 4),
    )
    post()[0]["labels"].numpy().astype(np.int64).tofile(f"{d}/tv_post_labels.i64")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
