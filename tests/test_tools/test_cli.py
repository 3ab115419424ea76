"""The command line of tools/train.py and tools/test.py as a new user meets it: --help that
loads nothing heavy, options checked before any work, a quiet console with the details in
the log file, one-line errors, compact --out files and legible --show-dir drawings; and
--help and one-line errors of the other tools."""
import json
import logging
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image
from tool_runs import CLS, load_tool, mini_options, save_mini_classifier, tool

from seplugin.cli import console
from seplugin.datasets.mini_cls import make_mini_imagenet

REPO = Path(__file__).parents[2]
HEAVY = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'seplugin')
# Every tool: --help must not wait for torch and the OpenMMLab stack.
LIGHT_HELP_TOOLS = tuple(sorted(p.stem for p in (REPO / 'tools').glob('*.py')))


def options(data: Path, *extra: str) -> list[str]:
    """--cfg-options for a one-epoch run of the mini classifier on ``data``, logging every
    iteration."""
    return mini_options(data, 'val_dataloader.batch_size=8', 'default_hooks.logger.interval=1',
                        *extra)


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp('imagenet')
    make_mini_imagenet(str(data), train_per_class=2, val_per_class=2, size=32)
    return data


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> Path:
    """A checkpoint of the mini classifier (its initial weights)."""
    return save_mini_classifier(tmp_path_factory.mktemp('weights') / 'own.pth')


@pytest.fixture
def streams(capsys):
    """Loggers that earlier tests made print to the streams capsys gives this test (theirs
    are closed)."""
    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stdout
    return capsys


@pytest.fixture
def quiet(streams):
    """The tools' default console (quiet), restored to the full one afterwards."""
    console.set_full_console(False)
    yield
    console.set_full_console(True)


# -- --help --------------------------------------------------------------------------------
@pytest.mark.parametrize('name', LIGHT_HELP_TOOLS)
def test_help_imports_nothing_heavy(name):
    """--help answers before torch, mmengine, mmdet or mmpretrain are imported (importing
    them takes seconds): run as a user runs it, then list what got imported."""
    script = (f'import runpy, sys\n'
              f'sys.argv = [{name!r}, "--help"]\n'
              f'try:\n'
              f'    runpy.run_path({str(REPO / "tools" / f"{name}.py")!r}, '
              f'run_name="__main__")\n'
              f'except SystemExit as e:\n'
              f'    assert e.code == 0, e.code\n'
              f'print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout
    assert result.stdout.strip().splitlines()[-1] == '[]'


def test_shared_options_load_with_the_standard_library_only():
    """seplugin/cli/options.py, loaded as the tools load it, imports nothing heavy (nor
    seplugin itself, whose import loads torch); its imports at module level are stdlib."""
    import ast
    path = REPO / 'seplugin' / 'cli' / 'options.py'
    script = (f'import runpy, sys\n'
              f'runpy.run_path({str(path)!r})\n'
              f'print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))\n')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
    top = [n for n in ast.parse(path.read_text()).body
           if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert {name.split('.')[0] for name in names} <= set(sys.stdlib_module_names), names


def test_train_and_test_share_the_same_six_options():
    argv = ['--work-dir', 'w', '--cfg-options', 'a=1', 'b=2', '--launcher', 'pytorch',
            '--dist-backend', 'gloo', '--local-rank', '3', '--verbose']
    train = vars(load_tool('train').parse_args(['c.py', *argv]))
    test = vars(load_tool('test').parse_args(['c.py', 'x.pth', *argv]))
    shared = dict(work_dir='w', cfg_options=['a=1', 'b=2'], launcher='pytorch',
                  dist_backend='gloo', local_rank=3, verbose=True)
    assert {k: train[k] for k in shared} == {k: test[k] for k in shared} == shared


@pytest.mark.parametrize('argv, message', [
    (['convert_weights.py', 'src.pth', 'dst.pth', '--source', 'tim'],
     "--source 'tim': expected one of ('timm', 'timm-legacy', 'cadene', 'mmpretrain', "
     "'torchvision')"),
    (['compare.py', '--se', 'a', '--baseline', 'b', '--paper', 'coco-r5'],
     "--paper 'coco-r5': expected one of ['coco-r101', 'coco-r50', 'imagenet-r101', "
     "'imagenet-r50', 'places365-r152']"),
])
def test_names_checked_after_parsing_get_the_list(argv, message):
    """The tools whose choices live in seplugin check them after --help's light parse."""
    result = subprocess.run([sys.executable, f'tools/{argv[0]}', *argv[1:]],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert message in result.stderr


# -- options checked before any work ---------------------------------------------------------
def test_out_extension_is_checked_before_the_config_is_read(tmp_path):
    """A wrong --out fails first: the config does not even exist here."""
    with pytest.raises(ValueError, match=r"--out must end with \.pkl or \.pickle \(a pickle "
                                         r"file\), got 'results\.json'"):
        tool('test', tmp_path / 'no_config.py', tmp_path / 'x.pth', '--out', 'results.json')


def test_amp_without_a_gpu_is_refused_before_the_config_is_read(tmp_path):
    with mock.patch('torch.cuda.is_available', return_value=False), \
            pytest.raises(RuntimeError, match=r'--amp \(mixed precision\) needs a GPU, but '
                                              r'torch\.cuda\.is_available\(\) is False'):
        tool('train', tmp_path / 'no_config.py', '--amp', '--work-dir', tmp_path / 'w')
    assert not (tmp_path / 'w').exists()


def test_amp_asked_for_by_the_config_is_refused_without_a_gpu(imagenet, tmp_path):
    with mock.patch('torch.cuda.is_available', return_value=False), \
            pytest.raises(RuntimeError, match=r"the config's optim_wrapper\.type="
                                              r"'AmpOptimWrapper' \(mixed precision\) needs "
                                              r'a GPU'):
        tool('train', CLS, '--work-dir', tmp_path / 'w',
             *options(imagenet, 'optim_wrapper.type=AmpOptimWrapper'))
    assert not (tmp_path / 'w').exists()


def test_amp_with_a_gpu_passes_the_check():
    from seplugin.cli.config import check_amp
    with mock.patch('torch.cuda.is_available', return_value=True):
        check_amp()  # no error: the device is torch's to report, nothing hard-coded


@pytest.mark.parametrize('case', ['missing', 'empty', 'weights_only'])
def test_resume_with_nothing_to_resume_is_an_error(imagenet, tmp_path, case):
    """mmengine logs "Auto resumed from the latest checkpoint None" and starts afresh."""
    work_dir = tmp_path / 'w'
    if case != 'missing':
        work_dir.mkdir()
    if case == 'weights_only':
        (work_dir / 'epoch_3.pth').write_bytes(b'')
    expected = {
        'missing': rf"--resume: the work dir '{work_dir}' does not exist, so there is "
                   r'nothing to resume; check --work-dir',
        'empty': rf"--resume: the work dir '{work_dir}' has no last_checkpoint file .* so "
                 r'there is nothing to resume; check --work-dir',
        'weights_only': r"has no last_checkpoint file .*; it holds \['epoch_3\.pth'\]: give "
                        r'one as --resume PATH'}[case]
    with pytest.raises(FileNotFoundError, match=expected):
        tool('train', CLS, '--resume', '--work-dir', work_dir, *options(imagenet))
    assert sorted(p.name for p in work_dir.glob('*')) == \
        ([] if case != 'weights_only' else ['epoch_3.pth'])  # nothing written


def test_missing_mini_data_names_its_generator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where data/mini_imagenet does not exist
    with pytest.raises(FileNotFoundError,
                       match=r"train_dataloader\.dataset\.data_root 'data/mini_imagenet' does "
                             r'not exist \(relative to .*\); generate it with: python -m '
                             r'seplugin\.datasets\.mini_cls imagenet --out data/mini_imagenet'):
        tool('train', CLS, '--work-dir', tmp_path / 'w')
    assert not (tmp_path / 'w').exists()
    with pytest.raises(FileNotFoundError, match=r"data_root 'elsewhere' does not exist .*; "
                                                r'point the config at the data'):
        tool('train', CLS, '--work-dir', tmp_path / 'w', '--cfg-options',
             'train_dataloader.dataset.data_root=elsewhere')


# -- console and log file --------------------------------------------------------------------
def run_tool(name: str, *args) -> int:
    """A tool as ``python tools/<name>.py`` runs it (with the error handling), here."""
    module = load_tool(name)
    arguments = module.parse_args([str(a) for a in args])
    try:
        console.run_tool(lambda: module.main(arguments), arguments.verbose)
    except SystemExit as e:
        return e.code
    return 0


def log_file(work_dir: Path) -> Path:
    (log,) = work_dir.glob('*/*.log')
    return log


def test_quiet_console_keeps_details_in_the_log_file(imagenet, tmp_path, capsys, quiet):
    assert run_tool('train', CLS, '--work-dir', tmp_path / 'w', *options(imagenet)) == 0
    out = capsys.readouterr()
    console_text = out.out + out.err
    log = log_file(tmp_path / 'w').read_text()
    for detail in ('Config:', 'Hooks will be executed in the following order',
                   'System environment', 'Distributed launcher'):
        assert detail in log
        assert detail not in console_text
    lines = console_text.splitlines()
    assert len(lines) < 20, console_text
    # a progress line per logged iteration: iterations, ETA, loss
    progress = [line for line in lines if 'Epoch(train) [1][2/2]' in line]
    assert len(progress) == 1 and 'eta:' in progress[0] and 'loss:' in progress[0]
    assert any('accuracy/top1' in line for line in lines)  # the validation result
    assert any(f'full log {tmp_path / "w"}' in line for line in lines)


def test_verbose_restores_the_full_console_and_the_traceback(imagenet, tmp_path, capsys,
                                                             streams):
    with pytest.raises(RuntimeError, match='mat1 and mat2 shapes cannot be multiplied'):
        run_tool('train', CLS, '--work-dir', tmp_path / 'w', '--verbose',
                 *options(imagenet, 'model.head.in_channels=64'))
    out = capsys.readouterr().out
    assert 'Config:' in out and 'Hooks will be executed in the following order' in out


def test_an_error_ends_the_output_as_one_line(imagenet, tmp_path, capsys, quiet):
    status = run_tool('train', CLS, '--work-dir', tmp_path / 'w',
                      *options(imagenet, 'model.head.in_channels=64'))
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, "\n".join(err)
    log = log_file(tmp_path / 'w')
    assert err[0].startswith('error: RuntimeError: mat1 and mat2 shapes cannot be multiplied')
    assert '--> in model.head.fc' in err[0] and err[0].endswith(f'(traceback in {log})')
    text = log.read_text()
    assert 'Traceback of the error that ended the run:' in text
    assert 'Traceback (most recent call last)' in text


def test_an_error_before_the_run_has_a_log_is_one_line(tmp_path, capsys, quiet):
    status = run_tool('train', tmp_path / 'nowhere.py')
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: FileNotFoundError: config file '{tmp_path / 'nowhere.py'}' does "
                   'not exist (--verbose shows the traceback)']


@pytest.mark.parametrize('argv, expected', [
    (['analyze_excitation.py', 'nowhere.py', 'x.pth'],
     "error: FileNotFoundError: config file 'nowhere.py' does not exist"),
    (['convert_weights.py', 'nowhere.pth', 'out.pth', '--source', 'timm'],
     "error: FileNotFoundError: checkpoint file 'nowhere.pth' does not exist"),
    (['compare.py', '--se', '.', '--baseline', '.'],
     "error: ValueError: none of ['.', '.'] holds COCO bbox or accuracy metrics"),
])
def test_the_other_tools_end_an_error_as_one_line(argv, expected, tmp_path):
    """What a user runs as a script: the error in one line, no traceback unless --verbose."""
    tool = [sys.executable, str(REPO / 'tools' / argv[0]), *argv[1:]]
    result = subprocess.run(tool, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f'{expected} (--verbose shows the traceback)']
    verbose = subprocess.run(tool + ['--verbose'], capture_output=True, text=True,
                             cwd=tmp_path)
    assert verbose.returncode == 1
    assert 'Traceback (most recent call last)' in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == expected.removeprefix('error: ')


@pytest.mark.parametrize('argv, expected', [
    (['complexity.py', 'nowhere.py'], 'no such config file: nowhere.py'),
    (['compare.py', '--se', 'se0', '--baseline', 'base0'],
     'none of the work dirs exists: se0, base0 (give the --work-dir of each run)'),
    (['run_pair.py', 'nowhere.py', str(CLS)], "config file 'nowhere.py' does not exist"),
])
def test_missing_inputs_are_named_before_any_work(argv, expected, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / argv[0]), *argv[1:]],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f'{argv[0]}: error: {expected}'
    assert list(tmp_path.iterdir()) == []  # no work dir made, nothing trained


def test_a_tool_prints_no_setuptools_notice(tmp_path):
    """mmengine imports pkg_resources, whose deprecation notice is not the user's business;
    the tools keep it off the terminal. Where setuptools emits no notice, the check is void
    and the test says so by skipping after it."""
    probe = subprocess.run([sys.executable, '-W', 'always', '-c',
                            'import mmengine.utils.package_utils as p; p.is_installed("x")'],
                           capture_output=True, text=True)
    fires = 'pkg_resources is deprecated' in probe.stderr
    result = subprocess.run([sys.executable, str(REPO / 'tools/complexity.py'), str(CLS)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f'| {CLS} |' in result.stdout
    assert 'pkg_resources' not in result.stderr and 'Warning' not in result.stderr
    if not fires:
        pytest.skip('this setuptools emits no pkg_resources notice (nothing to hide)')


@pytest.mark.parametrize('verbose', [False, True])
def test_run_pair_passes_verbose_to_its_runs(verbose, tmp_path, monkeypatch):
    from seplugin.engine import pairs
    commands = []
    monkeypatch.setattr(pairs, 'run_command', lambda cmd, *a: commands.append(cmd) or False)
    job = pairs.Job('se', str(CLS), 0, str(tmp_path))
    record = pairs.train_and_test(job, str(REPO / 'tools'), verbose=verbose)
    assert record.status == 'training failed' and record.train_run is None
    assert [c[1] for c in commands] == [str(REPO / 'tools/train.py')]
    assert ('--verbose' in commands[0]) is verbose


def test_python_warnings_and_prints_go_to_the_log_file(tmp_path, capsys, quiet):
    import warnings

    from mmengine.logging import MMLogger
    log = tmp_path / 'run.log'
    warnings.warn('held back until there is a log', UserWarning, stacklevel=1)
    logger = MMLogger.get_instance(uuid.uuid4().hex, log_file=str(log), file_mode='a')
    console.attach_console(logger)
    warnings.warn('straight to the log', UserWarning, stacklevel=1)
    logger.info('seplugin: a phase')
    logger.info('a detail')
    with console.prints_to_log():
        print('printed by a library')
        logger.info('Epoch(train) [1][1/2] printed by the logger')
    for handler in logger.handlers:
        handler.flush()
    out = capsys.readouterr()
    assert 'seplugin: a phase' in out.out and 'a detail' not in out.out
    assert 'Epoch(train) [1][1/2]' in out.out and 'printed by a library' not in out.out
    assert 'held back' not in out.err + out.out and 'straight' not in out.err + out.out
    text = log.read_text()
    assert 'held back until there is a log' in text and 'straight to the log' in text
    assert 'a detail' in text and 'printed by a library' in text
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()


# -- test.py outputs -------------------------------------------------------------------------
def test_classifier_out_is_compact_and_show_dir_draws_every_image(imagenet, weights, tmp_path,
                                                                  monkeypatch, quiet):
    """Each pickled sample holds its own scores, not its batch's: a few KB for a 1000-class
    head, where the views pickled the whole batch's scores (here 8 samples per batch)."""
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'w'
    assert run_tool('test', CLS, weights, '--work-dir', work_dir, '--out', 'results.pkl',
                    '--show-dir', 'vis', *options(imagenet, 'test_dataloader.batch_size=8')) \
        == 0
    with open(tmp_path / 'results.pkl', 'rb') as f:
        results = pickle.load(f)
    num_classes, num_images = 1000, 16
    assert len(results) == num_images
    for result in results:
        scores = result['pred_score']
        assert scores.shape == (num_classes,)
        assert scores.untyped_storage().nbytes() == num_classes * 4
        assert int(result['pred_label']) == int(scores.argmax())
        assert abs(float(scores.sum()) - 1) < 1e-5
    size = (tmp_path / 'results.pkl').stat().st_size
    # its scores and about 3 KB of metadata and pickle overhead per sample; with the batch's
    # storage each sample would carry 8 x 4000 bytes
    assert size < num_images * (num_classes * 4 + 3000), size
    # drawings: every test image, under the run's log dir, at a legible size
    assert not (tmp_path / 'vis').exists()
    (log_dir,) = [p for p in work_dir.iterdir() if p.is_dir()]
    drawings = sorted((log_dir / 'vis').glob('*.png'))
    assert len(drawings) == num_images
    for path in drawings[:3]:
        with Image.open(path) as image:
            assert min(image.size) >= 256
    metrics = json.loads(next(log_dir.glob('*.json')).read_text())
    assert 'accuracy/top1' in metrics


@pytest.mark.slow
def test_detection_show_dir_draws_every_image_under_the_log_dir(tmp_path, monkeypatch, quiet):
    from mmdet.registry import MODELS

    from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options
    det = REPO / 'configs/mini/faster_rcnn_r18_fpn_minicoco.py'
    make_mini_coco(str(tmp_path / 'coco'), num_train=1, num_val=3, image_size=64)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(Config.fromfile(str(det)).model)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'det.pth')
    monkeypatch.chdir(tmp_path)
    assert run_tool('test', det, tmp_path / 'det.pth', '--work-dir', 'w', '--show-dir', 'vis',
                    '--cfg-options', 'test_dataloader.batch_size=1',
                    f'experiment_name={uuid.uuid4().hex}',
                    *(f'{k}={v}' for k, v in mini_coco_cfg_options(str(tmp_path / 'coco'))
                      .items())) == 0
    # one drawing per image (3 batches), all in <work dir>/<timestamp>/vis
    drawings = sorted(p.relative_to(tmp_path / 'w') for p in (tmp_path / 'w').rglob('*.jpg'))
    assert len(drawings) == 3 and len({p.parent for p in drawings}) == 1
    assert drawings[0].parent.name == 'vis' and len(drawings[0].parts) == 3
