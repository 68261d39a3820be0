"""A stand-in for torch-fidelity's Inception weights file (the real one cannot be
fetched here): the same architecture and keys, random values drawn so that each layer
keeps the scale of its input (He-normal convolutions, BatchNorm at identity), so that
different images give different features, as the real network's do."""

import math
from pathlib import Path
from unittest import mock

import torch


def write_standin_weights(path: Path, seed: int = 0) -> Path:
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    # Built without reading any file: torch-fidelity's constructor loads weights.
    with mock.patch.object(fe.torch, "load", lambda *args, **kwargs: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="-")
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=rng) * math.sqrt(2 / fan_in))
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=rng) / math.sqrt(module.in_features))
    torch.save(net.state_dict(), path)
    return path
