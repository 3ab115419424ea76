"""Published starting weights: what they are (MMPretrain's metafiles) and how to fetch them.

The COCO configs name their ImageNet checkpoints by URL (``configs/_base_/imagenet_weights.py``)
and mmengine downloads them through ``torch.hub``. Two things are added here:

- :func:`mmpretrain_model` finds a URL in the installed MMPretrain's own metafiles, so the
  ImageNet top-1 that the model zoo and ``tools/compare.py`` show is MMPretrain's published
  number, never a copy typed into seplugin.
- :func:`load_from_http` is mmengine's http(s) checkpoint loader with an error that says,
  when the download fails (offline, proxy, moved file), which file to fetch and how to point
  the config at a local copy, instead of a bare ``URLError``.
"""
import functools
import glob
import os.path as osp
from urllib.parse import urlparse

import yaml

# The config key under which seplugin's detection configs name their starting weights.
BACKBONE_CHECKPOINT_KEY = 'model.backbone.init_cfg.checkpoint'


@functools.cache
def _mmpretrain_models() -> dict[str, dict]:
    """Every model of the installed MMPretrain's metafiles, keyed by its weights URL."""
    import mmpretrain
    root = osp.join(osp.dirname(mmpretrain.__file__), '.mim')
    models = {}
    for path in sorted(glob.glob(osp.join(root, 'configs', '*', 'metafile.yml'))):
        with open(path) as f:
            content = yaml.safe_load(f) or {}
        collections = {c['Name']: c for c in content.get('Collections') or []}
        for model in content.get('Models') or []:
            if not model.get('Weights'):
                continue
            collection = collections.get(model.get('In Collection'), {})
            metrics = next((r['Metrics'] for r in model.get('Results') or []
                            if r.get('Dataset') == 'ImageNet-1k'), {})
            models[model['Weights']] = dict(
                name=model['Name'], config=model.get('Config'),
                metafile=osp.relpath(path, root),
                top1=metrics.get('Top 1 Accuracy'), top5=metrics.get('Top 5 Accuracy'),
                epochs=(model.get('Metadata') or {}).get(
                    'Epochs', (collection.get('Metadata') or {}).get('Epochs')))
    return models


def mmpretrain_model(url: str) -> dict | None:
    """MMPretrain's metafile entry for a weights URL: ``name``, ``config``, ``metafile``,
    ``top1``, ``top5`` (ImageNet-1k, %), ``epochs``; None for a URL it does not publish."""
    return _mmpretrain_models().get(url)


def download_advice(url: str, reason: str) -> str:
    """What to do when ``url`` cannot be downloaded: the file, where torch.hub looks for
    it, and the ``--cfg-options`` line that points a config at a local copy."""
    import torch.hub
    name = osp.basename(urlparse(url).path)
    cache = osp.join(torch.hub.get_dir(), 'checkpoints', name)
    return (f'could not download the checkpoint {url} ({reason}).\n'
            f'Fetch {name} on a machine that can reach it, e.g.\n'
            f'  wget {url}\n'
            f'then either put it at {cache} (torch.hub looks there before downloading), or '
            f'point the config at your copy:\n'
            f'  --cfg-options {BACKBONE_CHECKPOINT_KEY}=/path/to/{name}\n'
            f'(seplugin\'s detection configs name their starting weights there; for a '
            f'checkpoint given as load_from: --cfg-options load_from=/path/to/{name})')


class DownloadError(OSError):
    """A checkpoint URL could not be fetched; the message says what to do instead."""


def load_from_http(filename: str, map_location=None, model_dir: str | None = None):
    """mmengine's ``load_from_http`` with :func:`download_advice` as its error."""
    from mmengine.runner.checkpoint import load_from_http as mmengine_load_from_http
    try:
        return mmengine_load_from_http(filename, map_location=map_location,
                                       model_dir=model_dir)
    except OSError as e:  # URLError, HTTPError, timeouts, refused connections
        raise DownloadError(download_advice(filename, f'{type(e).__name__}: {e}')) from e


def use_explained_http_loader() -> None:
    """Make mmengine load ``http://``/``https://`` checkpoints with :func:`load_from_http`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)
