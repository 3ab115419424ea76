"""Checkpoint files: runner checkpoints load with weights_only=True (resume and test from what
the runner wrote); loading is torch's own, read once, and explained only when it fails."""
import argparse
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from packaging.version import Version
from toy import make_runner

from seplugin.checkpoint import HAS_ALLOW_LIST, CheckpointError, load_file, verify_checkpoint
from seplugin.engine.runner import CheckedRunner

needs_allow_list = pytest.mark.skipif(
    not HAS_ALLOW_LIST, reason='this torch has no weights_only allow-list (before 2.5), and '
    'loads runner checkpoints with its default weights_only=False')


def test_resume_and_test_from_runner_checkpoint(tmp_path):
    first = make_runner(tmp_path, max_iters=2)
    first.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.exists()
    saved = torch.load(ckpt)  # what mmengine does: weights_only=True by default on torch>=2.6
    assert isinstance(saved['message_hub']['log_scalars']['train/loss'], HistoryBuffer)

    resumed = make_runner(tmp_path / 'resumed', max_iters=4, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4
    # the scheduler counted on from the checkpoint's 2 steps, not from 0
    assert resumed.param_schedulers[0].state_dict()['_global_step'] == 4
    assert resumed.optim_wrapper.optimizer.state_dict()['state']  # momentum buffers exist
    assert len(resumed.message_hub.get_scalar('train/loss').data[0]) == 4  # 2 saved + 2 new

    tester = make_runner(tmp_path / 'test', max_iters=2, load_from=str(ckpt))
    metrics = tester.test()
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    torch.testing.assert_close(tester.model.fc.weight, saved['state_dict']['fc.weight'])


@needs_allow_list
def test_without_allow_list_torch_refuses_runner_checkpoints(tmp_path):
    """The break is real: a fresh interpreter without seplugin cannot load the file."""
    make_runner(tmp_path, max_iters=2).train()
    code = ('import torch, sys; torch.load(sys.argv[1], weights_only=True)')
    result = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'iter_2.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'HistoryBuffer' in result.stderr or 'getattr' in result.stderr


@needs_allow_list
def test_getattr_is_allowed_only_for_history_buffer_statistics():
    class Sneaky:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    buffer = io.BytesIO()
    torch.save(Sneaky(), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError,
                       match=r"getattr\(<class 'numpy.ndarray'>, 'tofile'\); only "
                             r"HistoryBuffer statistics \['current', 'max', 'mean', 'min'\]"):
        torch.load(buffer, weights_only=True)


@needs_allow_list
def test_arbitrary_globals_stay_rejected():
    class Evil:
        def __reduce__(self):
            return subprocess.call, (['true'],)

    buffer = io.BytesIO()
    torch.save(Evil(), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=r'Unsupported global: GLOBAL \S+\.call'):
        torch.load(buffer, weights_only=True)


# -- loading as torch does, explained when it fails ------------------------------------------
def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (Linux)."""
    with open('/proc/self/io') as f:
        return int(next(line for line in f if line.startswith('rchar:')).split()[1])


@pytest.fixture
def padded_runner_checkpoint(tmp_path):
    """A runner checkpoint of 2 iterations, padded with 64 MB the runner does not use, so
    that one read of the file stands out from everything else the process reads."""
    make_runner(tmp_path / 'run', max_iters=2).train()
    checkpoint = torch.load(tmp_path / 'run' / 'iter_2.pth')
    checkpoint['padding'] = torch.zeros(16 * 2**20)  # 64 MB of float32
    path = tmp_path / 'padded.pth'
    torch.save(checkpoint, path)
    return path


@pytest.mark.skipif(not os.path.exists('/proc/self/io'), reason='counts reads with /proc')
@pytest.mark.parametrize('map_location', ['cpu', 'callable'])
def test_verify_and_resume_read_the_file_once(tmp_path, padded_runner_checkpoint,
                                              map_location):
    """What tools/train.py --resume does: the cheap check, then the Runner's load, also with
    a map_location other than 'cpu' (on a GPU, --resume maps to the device)."""
    size = padded_runner_checkpoint.stat().st_size
    runner = make_runner(tmp_path / 'resumed', max_iters=4, runner_cls=CheckedRunner)
    location = (lambda storage, where: storage) if map_location == 'callable' else 'cpu'
    before = _bytes_read()
    verify_checkpoint(str(padded_runner_checkpoint))
    checked = _bytes_read() - before
    runner.resume(str(padded_runner_checkpoint), map_location=location)
    loaded = _bytes_read() - before
    assert runner.iter == 2
    assert checked < 2**20, checked  # the zip directory and the pickle, not the tensors
    assert size <= loaded < 1.2 * size, (loaded, size)


def test_load_passes_no_weights_only(tmp_path, monkeypatch):
    """torch's own default decides (and with it the TORCH_FORCE_*_WEIGHTS_ONLY_LOAD
    variables): seplugin passes no weights_only to torch.load."""
    path = tmp_path / 'w.pth'
    torch.save({'w': torch.ones(2)}, path)
    calls = []
    load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k) or load(*a, **k))
    load_file(str(path))
    CheckedRunner.load_checkpoint(
        make_runner(tmp_path / 'r', max_iters=1, runner_cls=CheckedRunner), str(path))
    assert len(calls) == 2 and not any('weights_only' in k for k in calls)


def test_force_no_weights_only_load_works_as_torch_documents(tmp_path, monkeypatch):
    """A trusted checkpoint with a type outside the allow-list loads with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (torch reads it at each load); without it (torch
    >= 2.6) the error names the type and both ways out."""
    path = tmp_path / 'namespace.pth'
    torch.save({'args': argparse.Namespace(lr=0.1), 'w': torch.ones(2)}, path)
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    if Version(torch.__version__.split('+')[0]) >= Version('2.6'):
        with pytest.raises(CheckpointError, match=r"namespace.pth' holds objects that "
                                                  r'torch.load\(weights_only=True\) does not '
                                                  r'load: argparse.Namespace\. If you trust'):
            load_file(str(path))
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    assert load_file(str(path))['args'].lr == 0.1
    runner = make_runner(tmp_path / 'r', max_iters=1, runner_cls=CheckedRunner)
    assert CheckedRunner.load_checkpoint(runner, str(path))['args'].lr == 0.1


@pytest.mark.skipif(not hasattr(torch.serialization, 'set_crc32_options'),
                    reason='this torch always writes checksums')
def test_archive_without_checksums_is_not_called_damaged(tmp_path):
    path = tmp_path / 'no_crc.pth'
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({'w': torch.arange(1000.)}, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert all(info.CRC == 0 for info in archive.infolist())  # really without checksums
    verify_checkpoint(str(path), checksums=True)
    torch.testing.assert_close(load_file(str(path))['w'], torch.arange(1000.))


def _flip(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset:offset + 8] = bytes(b ^ 0xFF for b in damaged[offset:offset + 8])
    return bytes(damaged)


def _record_offset(path, predicate) -> int:
    """Where the bytes of the first record matching ``predicate`` start in the file."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if predicate(i.filename))
        with archive.open(info) as record:
            record.read(1)
    with open(path, 'rb') as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack('<HH', f.read(4))
    return info.header_offset + 30 + name_length + extra_length


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save({'w': torch.arange(100000.)}, path)
    return path


def test_bad_files_are_named_with_what_is_wrong(tmp_path, good_file):
    data = good_file.read_bytes()
    files = {
        'empty': (b'', r"checkpoint '\S+empty.pth' is empty \(0 bytes\)"),
        'truncated': (data[:len(data) // 2],
                      r"checkpoint '\S+truncated.pth' is truncated or damaged \(\d+ bytes\)"),
        'text': (b'<html>Not Found</html>',
                 r"'\S+text.pth' is not a PyTorch checkpoint: it is neither a zip archive "
                 r".* it starts with b'<htm'"),
        'pickle': (_flip(data, _record_offset(good_file, lambda n: n.endswith('data.pkl'))),
                   r"checkpoint '\S+pickle.pth' is damaged: its record 'good/data.pkl' does "
                   r'not match its CRC-32 checksum'),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('model.json', '{}')
    files['zip'] = (buffer.getvalue(), r"'\S+zip.pth' is a zip archive but not a PyTorch "
                                       r"checkpoint: it has no data.pkl record \(records: "
                                       r"\['model.json'\]\)")
    for name, (content, message) in files.items():
        path = tmp_path / f'{name}.pth'
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            verify_checkpoint(str(path))  # found by the cheap check ...
        with pytest.raises(CheckpointError, match=message):
            load_file(str(path))  # ... and when loading fails
        with pytest.raises(CheckpointError, match=message):
            CheckedRunner.load_checkpoint(
                make_runner(tmp_path / name, max_iters=1, runner_cls=CheckedRunner), str(path))
    with pytest.raises(FileNotFoundError, match=r"checkpoint file '\S+missing.pth' does not"):
        verify_checkpoint(str(tmp_path / 'missing.pth'))


def test_damage_inside_tensor_data_is_found_only_on_request(tmp_path, good_file):
    """torch's reader does not check the checksums: the file loads with wrong weights. A
    full check reads the whole file, so it is verify_checkpoint(checksums=True) only."""
    path = tmp_path / 'tensor.pth'
    path.write_bytes(_flip(good_file.read_bytes(),
                           _record_offset(good_file, lambda n: '/data/' in n) + 200))
    verify_checkpoint(str(path))
    assert not torch.equal(load_file(str(path))['w'], torch.arange(100000.))  # as torch
    with pytest.raises(CheckpointError, match=r"'\S+tensor.pth' is damaged: its record "
                                              r"'good/data/0' does not match its CRC-32"):
        verify_checkpoint(str(path), checksums=True)


def test_errors_that_are_not_about_the_file_pass_unchanged(good_file):
    def no_such_device(storage, location):
        raise RuntimeError('Attempting to deserialize object on CUDA device 3')

    with pytest.raises(RuntimeError, match='^Attempting to deserialize object on CUDA'):
        load_file(str(good_file), map_location=no_such_device)


def test_import_seplugin_registers_the_explained_http_loader_from_this_module():
    """The registration lives with the loaders (seplugin.checkpoint), not in the zoo files'
    generator."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import seplugin.checkpoint
    for prefix in ('http://', 'https://'):
        assert CheckpointLoader._schemes[prefix] is seplugin.checkpoint.load_from_http
