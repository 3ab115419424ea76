import pytest
import torch

from seplugin import doctor
from seplugin.checkpoint import runner_checkpoint_globals


def test_all_green_here(capsys):
    assert doctor.main() == 0
    out = capsys.readouterr().out
    assert 'all checks passed' in out
    for name in doctor.PACKAGES:
        assert name in out


def test_setuptools_84_fails_with_the_fix(monkeypatch, capsys):
    real = doctor.installed
    monkeypatch.setattr(doctor, 'installed',
                        lambda name: '84.0.0' if name == 'setuptools' else real(name))
    assert doctor.main() == 1
    out = capsys.readouterr().out
    assert '[FAIL] setuptools provides pkg_resources' in out
    assert 'setuptools 84.0.0 is not < 81' in out
    assert "fix: " in out and "pip install 'setuptools<81'" in out


def failing_import(monkeypatch, module: str, error: Exception):
    """``import module`` raises ``error`` for the rest of the test; returns the import."""
    import builtins
    real_import = builtins.__import__

    def importer(name, *args, **kwargs):
        if name == module:
            raise error
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', importer)
    return importer


def test_missing_pkg_resources_fails(monkeypatch):
    no_pkg_resources = failing_import(monkeypatch, 'pkg_resources',
                                      ImportError('No module named pkg_resources'))
    monkeypatch.setattr(doctor.importlib, 'import_module',
                        lambda name: no_pkg_resources(name))
    assert 'pkg_resources does not import' in doctor.check_setuptools()


def test_mmcv_without_ops_fails(monkeypatch):
    failing_import(monkeypatch, 'mmcv.ops', ModuleNotFoundError("No module named 'mmcv._ext'"))
    problem = doctor.check_mmcv_ops()
    assert "compiled ops do not load (ModuleNotFoundError: No module named 'mmcv._ext')" in problem
    assert 'bash tools/setup_env.sh' in problem


def test_mmcv_out_of_range_fails(monkeypatch):
    real = doctor.installed
    monkeypatch.setattr(doctor, 'installed',
                        lambda name: '2.2.0' if name == 'mmcv' else real(name))
    assert 'mmcv 2.2.0 is outside >=2.0.0,<2.2.0' in doctor.check_mmcv_ops()


@pytest.fixture
def no_allow_list():
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.add_safe_globals(runner_checkpoint_globals())


@pytest.mark.skipif(not hasattr(torch.serialization, 'clear_safe_globals'),
                    reason='torch < 2.4 has no allow-list of its own to take away')
def test_weights_only_break_is_detected(no_allow_list):
    problem = doctor.check_weights_only_resume()
    assert 'does not load with weights_only=True' in problem
    assert "custom_imports=dict(imports=['seplugin'])" in problem
