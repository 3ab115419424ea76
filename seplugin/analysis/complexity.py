"""Parameters, FLOPs and latency of models, and the paper's architecture tables."""
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import elementwise_flop_counter
from torch import nn

from seplugin.paper import PAPER_COMPLEXITY

FLOP_CONVENTION = (
    "FLOPs are the paper's: multiply-adds of convolutions and fully-connected layers, plus "
    "one per element for SE's global pooling and its channel-wise scaling; BN and ReLU are "
    'not counted (BN folds into the convolution at inference). The paper measures Caffe '
    "ResNets, whose stride sits on the first 1x1 conv (style='caffe'): at 224x224 "
    'ResNet-50 has 3.858 GFLOPs and SE-ResNet-50 3.871 (paper: 3.86 and 3.87). '
    "torchvision's layout (style='pytorch', stride on the 3x3 conv) costs 4.09 and 4.10.")

# The paper's numbers that need no training (Hu et al., TPAMI version), as it prints them.
# Exact parameter counts (1000-class head, r=16) of implementations, not of the paper: timm's
# seresnet50/101/152 and resnet50 and MMPretrain's SEResNet/ResNet give these same numbers.
IMPLEMENTATION_PARAMS = {('SEResNet', 50): 28_088_024, ('SEResNet', 101): 49_326_872,
                         ('SEResNet', 152): 66_821_848, ('ResNet', 50): 25_557_032}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flop_analyzer(model: nn.Module, inputs: tuple) -> FlopAnalyzer:
    """mmengine's FlopAnalyzer set to :data:`FLOP_CONVENTION`."""
    analyzer = FlopAnalyzer(model, inputs)
    # a counter that counts nothing: mmengine's set_op_handle(op, None) keeps the old one
    analyzer.set_op_handle('aten::batch_norm', lambda inputs, outputs: Counter())
    for op in ('aten::mean', 'aten::sum', 'aten::amax'):  # SE squeeze: one per element
        analyzer.set_op_handle(op, elementwise_flop_counter(1, 0))
    # SE scaling; addcmul is the scaling fused with the residual addition, which (as in
    # ResNet) is not counted
    scale = elementwise_flop_counter(0, 1)
    for op in ('aten::mul', 'aten::addcmul'):  # not the traced int products of shapes
        analyzer.set_op_handle(op, lambda i, o: flops if (flops := scale(i, o)) > 1 else 0)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():  # trace (cached) the inference graph, not training bookkeeping
        analyzer.total()
    return analyzer


def count_flops(model: nn.Module, inputs: tuple) -> dict[str, int]:
    """FLOPs of ``model(*inputs)``: ``{'total': ..., '<top-level module>': ...}``."""
    analyzer = flop_analyzer(model, inputs)
    by_module = analyzer.by_module()
    flops = {'total': analyzer.total()}
    flops.update({name: by_module[name] for name, _ in model.named_children()
                  if by_module.get(name)})
    return flops


def time_interleaved(fns: Sequence[Callable[[], object]], warmup: int = 3,
                     repeats: int = 10, shuffle: bool = False) -> list[list[float]]:
    """Seconds of each call of each function, ``repeats`` rounds timed interleaved (A B A B
    ...) so that machine noise falls on all of them alike: ``result[i][r]`` is function
    ``i`` in round ``r``. With ``shuffle`` each round runs them in a new (seeded) random
    order, so that none always follows the same one (on a CPU, the allocator and cache
    state a call inherits from the one before is a bias of its own). Synchronises CUDA
    around each call."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(0)
    for _ in range(repeats):
        if shuffle:
            rng.shuffle(order)
        for i in order:
            sync()
            start = time.perf_counter()
            fns[i]()
            sync()
            times[i].append(time.perf_counter() - start)
    return times


def measure_latency(fns: Sequence[Callable[[], object]], warmup: int = 3,
                    repeats: int = 10, shuffle: bool = False) -> list[float]:
    """Median seconds per call of each function, timed by :func:`time_interleaved`."""
    return [statistics.median(samples)
            for samples in time_interleaved(fns, warmup, repeats, shuffle)]


def classifier(backbone: dict, num_classes: int = 1000) -> nn.Module:
    """An mmpretrain ImageNet classifier (GAP + linear head) around a backbone config."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import seplugin  # noqa: F401
    backbone = dict(backbone, out_indices=(3,))
    width = 512 if backbone['depth'] < 50 else 2048
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope is current
        return MODELS.build(dict(
            type='ImageClassifier', backbone=backbone, neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=width))).eval()


# The titles of the tables of paper_tables(), which ``tools/complexity.py --paper`` prints
# as ``## <title>`` lines: stable labels that checks of its output can find.
PAPER_TABLES = ('parameters', 'reduction ratio (Table 10)', 'stages (Table 13)',
                'GFLOPs (Table 2)')


def paper_tables(with_flops: bool = True) -> dict[str, list[dict]]:
    """Each paper number next to seplugin's, as rows ``{name, paper, ours}``, under the
    titles of :data:`PAPER_TABLES`. Parameter rows are named by registry class and depth
    (``SEResNet-50``, ``ResNet-50``), the others as the paper names them (``SE-ResNet-50
    r=16``, ``SE_Stage_2``, ``SE-ResNet-50``)."""
    tables = {title: [] for title in PAPER_TABLES}
    for (kind, depth), counted in IMPLEMENTATION_PARAMS.items():
        ours = count_params(classifier(dict(type=kind, depth=depth)))
        tables['parameters'].append(dict(name=f'{kind}-{depth}',
                                         paper=PAPER_COMPLEXITY['params_m'].get((kind, depth)),
                                         implementations=counted, ours=ours))
    for ratio, paper in PAPER_COMPLEXITY['ratio_params_m'].items():
        ours = count_params(classifier(dict(type='SEResNet', depth=50, se_ratio=ratio)))
        tables['reduction ratio (Table 10)'].append(
            dict(name=f'SE-ResNet-50 r={ratio}', paper=paper, ours=ours / 1e6))
    stages = {'ResNet-50': (False,) * 4, 'SE_Stage_2': (True, False, False, False),
              'SE_Stage_3': (False, True, False, False),
              'SE_Stage_4': (False, False, True, False), 'SE_All': (True,) * 4}
    for name, se_stages in stages.items():
        ours = count_params(classifier(dict(type='SEResNet', depth=50, se_stages=se_stages)))
        tables['stages (Table 13)'].append(
            dict(name=name, paper=PAPER_COMPLEXITY['stage_params_m'][name], ours=ours / 1e6))
    if with_flops:
        image = torch.zeros(1, 3, 224, 224)
        for depth, (plain, se) in PAPER_COMPLEXITY['gflops'].items():
            for name, paper, stages in ((f'ResNet-{depth}', plain, (False,) * 4),
                                        (f'SE-ResNet-{depth}', se, (True,) * 4)):
                model = classifier(dict(type='SEResNet', depth=depth, style='caffe',
                                        se_stages=stages))
                ours = count_flops(model, (image,))['total'] / 1e9
                tables['GFLOPs (Table 2)'].append(dict(name=name, paper=paper, ours=ours))
    return tables


def build_from_config(path: str) -> tuple[nn.Module, str]:
    """(model in eval mode, scope) from a config file, on the GPU when there is one."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import seplugin  # noqa: F401
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope', 'mmengine')
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return model.to(device).eval(), scope


def model_calls(model: nn.Module, scope: str,
                shape: tuple[int, int]) -> tuple[nn.Module, tuple, Callable[[], object]]:
    """What to measure for a built model: (module for FLOPs, its inputs, a timed call).

    Detectors are measured on their tensor forward (backbone, neck, heads) for FLOPs and
    on ``predict`` (post-processing included) for latency; classifiers on their logits.
    The input is an in-memory tensor: no dataloader is timed.
    """
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, *shape, device=device)
    if scope != 'mmdet':
        return model, (image,), torch.no_grad()(lambda: model(image))
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                         batch_input_shape=shape, scale_factor=(1.0, 1.0)))

    class TensorForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.neck = model.backbone, getattr(model, 'neck', None)
            self.detector = model

        def forward(self, x):
            return model._forward(x, [sample])

    return (TensorForward(), (image,),
            torch.no_grad()(lambda: model.predict(image, [sample], rescale=False)))
