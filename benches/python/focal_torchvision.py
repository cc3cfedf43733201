"""torchvision's sigmoid focal loss forward + autograd backward, computed as torchvision's
RetinaNet computes its classification loss (one-hot targets from the labels, ignored anchors
dropped, summed, divided by max(1, foreground)), timed on the inputs `cargo xtask bench` wrote.

Prints one JSON list of rows on its last line. Run by `cargo xtask bench` with `$FOCAL_PYTHON`.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torchvision
from torchvision.ops import sigmoid_focal_loss


def main():
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--anchors", type=int, required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--budget", type=float, default=3.0)
    ap.add_argument("--gamma", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    logits = torch.from_numpy(np.fromfile(f"{args.dir}/logits.f32", dtype=np.float32))
    logits = logits.reshape(args.anchors, args.classes).clone().requires_grad_(True)
    labels = torch.from_numpy(np.fromfile(f"{args.dir}/labels.i32", dtype=np.int32)).long()

    def step():
        # torchvision/models/detection/retinanet.py, RetinaNetClassificationHead.compute_loss
        foreground = labels >= 0
        num_foreground = foreground.sum()
        gt = torch.zeros_like(logits)
        gt[foreground, labels[foreground]] = 1.0
        valid = labels != -2
        loss = sigmoid_focal_loss(
            logits[valid], gt[valid], alpha=args.alpha, gamma=args.gamma, reduction="sum"
        ) / max(1, num_foreground)
        logits.grad = None
        loss.backward()

    step()
    samples = []
    deadline = time.perf_counter() + args.budget
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t0)
    row = {
        "group": "sigmoid_focal_fwd_bwd",
        "impl": "torchvision eager",
        "shape": f"{args.anchors}x{args.classes}",
        "threads": args.threads,
        "median_s": statistics.median(samples),
    }
    print(json.dumps([row]))


if __name__ == "__main__":
    main()
