"Run every notebook's cells as tests (nbdev's `test_nb`), skipping the `gpu`, `slow` and `notest` flags."
import os
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev import test as nbtest  # not `from nbdev.test import test_nb`: pytest would collect it as a test

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))
FLAGS = get_config(ROOT).tst_flags.split()

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook(nb, tmp_path, monkeypatch):
    monkeypatch.setenv('QLORA_NB_CACHE', str(tmp_path/'cache'))
    ok, secs = nbtest.test_nb(nb, skip_flags=FLAGS, basepath=ROOT, do_print=False)
    print(f'{nb.name}: {secs:.1f}s')
    assert ok, f'{nb.name} failed (traceback above)'
