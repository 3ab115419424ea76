"""What SE anywhere gives the network it puts SE into (an SEBackbone's backbone, an
SENeck's neck): its generated ``SE<class>`` and the neutral start on loading plain weights.

:func:`make_se_host` swaps the network's class in place for ``SE<class>`` (``mixin`` before
the class, one generated class per pair, cached) and registers the load post-hook
:func:`start_missing_se_neutral`. :class:`SEHostMixin`'s ``_load_from_state_dict`` notes,
before the children load, which SE layers the state dict lacks while it holds the module
they follow (the plain network's weights); the hook then starts those neutral
(:func:`~seplugin.models.layers.se_after.start_neutral`) and logs each.
"""
from mmengine.logging import print_log
from torch import nn

from seplugin.models.layers.se_after import has_trunk_not_se, start_neutral


class SEHostMixin:
    """Mixed into the class of a network with SE after some of its modules (``se_sites``).

    Subclasses with SE layers that follow no module (an SENeck's maps) override
    :meth:`_se_maps_loaded_without` and :meth:`_start_se_maps_neutral`.
    """

    se_sites: tuple[str, ...] = ()
    se_neutral_start: bool = True
    # what the state dict holds for the SE layers that start neutral, for the log
    se_loaded_part: str = 'whose modules are'

    def _se_maps_loaded_without(self, state_dict, prefix: str) -> list[str]:
        """The SE layers on maps (after no module) that ``state_dict`` lacks while it holds
        the rest: none here."""
        return []

    def _start_se_maps_neutral(self, names: list[str]) -> list[str]:
        """Start the named map SE layers neutral; one log line each."""
        return []

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Before the children load: the sites whose module this state dict holds without
        # its SE layer (plain weights), for start_missing_se_neutral after loading.
        if self.se_neutral_start:
            self._se_to_start = (
                [site for site in self.se_sites
                 if has_trunk_not_se(self.get_submodule(site), state_dict, f'{prefix}{site}.')],
                self._se_maps_loaded_without(state_dict, prefix))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def start_missing_se_neutral(host: SEHostMixin, incompatible_keys) -> None:
    """Load post-hook: start neutral the SE layers noted by ``_load_from_state_dict``, and
    log them."""
    sites, maps = host.__dict__.pop('_se_to_start', None) or ([], [])
    lines = [f'  {site}.se_layer: {start_neutral(host.get_submodule(site))}' for site in sites]
    lines += host._start_se_maps_neutral(maps)
    if lines:
        print_log(f'{type(host).__name__}: {len(lines)} SE layers are not in the loaded state '
                  f'dict, {host.se_loaded_part}; they start neutral:\n' + '\n'.join(lines),
                  logger='current')


_SE_HOST_CLASSES: dict[tuple[type, type], type] = {}


def se_host_class(mixin: type, cls: type) -> type:
    """``SE<cls>``: ``cls`` with ``mixin`` before it (cached; SEFPN for SENeck's FPN)."""
    if (mixin, cls) not in _SE_HOST_CLASSES:
        _SE_HOST_CLASSES[mixin, cls] = type(f'SE{cls.__name__}', (mixin, cls),
                                            {'__module__': cls.__module__})
    return _SE_HOST_CLASSES[mixin, cls]


def register_se_host_class(mixin: type, cls: type, se_cls: type) -> None:
    """Use ``se_cls`` (a subclass of ``mixin`` and ``cls``) as ``SE<cls>`` for ``mixin``."""
    _SE_HOST_CLASSES[mixin, cls] = se_cls


def make_se_host(module: nn.Module, mixin: type, sites: tuple[str, ...]) -> nn.Module:
    """Give ``module`` its ``SE<class>`` (unless it is one), its SE sites and the load
    post-hook of the neutral start; returns it."""
    if not isinstance(module, mixin):
        module.__class__ = se_host_class(mixin, type(module))
    module.se_sites = tuple(sites)
    if start_missing_se_neutral not in module._load_state_dict_post_hooks.values():
        module.register_load_state_dict_post_hook(start_missing_se_neutral)
    return module
