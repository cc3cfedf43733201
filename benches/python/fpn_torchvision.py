"""PyTorch eager baseline of `cargo xtask bench fpn`: torchvision's resnet_fpn_backbone
(FrozenBatchNorm2d, LastLevelP6P7 from P5) with fpn-net's synthetic weights
(crates/fpn-net/tests/fixtures/synthetic.py), on the inputs xtask wrote to --dir.

Each case is `forward:<resnet>:NxCxHxW` (inference under no_grad) or
`train:<resnet>:NxCxHxW` (zero_grad, forward, backward of sum_l sum(P_l * dP_l) with the
synthetic dP_l, SGD step with momentum 0.9 and weight decay 1e-4). Writes the first forward's
P3..P7 of case i to out<i>_P<l>.f32 for xtask to compare.

It then serves timing rounds so that xtask can interleave them with its own (a neighbour's load
then slows both alike): it prints `ready`, and for each line `<case> <seconds>` on stdin runs
that case repeatedly for about that long (at least twice) and prints the JSON list of
[wall, process CPU] seconds of each call; `quit` ends it.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "crates", "fpn-net", "tests", "fixtures"))
from synthetic import synthetic_state_dict, uniform  # noqa: E402


def build(depth):
    model = resnet_fpn_backbone(
        backbone_name=depth,
        weights=None,
        trainable_layers=5,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
        norm_layer=FrozenBatchNorm2d,
    )
    model.load_state_dict(synthetic_state_dict(model.state_dict(), 0))
    return model


def samples_for(step, budget):
    """[wall seconds, process CPU seconds (all threads)] of each call."""
    samples = []
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline or len(samples) < 2:
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        samples.append([time.perf_counter() - t0, time.process_time() - c0])
    return samples


def make_step(kind, depth, x, index, out_dir):
    model = build(depth)
    with torch.no_grad():
        outputs = list(model(x).values())
    for l, p in enumerate(outputs):
        p.contiguous().numpy().tofile(f"{out_dir}/out{index}_P{l + 3}.f32")
    if kind == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                model(x)

        return step
    model.train()
    grads = [
        torch.from_numpy(uniform(f"dP{l + 3}", 1, p.numel(), -1.0, 1.0)).reshape(p.shape)
        for l, p in enumerate(outputs)
    ]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad()
        out = model(x)
        loss = sum((p * g).sum() for p, g in zip(out.values(), grads))
        loss.backward()
        opt.step()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    steps = []
    for i, case in enumerate(args.cases):
        kind, depth, shape = case.split(":")
        dims = [int(v) for v in shape.split("x")]
        x = torch.from_numpy(np.fromfile(f"{args.dir}/x{i}.f32", dtype=np.float32)).reshape(dims)
        steps.append(make_step(kind, depth, x, i, args.dir))
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        case, budget = int(words[0]), float(words[1])
        print(json.dumps(samples_for(steps[case], budget)), flush=True)


if __name__ == "__main__":
    main()
