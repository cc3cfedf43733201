"""Exports a torchvision ResNet, ResNet-FPN backbone or RetinaNet state_dict to safetensors,
keyed by torchvision's own names, for `fpn_net::weights::load`.

Needs a Python with torch, torchvision and safetensors. Examples:

    # torchvision's pretrained RetinaNet (downloads the weights once into the torch cache)
    python export_torchvision.py retinanet_resnet50_fpn --weights DEFAULT -o retinanet.safetensors
    # a checkpoint you trained (a state_dict, or a dict with a "model" entry)
    python export_torchvision.py retinanet_resnet50_fpn_v2 --checkpoint ckpt.pth -o mine.safetensors
    # an ImageNet ResNet-50 for the backbone body (fc.* is exported too; load with Extra::Ignore)
    python export_torchvision.py resnet50 --weights IMAGENET1K_V1 -o resnet50.safetensors

Inside a RetinaNet file the backbone sits under the prefix `backbone.` (`backbone.body.*`,
`backbone.fpn.*`); a ResNet-FPN backbone built here (`resnet50_fpn`, `resnet18_fpn_v2`...) has
no prefix. Tensors are written as float32 (or --dtype f16/bf16) and contiguous;
`num_batches_tracked` counters are kept (the loader skips them).
"""

import argparse

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101"]
RETINANETS = ["retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"]


def build(name: str, weights):
    if name in RESNETS:
        return getattr(torchvision.models, name)(weights=weights)
    if name in RETINANETS:
        return getattr(torchvision.models.detection, name)(weights=weights)
    for depth in RESNETS:
        for version in ("v1", "v2"):
            if name == f"{depth}_fpn" + ("" if version == "v1" else "_v2"):
                c5 = 2048 if depth in ("resnet50", "resnet101") else 512
                extra = LastLevelP6P7(256, 256) if version == "v1" else LastLevelP6P7(c5, 256)
                return resnet_fpn_backbone(
                    backbone_name=depth,
                    weights=weights,
                    trainable_layers=5,
                    returned_layers=[2, 3, 4],
                    extra_blocks=extra,
                    norm_layer=FrozenBatchNorm2d,
                )
    raise SystemExit(f"unknown model {name}")


def main():
    fpns = [f"{d}_fpn{v}" for d in RESNETS for v in ("", "_v2")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=RESNETS + RETINANETS + fpns)
    parser.add_argument("--weights", help="a torchvision weights name (DEFAULT, IMAGENET1K_V1...)")
    parser.add_argument("--checkpoint", help="a .pth state_dict (or {'model': state_dict}) to load first")
    parser.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    model = build(args.model, args.weights)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state:
            state = state["model"]
        model.load_state_dict(state)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(tensors, args.output, metadata={"model": args.model})
    print(f"wrote {len(tensors)} tensors of {args.model} to {args.output}")


if __name__ == "__main__":
    main()
