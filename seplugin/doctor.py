"""Environment doctor: ``python -m seplugin.doctor``.

Prints the versions of the stack and checks the known ways it breaks on current PyTorch.
Exits non-zero, with a one-line fix per failure, when anything is wrong.
"""
import importlib
import importlib.metadata as metadata
import platform
import sys
import warnings
from collections.abc import Callable

from packaging.version import Version

PACKAGES = ('torch', 'torchvision', 'numpy', 'setuptools', 'mmengine', 'mmcv', 'mmdet',
            'mmpretrain', 'pycocotools')
SETUP = 'bash tools/setup_env.sh'


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_setuptools() -> str | None:
    # torch >= 2.14 also asks for setuptools >= 77.0.3 itself; older torch does not.
    version = installed('setuptools')
    if version is None or Version(version) >= Version('81'):
        return (f'setuptools {version} is not < 81 (81 removed pkg_resources, which mmcv '
                "and mmengine import): pip install 'setuptools<81'")
    try:
        importlib.import_module('pkg_resources')
    except ImportError as e:
        return f"pkg_resources does not import ({e}): pip install 'setuptools<81'"
    return None


def check_mmcv_ops() -> str | None:
    version = installed('mmcv')
    if version is None:
        return f'mmcv is not installed: {SETUP}'
    if not Version('2.0.0') <= Version(version) < Version('2.2.0'):
        return f'mmcv {version} is outside >=2.0.0,<2.2.0 (what mmdet 3.3 accepts): {SETUP}'
    try:
        import torch
        from mmcv.ops import nms
        boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        if keep.tolist() != [0, 2]:
            return f'mmcv.ops.nms gives {keep.tolist()}, expected [0, 2]: {SETUP}'
    except Exception as e:  # any failure here means the compiled ops are unusable
        return (f'mmcv {version} compiled ops do not load ({type(e).__name__}: {e}); '
                f'mmcv-lite or a wheel built for another torch? {SETUP}')
    return None


def check_weights_only_resume() -> str | None:
    """A runner checkpoint (its message hub holds HistoryBuffers and numpy arrays) loads
    through the loader mmengine uses for local files, which seplugin makes a safe one
    (``weights_only``) on every torch, not only where torch's default changed (2.6)."""
    import os
    import tempfile

    import torch
    try:
        from mmengine.logging import MessageHub
        from mmengine.runner.checkpoint import CheckpointLoader

        import seplugin  # noqa: F401  (installs the allow-list and the loader)
        hub = MessageHub('seplugin-doctor')
        hub.update_scalar('train/loss', 1.0)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'runner.pth')
            torch.save({'message_hub': hub.state_dict()}, path)
            CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')
    except Exception as e:
        return (f'a runner checkpoint does not load with weights_only=True '
                f'({type(e).__name__}: {str(e).splitlines()[0]}): import seplugin '
                "(custom_imports=dict(imports=['seplugin'])) before loading")
    return None


def check_mmdet_config() -> str | None:
    import tempfile
    try:
        from mmengine import Config
        with tempfile.NamedTemporaryFile('w', suffix='.py') as f:
            f.write("_base_ = 'mmdet::_base_/default_runtime.py'\n")
            f.flush()
            Config.fromfile(f.name)
    except Exception as e:
        return (f"configs inheriting 'mmdet::' fail ({type(e).__name__}: {e}): "
                "pip install 'setuptools>=77.0.3,<81'")
    return None


CHECKS: dict[str, Callable[[], str | None]] = {
    'setuptools provides pkg_resources': check_setuptools,
    'mmcv compiled ops': check_mmcv_ops,
    'mmengine resolves mmdet:: configs': check_mmdet_config,
    'runner checkpoints load with weights_only=True': check_weights_only_resume,
}


def main() -> int:
    # setuptools < 81 is required on purpose; its deprecation notice is not a finding
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    print(f'python       {platform.python_version()} ({sys.executable})')
    for name in PACKAGES:
        print(f'{name:<12} {installed(name) or "NOT INSTALLED"}')
    try:
        import torch
        cuda = torch.cuda.is_available()
        print(f'{"cuda":<12} {torch.version.cuda if cuda else "not available (CPU only)"}')
    except ImportError:
        pass
    failures = []
    for name, check in CHECKS.items():
        problem = check()
        print(f'[{"FAIL" if problem else " ok "}] {name}')
        if problem:
            failures.append(problem)
    for problem in failures:
        print(f'fix: {problem}')
    if not failures:
        print('all checks passed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
