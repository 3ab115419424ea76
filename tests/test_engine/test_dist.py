"""Which torch.distributed backend a run gets, and the CPU model wrapper."""
import pytest
from mmengine.config import Config

from seplugin.cli.config import load_config
from seplugin.engine.dist import resolve_dist_backend, set_cpu_model_wrapper


def config(backend: str | None = None) -> Config:
    env_cfg = {} if backend is None else dict(dist_cfg=dict(backend=backend, timeout=60))
    return Config(dict(env_cfg=env_cfg))


@pytest.mark.parametrize('configured, cuda, expected, replaced', [
    (None, True, 'nccl', False),
    (None, False, 'gloo', False),
    ('nccl', True, 'nccl', False),
    ('nccl', False, 'gloo', True),   # the OpenMMLab base configs' nccl on a CPU machine
    ('gloo', True, 'gloo', False),   # a config that chose gloo keeps it, GPUs or not
    ('gloo', False, 'gloo', False),
    ('mpi', False, 'mpi', False),
])
def test_backend_follows_the_device_unless_chosen(configured, cuda, expected, replaced):
    cfg = config(configured)
    backend, note = resolve_dist_backend(cfg, cuda_available=cuda)
    assert backend == expected == cfg.env_cfg.dist_cfg.backend
    assert (note is not None) is replaced
    if replaced:
        assert "env_cfg.dist_cfg.backend is 'nccl', but CUDA is not available" in note
        assert "using 'gloo'" in note
    if configured:
        assert cfg.env_cfg.dist_cfg.timeout == 60  # the rest of dist_cfg stays


@pytest.mark.parametrize('how', ['cli', 'cfg_options_key', 'cfg_options_dict'])
def test_command_line_choice_is_respected(how):
    cli = 'gloo' if how == 'cli' else None
    options = {'cfg_options_key': {'env_cfg.dist_cfg.backend': 'gloo'},
               'cfg_options_dict': {'env_cfg.dist_cfg': dict(backend='gloo')},
               'cli': None}[how]
    cfg = config('nccl')
    assert resolve_dist_backend(cfg, cli, options, cuda_available=True) == ('gloo', None)


def test_nccl_on_the_command_line_without_cuda_is_an_error():
    with pytest.raises(RuntimeError, match=r"backend 'nccl' was asked for on the command "
                                           r'line, but CUDA is not available .* use '
                                           r'--dist-backend gloo'):
        resolve_dist_backend(config(), 'nccl', cuda_available=False)
    with pytest.raises(RuntimeError, match='nccl'):
        resolve_dist_backend(config('gloo'), None, {'env_cfg.dist_cfg.backend': 'nccl'},
                             cuda_available=False)
    # and with CUDA it is simply used
    assert resolve_dist_backend(config(), 'nccl', cuda_available=True)[0] == 'nccl'


def test_unknown_backends_are_named():
    with pytest.raises(ValueError, match=r"unknown distributed backend 'glooo'; expected one "
                                         r"of \['nccl', 'gloo', 'mpi', 'ucc'\]"):
        resolve_dist_backend(config(), 'glooo', cuda_available=False)
    with pytest.raises(ValueError, match=r"unknown distributed backend 'ncll' in the config "
                                         r'\(env_cfg.dist_cfg.backend\)'):
        resolve_dist_backend(config('ncll'), cuda_available=True)


def test_load_config_settles_the_backend_for_distributed_runs_only(tmp_path, monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    path = tmp_path / 'c.py'
    path.write_text("env_cfg = dict(dist_cfg=dict(backend='nccl'))\n")
    cfg = load_config(str(path), launcher='pytorch')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert 'CUDA is not available' in cfg.dist_backend_note
    single = load_config(str(path))
    assert single.env_cfg.dist_cfg.backend == 'nccl'  # unused without a launcher: untouched
    with pytest.raises(ValueError, match='--dist-backend gloo needs a distributed launcher'):
        load_config(str(path), dist_backend='gloo')


def test_cpu_model_wrapper(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = Config(dict(launcher='pytorch', find_unused_parameters=True))
    set_cpu_model_wrapper(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', device_ids=None,
                                         broadcast_buffers=False, find_unused_parameters=True)
    # a DDP wrapper of the config keeps its settings and gets device_ids=None
    cfg = Config(dict(launcher='pytorch', model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', static_graph=True)))
    set_cpu_model_wrapper(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', static_graph=True,
                                         device_ids=None)
    # single process, or GPUs: nothing to do
    for launcher, cuda in (('none', False), ('pytorch', True)):
        monkeypatch.setattr('torch.cuda.is_available', lambda cuda=cuda: cuda)
        cfg = Config(dict(launcher=launcher))
        set_cpu_model_wrapper(cfg)
        assert 'model_wrapper_cfg' not in cfg
