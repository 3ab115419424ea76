"""SE anywhere, necks: one config line puts SE on the maps any mmdet neck receives or returns.

``dict(type='SENeck', neck=<any neck config>, se_inputs=..., se_outputs=...)`` builds the
neck and adds SE layers on its input maps, its output maps and, for the FPN family, after
its lateral 1x1 convs (before the top-down sum). The neck keeps its class's forward and
every checkpoint key; SE adds ``input_se_layers.*``, ``output_se_layers.*`` and
``lateral_convs.<i>.se_layer.*``, so a plain neck checkpoint loads unchanged.
"""
import copy
from collections.abc import Sequence

import torch
from torch import nn

from seplugin.models.layers.se_after import add_se_after, restore_se_classes
from seplugin.models.layers.se_host import SEHostMixin, make_se_host
from seplugin.models.layers.se_layer import SELayer
from seplugin.registry import MODEL_REGISTRIES, MODELS


def _in_channels(neck: nn.Module, cfg: dict) -> list[int]:
    """Channels of each map the neck receives, in the order it receives them."""
    channels = getattr(neck, 'in_channels', cfg.get('in_channels'))
    if isinstance(channels, int) and isinstance(getattr(neck, 'num_levels', None), int):
        return [channels] * neck.num_levels  # BFP: one width for all levels
    if isinstance(channels, (list, tuple)) and all(isinstance(c, int) for c in channels):
        if type(neck).__name__ == 'YOLOV3Neck':  # lists them deepest first, takes them last
            return list(channels)[::-1]
        return list(channels)
    raise ValueError(f'SENeck: cannot read the input channels of {type(neck).__name__} '
                     f'(in_channels={channels!r}); give se_in_channels=[...]')


def _out_channels(neck: nn.Module, cfg: dict) -> list[int]:
    """Channels of each map the neck returns."""
    channels = getattr(neck, 'out_channels', cfg.get('out_channels'))
    if isinstance(channels, (list, tuple)):  # YOLOV3Neck, SSDNeck
        return list(channels)
    if not isinstance(channels, int):  # BFP keeps its input widths
        return _in_channels(neck, cfg)
    if isinstance(getattr(neck, 'num_outs', None), int):  # FPN family, HRFPN, NAS-FPN
        count = neck.num_outs
    elif hasattr(neck, 'extra_convs'):  # ChannelMapper
        count = len(neck.convs) + len(neck.extra_convs or [])
    else:  # YOLOXPAFPN, CSPNeXtPAFPN: one output per input
        count = len(_in_channels(neck, cfg))
    return [channels] * count


class SENeckMixin(SEHostMixin):
    """What an SE neck adds to its neck class: SE on inputs and outputs, SE classes kept
    through norm converters, and the neutral start on loading a plain neck's weights
    (:class:`SEHostMixin`, which also starts the SE layers after lateral convs)."""

    se_loaded_part = 'whose neck is'

    def forward(self, inputs: Sequence[torch.Tensor], *args, **kwargs):
        restore_se_classes(self, self.se_sites)
        if getattr(self, 'input_se_layers', None) is not None:
            inputs = type(inputs)(se(x) for se, x in zip(self.input_se_layers, inputs))
        outs = super().forward(inputs, *args, **kwargs)
        if getattr(self, 'output_se_layers', None) is not None:
            outs = type(outs)(se(o) for se, o in zip(self.output_se_layers, outs))
        return outs

    def se_layers(self):
        """(name, SELayer) of every SE layer."""
        for name, module in self.named_modules():
            if isinstance(module, SELayer):
                yield name, module

    def _se_maps_loaded_without(self, state_dict, prefix: str) -> list[str]:
        """``input_se_layers``/``output_se_layers`` when ``state_dict`` holds every other
        parameter of the neck and none of theirs (a plain neck's weights)."""
        trunk = [n for n, _ in self.named_parameters() if 'se_layer' not in n
                 and not n.startswith(('input_se_layers.', 'output_se_layers.'))]
        if not trunk or not all(f'{prefix}{n}' in state_dict for n in trunk):
            return []
        return [name for name in ('input_se_layers', 'output_se_layers')
                if getattr(self, name, None) is not None
                and not any(key.startswith(f'{prefix}{name}.') for key in state_dict)]

    def _start_se_maps_neutral(self, names: list[str]) -> list[str]:
        return [f'  {name}.{i}: gate {se.start_constant("one"):.6f} (on a map)'
                for name in names for i, se in enumerate(getattr(self, name))]


def insert_se_neck(neck: nn.Module,
                   se_inputs: bool = False,
                   se_outputs: bool = True,
                   se_lateral: bool = False,
                   se_ratio: float = 16,
                   se_cfg: dict | None = None,
                   neutral_start: bool = True,
                   se_in_channels: Sequence[int] | None = None,
                   se_out_channels: Sequence[int] | None = None,
                   cfg: dict | None = None) -> nn.Module:
    """Add SE layers to a built ``neck`` in place (keys kept) and return it, its class now
    ``SE<class>``. Arguments as :class:`SENeck`'s; ``cfg`` is the neck's config, read for
    the channels a neck does not keep as attributes."""
    cfg = cfg or {}
    se_cfg = dict(se_cfg or {})
    for key in ('type', 'ratio', 'in_channels'):
        if key in se_cfg:
            raise ValueError(f'se_cfg may not set {key!r} ({se_cfg[key]!r}): the ratio is '
                             'se_ratio, the channels come from the neck')
    se_cfg['ratio'] = se_ratio
    name = type(neck).__name__
    if isinstance(neck, SENeckMixin) and neck.se_sites or getattr(
            neck, 'input_se_layers', None) or getattr(neck, 'output_se_layers', None):
        raise ValueError(f'{name} already has SE layers')
    if not (se_inputs or se_outputs or se_lateral):
        raise ValueError('SENeck needs at least one of se_inputs, se_outputs, se_lateral')
    sites = []
    if se_lateral:
        laterals = getattr(neck, 'lateral_convs', None)
        if not isinstance(laterals, nn.ModuleList):
            raise ValueError(f'se_lateral=True needs a neck with lateral_convs (the FPN '
                             f'family); {name} has none')
        for i, conv in enumerate(laterals):
            add_se_after(conv, conv.out_channels, se_cfg)
            sites.append(f'lateral_convs.{i}')
    neck.input_se_layers = nn.ModuleList(
        SELayer(c, **se_cfg) for c in se_in_channels or _in_channels(neck, cfg)) \
        if se_inputs else None
    neck.output_se_layers = nn.ModuleList(
        SELayer(c, **se_cfg) for c in se_out_channels or _out_channels(neck, cfg)) \
        if se_outputs else None
    make_se_host(neck, SENeckMixin, tuple(sites))
    neck.se_lateral, neck.se_output, neck.se_input = se_lateral, se_outputs, se_inputs
    neck.se_neutral_start = neutral_start
    return neck


class SENeck:
    """Any mmdet neck with Squeeze-and-Excitation on the maps it receives and/or returns.

    Builds ``neck`` and adds an SE layer per input map (``se_inputs``), per output map
    (``se_outputs``) and, for necks with ``lateral_convs`` (FPN, PAFPN, FPN_CARAFE, ...),
    after each lateral conv (``se_lateral``, what :class:`SEFPN` does). The result is the
    neck itself, its class ``SE<class>`` and its keys unchanged: a plain neck checkpoint
    loads without key edits. Loading one starts the SE layers neutral: exactly after the
    lateral convs (the gate is divided out of the conv), as close to 1 as the gate gets on
    the maps (1 - 4.5e-5).

    Args:
        neck (dict): The neck's config, built with this scope's registry.
        se_inputs (bool): SE on every input map. Defaults to False.
        se_outputs (bool): SE on every output map. Defaults to True.
        se_lateral (bool): SE after every lateral conv (FPN family). Defaults to False.
        se_ratio (float): Reduction ratio r of every SE layer. Defaults to 16.
        se_cfg (dict, optional): Further :class:`SELayer` options.
        neutral_start (bool): Start SE neutral on loading a plain neck. Defaults to True.
        se_in_channels (Sequence[int], optional): Channels of the input maps, for a neck
            whose ``in_channels`` do not say them. Defaults to the neck's.
        se_out_channels (Sequence[int], optional): Channels of the output maps, likewise.

    Example:
        >>> neck = SENeck(neck=dict(type='FPN', in_channels=[64, 128], out_channels=32,
        ...                         num_outs=3), se_lateral=True)
        >>> feats = (torch.rand(1, 64, 16, 16), torch.rand(1, 128, 8, 8))
        >>> type(neck).__name__, [tuple(o.shape) for o in neck(feats)]
        ('SEFPN', [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4)])
    """

    registry_scope = 'mmdet'

    def __new__(cls,
                neck: dict,
                se_inputs: bool = False,
                se_outputs: bool = True,
                se_lateral: bool = False,
                se_ratio: float = 16,
                se_cfg: dict | None = None,
                neutral_start: bool = True,
                se_in_channels: Sequence[int] | None = None,
                se_out_channels: Sequence[int] | None = None) -> nn.Module:
        if not isinstance(neck, dict) or 'type' not in neck:
            raise TypeError(f'SENeck needs neck=<a neck config dict with a type>, got {neck!r}')
        scope = cls.registry_scope if cls.registry_scope in MODEL_REGISTRIES else next(
            s for s in MODEL_REGISTRIES if s != 'seplugin')
        registry = MODEL_REGISTRIES[scope]
        with registry.switch_scope_and_registry(scope) as registry:
            if isinstance(neck['type'], str) and registry.get(neck['type']) is None:
                raise KeyError(f'SENeck: neck type {neck["type"]!r} is not in the {scope} '
                               'registry')
            built = registry.build(copy.deepcopy(dict(neck)))
        return insert_se_neck(built, se_inputs, se_outputs, se_lateral, se_ratio, se_cfg,
                              neutral_start, se_in_channels, se_out_channels, neck)


MODELS.register_module('SENeck', module=SENeck)
for _scope in ('mmdet', 'mmpretrain'):
    if _scope in MODEL_REGISTRIES:
        MODEL_REGISTRIES[_scope].register_module(
            'SENeck', module=type('SENeck', (SENeck,), {'registry_scope': _scope,
                                                        '__doc__': SENeck.__doc__}))
