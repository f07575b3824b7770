"The package is exported from the notebooks, and the notebooks are clean: nbdev-clean/nbdev-export change nothing."
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _status():
    return subprocess.run(['git', 'status', '--porcelain', '--', 'nbs', 'qlora_nb', 'README.md'], cwd=ROOT,
                          capture_output=True, text=True).stdout

@pytest.mark.skipif(shutil.which('git') is None or not (ROOT/'.git').exists(), reason='needs a git checkout')
def test_clean_and_exported():
    before = _status()
    bin_ = Path(sys.executable).parent  # the venv's console scripts, whether or not it is activated
    for cmd in ([str(bin_/'nbdev-clean')], [str(bin_/'nbdev-export')], [sys.executable, 'scripts/make_readme.py']):
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert _status() == before, f'nbdev-clean / nbdev-export / make_readme changed files:\n{_status()}'
