"""Run every notebook's cells as tests (nbdev's `test_nb`), skipping the `gpu`, `slow` and `notest` flags.
A notebook that passes is saved, with its outputs, to the docs build's cache (scripts/build_docs.py, `build/executed/`),
so the docs pages show these outputs without running every notebook a second time; nbs/ is never written."""
import sys
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev import test as nbtest  # not `from nbdev.test import test_nb`: pytest would collect it as a test

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
import build_docs  # noqa: E402

NBS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))
FLAGS = get_config(ROOT).tst_flags.split()

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook(nb, tmp_path, monkeypatch):
    monkeypatch.setenv('QLORA_NB_CACHE', str(tmp_path/'cache'))
    for k, v in build_docs.QUIET_ENV.items(): monkeypatch.setenv(k, v)
    build_docs.quiet()  # no progress bars in the saved outputs
    # save=True writes the executed notebook over its source on success: write it to the docs cache instead
    monkeypatch.setattr(nbtest, 'write_nb', lambda n, fn: build_docs.save_executed(n, nb))
    ok, secs = nbtest.test_nb(nb, skip_flags=FLAGS, basepath=ROOT, do_print=False, save=True)
    print(f'{nb.name}: {secs:.1f}s')
    assert ok, f'{nb.name} failed (traceback above)'
