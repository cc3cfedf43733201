"""torchvision's sigmoid focal loss forward + autograd backward on the GPU, computed as
torchvision's RetinaNet computes its classification loss, timed with CUDA events on the inputs
`cargo xtask bench gpu` wrote (8 images x A anchors x C classes, f32 logits, i32 labels).

Rows (one JSON list on the last line of stdout), for f32, bf16 and f16 logits:
* "torchvision eager": RetinaNetClassificationHead.compute_loss verbatim: per image, one-hot
  targets from the labels, ignored anchors dropped by boolean indexing, sigmoid_focal_loss summed
  and divided by max(1, foreground), then the mean over images; loss.backward().
* "torchvision compile": the same math under torch.compile, written with a validity mask instead
  of boolean indexing (data-dependent shapes break the graph); same loss and gradient.

Run by `cargo xtask bench gpu` with `$FOCAL_PYTHON`; needs CUDA-enabled torch and torchvision.
"""

import argparse
import json
import statistics

import numpy as np
import torch
import torchvision
from torchvision.ops import sigmoid_focal_loss

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def eager_loss(logits, labels):
    # torchvision/models/detection/retinanet.py, RetinaNetClassificationHead.compute_loss
    losses = []
    for cls_logits, matched in zip(logits, labels):
        foreground = matched >= 0
        num_foreground = foreground.sum()
        gt = torch.zeros_like(cls_logits)
        gt[foreground, matched[foreground]] = 1.0
        valid = matched != -2
        losses.append(
            sigmoid_focal_loss(cls_logits[valid], gt[valid], reduction="sum") / max(1, num_foreground)
        )
    return sum(losses) / len(losses)


def masked_loss(logits, labels):
    foreground = labels >= 0
    num_foreground = foreground.sum(dim=1).clamp(min=1)
    gt = torch.nn.functional.one_hot(labels.clamp(min=0), logits.shape[-1]).to(logits.dtype)
    gt = gt * foreground.unsqueeze(-1)
    valid = (labels != -2).unsqueeze(-1).to(logits.dtype)
    per_elem = sigmoid_focal_loss(logits, gt, reduction="none") * valid
    return (per_elem.sum(dim=(1, 2)) / num_foreground).mean()


def time_steps(step, calls):
    step()
    torch.cuda.synchronize()
    samples = []
    for _ in range(calls):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e-3)
    return statistics.median(samples)


def main():
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--anchors", type=int, required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    shape = (args.images, args.anchors, args.classes)
    logits32 = torch.from_numpy(np.fromfile(f"{args.dir}/logits.f32", dtype=np.float32)).reshape(shape)
    labels = torch.from_numpy(np.fromfile(f"{args.dir}/labels.i32", dtype=np.int32)).reshape(shape[:2])
    labels = labels.long().cuda()
    compiled = torch.compile(masked_loss)
    rows = []
    for name, dtype in DTYPES.items():
        logits = logits32.to(dtype).cuda().requires_grad_(True)
        numel = logits.numel()
        nbytes = numel * 2 * logits.element_size() + labels.numel() * 4

        def eager_step():
            logits.grad = None
            eager_loss(logits, labels).backward()

        def compiled_step():
            logits.grad = None
            compiled(logits, labels).backward()

        for impl, step in (("torchvision eager", eager_step), ("torchvision compile", compiled_step)):
            try:
                median = time_steps(step, max(5, args.calls // 5))
            except Exception as e:  # torch.compile needs a working Triton toolchain
                print(f"{impl} {name}: {type(e).__name__}: {e}")
                continue
            rows.append(
                {
                    "group": "sigmoid_focal_fwd_bwd_gpu",
                    "impl": impl,
                    "shape": f"{args.images}x{args.anchors}x{args.classes} {name}",
                    "threads": 1,
                    "median_s": median,
                    "bytes": nbytes,
                }
            )
        del logits
        torch.cuda.empty_cache()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
