"""Imports point down (../shared/ARCHITECTURE.md): every sibling import sits at the top of its module and names a module
from a lower-numbered notebook, so numbering = import order = reading order, and no cycle can form. Imports inside
functions are only for optional third-party packages; the CLI is exempt (it imports lazily so `qlora-nb --help` is fast)."""
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'qlora_nb'

def _order() -> dict:
    "module name -> notebook number, from each notebook's `#| default_exp`"
    out = {}
    for nb in (ROOT/'nbs').glob('[0-9]*.ipynb'):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
            if m: out[m.group(1)] = int(nb.name.split('_')[0]); break
    return out

def _sibling(node, mods) -> str|None:
    if isinstance(node, ast.ImportFrom):
        name = node.module or ''
        if node.level: return name.split('.')[0] or None
        if name.startswith('qlora_nb.'): return name.split('.')[1]
        if name == 'qlora_nb': return next((a.name for a in node.names if a.name in mods), None)
    if isinstance(node, ast.Import):
        return next((a.name.split('.')[1] for a in node.names if a.name.startswith('qlora_nb.')), None)
    return None

def _imports():
    order = _order()
    for p in sorted(PKG.glob('*.py')):
        if p.stem.startswith('_'): continue
        tree = ast.parse(p.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            mod = _sibling(node, order)
            if mod: yield p.stem, mod, id(node) in top, node.lineno
    
def test_every_module_has_a_notebook_number():
    order = _order()
    missing = [p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_') and p.stem not in order]
    assert not missing, f'modules without a numbered notebook: {missing}'

def test_sibling_imports_at_top():
    inner = [f'qlora_nb/{m}.py:{ln} imports {dep} inside a function' for m, dep, top, ln in _imports() if not top and m != 'cli']
    assert not inner, '\n'.join(inner)

def test_imports_point_down():
    order = _order()
    up = [f'qlora_nb/{m}.py:{ln} ({order[m]:02d}) imports {dep} ({order[dep]:02d})'
          for m, dep, top, ln in _imports() if top and order[dep] >= order[m]]
    assert not up, 'imports must name lower-numbered notebooks:\n' + '\n'.join(up)

# third-party packages a module may import inside a function, and why: everything else is imported at the top
LAZY_OK = {
    'bitsandbytes': 'may be missing or broken on a machine: `doctor` diagnoses it and `load_model` names the fix',
    'unsloth': 'optional backend', 'liger_kernel': 'optional kernels', 'flash_attn': 'optional kernels',
    'torch': "env reports a broken torch instead of failing to import; packing's varlen kernel exists from torch 2.10",
    'IPython': 'notebook display only', 'ipywidgets': 'notebook widgets only',
}

def test_third_party_imports_at_top():
    inner = []
    for p in sorted(PKG.glob('*.py')):
        if p.stem.startswith('_') or p.stem == 'cli': continue
        tree = ast.parse(p.read_text())
        top = set(map(id, tree.body))
        for n in ast.walk(tree):
            if id(n) in top or not isinstance(n, (ast.Import, ast.ImportFrom)) or getattr(n, 'level', 0): continue
            mod = (n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split('.')[0]
            if mod != 'qlora_nb' and mod not in LAZY_OK: inner.append(f'qlora_nb/{p.stem}.py:{n.lineno} imports {mod} inside a function')
    assert not inner, '\n'.join(inner)

def test_the_check_catches_violations(tmp_path, monkeypatch):
    "The checks above can fail: a module importing upward, and one importing inside a function."
    order = _order()
    src = "from qlora_nb.train import finetune\ndef f():\n    from .merge import merge_adapter\n"
    tree = ast.parse(src)
    found = [(_sibling(n, order), n in tree.body) for n in ast.walk(tree) if _sibling(n, order)]
    assert found == [('train', True), ('merge', False)]
    assert order['train'] > order['recipe'] and order['cli'] == max(order.values())
