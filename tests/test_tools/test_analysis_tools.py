"""tools/complexity.py and tools/analyze_excitation.py as a user meets them: the input size
from the configs' task, what is measured and the progress said, non-classifiers refused."""
from pathlib import Path

import pytest
import torch
from tool_runs import load_tool

REPO = Path(__file__).parents[2]
CLS = REPO / 'configs/mini/seresnet18_mini_imagenet.py'
CLS_BASE = REPO / 'configs/mini/resnet18_mini_imagenet.py'
DET = REPO / 'configs/mini/faster_rcnn_se_r18_fpn_minicoco.py'


def renamed(config: Path, tmp_path: Path, name: str) -> Path:
    """``config`` under a name that says nothing of its task."""
    path = tmp_path / name
    path.write_text(f'_base_ = [{str(config)!r}]\n')
    return path


def test_detector_size_comes_from_the_task_not_the_file_name(tmp_path, capsys, monkeypatch):
    """A detector config whose name has no 'rcnn' is measured at 800x1333, as detectors
    are; the FLOPs are those of that input (the mmdet model's own tensor forward)."""
    complexity = load_tool('complexity')
    measured = []
    from seplugin.analysis import complexity as analysis
    real = analysis.count_flops
    monkeypatch.setattr(analysis, 'count_flops',
                        lambda module, inputs: measured.append(inputs[0].shape) or
                        real(module, inputs))
    complexity.main([str(renamed(DET, tmp_path, 'my_model.py'))])
    out = capsys.readouterr()
    assert measured == [torch.Size([1, 3, 800, 1333])]
    assert out.out.startswith('detectors, input 800x1333, batch 1;')
    assert 'measuring 1 detector config(s) at input 800x1333, batch 1, on ' in out.err


def test_classifiers_are_measured_at_224(tmp_path, capsys):
    complexity = load_tool('complexity')
    complexity.main([str(renamed(CLS, tmp_path, 'rcnn_named.py'))])
    assert capsys.readouterr().out.startswith('classifiers, input 224x224, batch 1;')


def test_latency_says_what_is_timed_and_shows_progress(tmp_path, capsys):
    complexity = load_tool('complexity')
    complexity.main([str(CLS_BASE), str(CLS), '--latency', '--repeats', '2',
                     '--shape', '64', '64'])
    out = capsys.readouterr()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert out.out.startswith(f'classifiers, input 64x64, batch 1, latency: median of 2 '
                              f'runs on {device};')
    assert (f'at input 64x64, batch 1, on {device}; latency: 3 warm-up and 2 timed runs '
            'per model, interleaved, medians') in out.err
    # every run counted: 2 models x (3 warm-up + 2 timed)
    assert 'timing: 10/10 runs' in out.err and 'timing: 1/10 runs' in out.err
    table = [line for line in out.out.splitlines() if line.startswith('| ')]
    assert len(table) == 3 and 'latency (ms)' in table[0]


def test_configs_of_different_tasks_are_refused(capsys):
    complexity = load_tool('complexity')
    with pytest.raises(SystemExit, match=r'error: the configs are of different tasks, which '
                                         r'are measured on different inputs: classifier: '
                                         rf'{CLS_BASE}; detector: {DET}'):
        complexity.main([str(CLS_BASE), str(DET)])


def test_analyze_excitation_refuses_a_detector_config(tmp_path):
    """It used to crash on the detector's data samples ('DetDataSample' object has no
    attribute 'gt_label'), after loading the checkpoint and data."""
    analyze = load_tool('analyze_excitation')
    with pytest.raises(SystemExit, match=r'error: \S+faster_rcnn_se_r18_fpn_minicoco\.py is '
                                         r'not a classification config: its model is a '
                                         r"FasterRCNN \(default_scope 'mmdet'\)\. "
                                         r'analyze_excitation needs an mmpretrain '
                                         r'ImageClassifier with an SE backbone'):
        analyze.main([str(DET), str(tmp_path / 'never_read.pth')])


def test_analyze_excitation_refuses_a_classifier_without_se(tmp_path):
    analyze = load_tool('analyze_excitation')
    with pytest.raises(SystemExit, match=r'has no SE layers to record'):
        analyze.main([str(CLS_BASE), str(tmp_path / 'never_read.pth')])


def test_analyze_excitation_accepts_the_se_classifier(tmp_path):
    """The check lets the SE classifier through to the checkpoint (here a missing one)."""
    analyze = load_tool('analyze_excitation')
    with pytest.raises(FileNotFoundError, match='never_there.pth'):
        analyze.main([str(CLS), str(tmp_path / 'never_there.pth')])
