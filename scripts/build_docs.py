"""Build qlora_nb's documentation site from the notebooks, with their outputs.

    python scripts/build_docs.py                  # offline site in _site_offline/ (no Quarto needed; what CI checks)
    python scripts/build_docs.py --quarto         # the Quarto site in _docs/ (what the GitHub Pages workflow publishes)
    python scripts/build_docs.py --execute never  # quick: pages without the outputs of notebooks not run yet

Pages show what the notebooks print, plot and display. The notebooks in nbs/ are committed without outputs, so each
page is made from an *executed* copy: tests/test_notebooks.py saves one for every notebook it runs (into
`build/executed/`, with a fingerprint of the notebook's cells); a notebook without an up-to-date copy is run here
the same way (`nbdev.test.test_nb`: gpu/slow/notest cells skipped, `skip_exec` respected), so CI runs every notebook
once. Progress bars are switched off while notebooks run (`quiet`), so pages show results, not tqdm walls.

Each executed copy then goes through nbdev's own docs processing (`nbdev.processors.FilterDefaults`, what
`nbdev-docs` runs), with one change: nbdev re-runs every cell that contains an import to render `show_doc`; here a
lesson cell keeps the outputs it got when the notebook ran, and only its import lines run again.

`--quarto` renders the processed notebooks with Quarto (nbdev's `render_quarto`), using the top-level `_quarto.yml`
(nbs/_quarto.yml links to it, so `nbdev-docs`/`nbdev-preview` read the same file) and nbs/sidebar.yml. Without Quarto
(CI has none), nbconvert turns each processed notebook into a page body and a small template adds the sidebar of
nbs/sidebar.yml; TeX is drawn by matplotlib's mathtext.
"""
from __future__ import annotations
import argparse, hashlib, html, inspect, json, os, re, shutil, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
EXECUTED = Path(os.environ.get('QLORA_NB_EXECUTED', ROOT/'build'/'executed'))  # not in _proc/: nbdev-docs may wipe that
# progress bars off while notebooks run for the tests and the docs (read when each library is imported)
QUIET_ENV = {'TQDM_DISABLE': '1', 'HF_DATASETS_DISABLE_PROGRESS_BARS': '1', 'HF_HUB_DISABLE_PROGRESS_BARS': '1'}

def quiet():
    "Switch off progress bars: environment variables for libraries not imported yet, their switches for the others."
    os.environ.update(QUIET_ENV)
    if 'datasets' in sys.modules: sys.modules['datasets'].disable_progress_bars()
    if 'huggingface_hub' in sys.modules: sys.modules['huggingface_hub'].utils.disable_progress_bars()
    if 'transformers' in sys.modules: sys.modules['transformers'].utils.logging.disable_progress_bar()

# --------------------------------------------------------------------------------------------------------------------
# Pages: every notebook nbdev documents, in the order of nbs/sidebar.yml

def find_notebooks(nbs:Path=NBS) -> list[Path]:
    "Every notebook under `nbs` that nbdev documents (names starting with `_` or `.` skipped), relative to `nbs`."
    return [p.relative_to(nbs) for p in sorted(nbs.rglob('*.ipynb'))
            if not any(o.startswith(('_', '.')) or o in ('runs', '__pycache__') for o in p.relative_to(nbs).parts)]

def page_name(rel) -> str:
    "The page Quarto writes for notebook `rel` (nbdev drops the number: `10_quantization.ipynb` -> `quantization.html`)."
    rel = Path(rel)
    return (rel.parent/re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix()

def read_sidebar(path:Path) -> list:
    "nbs/sidebar.yml as `[(section title or None, [notebook paths])]`, in order."
    import yaml
    res, loose = [], []
    def _href(o): return o if isinstance(o, str) else o.get('href')
    for o in yaml.safe_load(path.read_text())['website']['sidebar']['contents']:
        if isinstance(o, dict) and 'section' in o:
            if loose: res.append((None, loose)); loose = []
            res.append((o['section'], [h for h in [o.get('href')] + [_href(x) for x in o.get('contents', [])] if h]))
        elif _href(o): loose.append(_href(o))
    return res + ([(None, loose)] if loose else [])

# --------------------------------------------------------------------------------------------------------------------
# Executed notebooks: saved by the tests, run here when missing

def fingerprint(src:Path) -> str:
    "Hash of notebook `src`'s cells (type and source): an executed copy is current while it is unchanged."
    cells = json.loads(Path(src).read_text())['cells']
    return hashlib.sha1(json.dumps([(c['cell_type'], ''.join(c['source'])) for c in cells]).encode()).hexdigest()

def executed_path(src:Path, nbs:Path=NBS, cache:Path=EXECUTED) -> Path: return Path(cache)/Path(src).resolve().relative_to(Path(nbs).resolve())

def save_executed(nb, src:Path, nbs:Path=NBS, cache:Path=EXECUTED):
    "Write `nb` (notebook `src` after a run, with outputs) into the cache, stamped with `src`'s fingerprint."
    from fastcore.nbio import write_nb
    nb.metadata['qlora_nb'] = {'fingerprint': fingerprint(src)}
    dst = executed_path(src, nbs, cache)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)

def load_executed(src:Path, nbs:Path=NBS, cache:Path=EXECUTED):
    "The executed copy of notebook `src`, or None when there is none or `src` changed since."
    from fastcore.nbio import read_nb
    p = executed_path(src, nbs, cache)
    if not p.exists(): return None
    nb = read_nb(p)
    return nb if nb.metadata.get('qlora_nb', {}).get('fingerprint') == fingerprint(src) else None

def run_notebook(src:Path, flags, nbs:Path=NBS, cache:Path=EXECUTED, cell_timeout:int|None=None):
    "Run notebook `src` as `nbdev-test` does (`test_nb`, skipping `flags`); save the executed copy when it passes."
    from unittest.mock import patch
    from nbdev import test as nbtest
    quiet()
    # test_nb(save=True) writes the executed notebook over its source on success: send it to the cache instead
    with patch.object(nbtest, 'write_nb', lambda nb, fn: save_executed(nb, src, nbs, cache)):
        return nbtest.test_nb(src, skip_flags=flags, basepath=ROOT, save=True, cell_timeout=cell_timeout)

# --------------------------------------------------------------------------------------------------------------------
# nbdev's docs processing

_SHOW_DIRS = {'export', 'exports', 'exporti', 'exec_doc'}

def _import_lines(src:str) -> str:
    "The top-level import statements of cell source `src`."
    import ast
    try: tree = ast.parse('\n'.join('' if re.match(r'^\s*[%!]', l) else l for l in src.splitlines()))
    except SyntaxError: return ''
    return '\n'.join(ast.get_source_segment(src, o) for o in tree.body if isinstance(o, (ast.Import, ast.ImportFrom)))

def _patch_show_doc():
    "Classes as `class Name(...)` (fastcore writes `def Name(...)->None`), and no `#LNone` on source links."
    from nbdev.showdoc import BasicMarkdownRenderer as R
    if getattr(R, '_qlora_nb', False): return
    orig = R._repr_markdown_
    def _md(self):
        md = orig(self).replace('#LNone)', ')')
        if inspect.isclass(self.sym):
            md = re.sub(r'```python\ndef (.*?)```', lambda m: '```python\nclass ' + m.group(1).replace(')->None:', '):') + '```', md, count=1, flags=re.S)
        return md
    R._repr_markdown_, R._qlora_nb = _md, True

def processors():
    "nbdev's `FilterDefaults`, keeping the outputs of executed lesson cells."
    from fastcore.basics import str2bool
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval, _show_docs
    class exec_api_docs(exec_show_docs):
        "`exec_show_docs` for an executed notebook: exported and show_doc cells run; of other cells, only the imports"
        def __call__(self, cell):
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_exec', False)) or not _do_eval(cell): return
            if cell.directives_.keys() & _SHOW_DIRS or _show_docs(cell.parsed_()): return super().__call__(cell)
            if self.nb.has_docs_ and hasattr(self, 'k') and (imps := _import_lines(cell.source)):
                self.k.run_cell(imps); self.k.exc = None  # a missing optional package is fine: no show_doc needs it
    class DocsProcs(FilterDefaults):
        def base_procs(self): return [exec_api_docs if p is exec_show_docs else p for p in super().base_procs()]
    return DocsProcs()

def stage_one(rel:str, nbs:str, execute:str, flags:list, cell_timeout:int, proc:str|None, doc_prefix:str|None) -> dict:
    """Notebook `nbs/rel`, executed (from the cache or run now, per `execute`) and processed by nbdev; written to
    `proc/rel` when `proc`, converted to a page body when `doc_prefix` is not None."""
    quiet()
    os.environ['IN_TEST'] = '1'  # as nbdev's docs processing sets it
    warnings.filterwarnings('ignore', message='Found cells containing imports')
    from fastcore.nbio import read_nb, write_nb
    nbs, t0, err = Path(nbs), time.time(), None
    src = nbs/rel
    nb = None if execute == 'always' else load_executed(src, nbs)
    ran = nb is None and execute != 'never'
    if ran:
        ok, _ = run_notebook(src, flags, nbs, cell_timeout=cell_timeout)
        if not ok: err = 'the notebook failed when run (traceback above): its page has no outputs'
        nb = load_executed(src, nbs)
    if nb is None: nb = read_nb(src)
    nb.path_ = str(src)
    _patch_show_doc()
    cwd = os.getcwd(); os.chdir(ROOT)  # nbdev-docs processes from the project root
    try: processors()(nb)
    except Exception as e: return dict(rel=rel, ok=False, error=f'nbdev processing failed: {e}', secs=time.time()-t0)
    finally: os.chdir(cwd)
    res = dict(rel=rel, ok=err is None, error=err, how='ran' if ran else 'cached' if 'qlora_nb' in nb.metadata else 'no run', outputs=sum(len(c.get('outputs', [])) for c in nb.cells))
    if proc:
        (Path(proc)/rel).parent.mkdir(parents=True, exist_ok=True)
        write_nb(nb, Path(proc)/rel)
    if doc_prefix is not None:
        import tempfile
        with tempfile.TemporaryDirectory() as d:  # the notebook as nbformat reads it
            write_nb(nb, Path(d)/'nb.ipynb'); nbd = json.loads((Path(d)/'nb.ipynb').read_text())
        res['conv'] = convert_body(rel, nbd, doc_prefix)
    return dict(res, secs=time.time()-t0)

def stage(nbs:Path, rels, execute='auto', jobs=2, cell_timeout=900, proc=None, doc_prefix=None) -> list[dict]:
    "`stage_one` for every notebook in `rels`, in `jobs` spawned processes (spawned: each has its own interpreter state)."
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    from nbdev.config import get_config
    flags = str(get_config(ROOT).get('tst_flags', '')).split()
    args = [(r.as_posix(), str(nbs), execute, flags, cell_timeout, proc and str(proc), doc_prefix) for r in rels]
    args.sort(key=lambda a: load_executed(nbs/a[0], nbs) is not None)  # notebooks to run first
    with ProcessPoolExecutor(max(jobs, 1), mp_context=mp.get_context('spawn')) as ex:
        res = list(ex.map(stage_one, *zip(*args)))
    order = {r.as_posix(): i for i, r in enumerate(rels)}
    return sorted(res, key=lambda r: order[r['rel']])

# --------------------------------------------------------------------------------------------------------------------
# Quarto site (GitHub Pages)

def quarto_site(nbs:Path, proc:Path, out:Path, jobs:int):
    "Render the processed notebooks in `proc` with Quarto, as `nbdev-docs` does, into `out`."
    import yaml
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml, _fix_quarto_nav
    from nbdev.quarto_render import render_quarto
    if not shutil.which('quarto'): sys.exit('quarto is not installed: see https://quarto.org/docs/get-started/ (or build the offline site without --quarto)')
    cfg = get_config(ROOT)
    for p in nbs.rglob('*'):  # the files beside the notebooks (sidebar.yml, styles.css, images), as nbdev's proc_nbs copies them
        rel = p.relative_to(nbs)
        if p.is_file() and p.suffix != '.ipynb' and not any(o.startswith(('.', '_')) or o == 'runs' for o in rel.parts):
            (proc/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p, proc/rel)
    shutil.copy2(ROOT/'_quarto.yml', proc/'_quarto.yml')
    vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
    (proc/'nbdev.yml').write_text(_nbdev_yml.format(**vals, doc_path=out.name))
    def _keep(o): return not isinstance(h := o if isinstance(o, str) else o.get('href'), str) or not h.endswith('.ipynb') or (proc/h).exists()
    def _prune(items):  # pages listed in sidebar.yml but not built (not written yet, or left out by --only)
        res = [dict(o, contents=_prune(o['contents'])) if isinstance(o, dict) and 'contents' in o else o for o in items if _keep(o)]
        return [o for o in res if not isinstance(o, dict) or o.get('contents') or o.get('href')]
    if (sb := proc/'sidebar.yml').exists():
        y = yaml.safe_load(sb.read_text()); y['website']['sidebar']['contents'] = _prune(y['website']['sidebar']['contents'])
        sb.write_text(yaml.dump(y, sort_keys=False))
    render_quarto(proc, out, n_workers=jobs)
    _fix_quarto_nav(out)

# --------------------------------------------------------------------------------------------------------------------
# Offline site: nbconvert + a sidebar

_re_quarto_opt = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_link_attrs = re.compile(r'\[([^\]\n]*)\]\(([^)\s]*)\)\{([^}\n]*)\}')  # [text](url){target="_blank" style=".."}
_re_head_attrs = re.compile(r'^(#{1,6}\s.*?)\s*\{([^}\n]*)\}\s*$', re.MULTILINE)  # ## Title {#id .cls}
_re_fence_div = re.compile(r'^:::+.*$\n?', re.MULTILINE)                           # Quarto's ::: {.callout-note} divs

def _clean_md(s:str) -> str:
    "Markdown written for Quarto/pandoc, made readable by nbconvert's mistune."
    def _link(m):
        text, url, attrs = m.groups()
        if re.search(r'[`*_\[<]', text): return f'[{text}]({url})'
        kv = ' '.join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', attrs) if k in ('target', 'style'))
        return f'<a href="{html.escape(url)}" {kv}>{html.escape(text)}</a>'
    s = _re_link_attrs.sub(_link, s)
    s = _re_head_attrs.sub(lambda m: m.group(1) + ''.join(f' <a id="{i}"></a>' for i in re.findall(r'#([\w.:-]+)', m.group(2))[:1]), s)
    return _re_fence_div.sub('', s)

def _src(x): return ''.join(x) if isinstance(x, list) else (x or '')

def prepare_for_nbconvert(nb:dict) -> tuple[dict, dict]:
    "Split off the front matter and turn Quarto cell options into nbconvert tags; returns (notebook, front matter)."
    import yaml
    fm, cells = {}, []
    for c in nb['cells']:
        src = _src(c.get('source'))
        if c['cell_type'] == 'raw' and (m := re.match(r'^---\s*\n(.*?)\n---\s*$', src.strip()+'\n', re.DOTALL)):
            fm.update(yaml.safe_load(m.group(1)) or {}); continue
        if c['cell_type'] == 'markdown':
            src = _clean_md(src)
            if not src.strip() or src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
        if c['cell_type'] == 'code':
            lines, opts = src.splitlines(), {}
            while lines and (m := _re_quarto_opt.match(lines[0])): opts[m.group(1)] = m.group(2).strip('"\''); lines.pop(0)
            src = '\n'.join(lines).strip('\n')
            if opts.get('include') == 'false': continue
            tags = {'remove_input'} if opts.get('echo') == 'false' or not src.strip() else set()
            if opts.get('output') == 'false': tags.add('remove_output')
            if 'code-fold' in opts: tags.add('code_fold')
            for o in c.get('outputs', []):
                d = o.get('data', {})
                for k, v in d.items():  # strings stored as lists of lines: nbconvert wants str
                    if isinstance(v, list) and not k.endswith('json'): d[k] = ''.join(v)
                if isinstance(o.get('text'), list): o['text'] = ''.join(o['text'])
                if 'text/markdown' in d: d['text/markdown'] = _clean_md(_src(d['text/markdown']))
                if 'application/vnd.jupyter.widget-view+json' in d and len(d) > 1: d.pop('application/vnd.jupyter.widget-view+json')
            if 'remove_input' in tags and not c.get('outputs'): continue
            c['metadata']['tags'] = sorted(tags)
        c['source'] = src
        c.get('metadata', {}).pop('execution', None)  # execnb's timings are floats; nbformat's schema wants strings
        keep = {'cell_type', 'id', 'metadata', 'source', 'attachments'} | ({'outputs', 'execution_count'} if c['cell_type'] == 'code' else set())
        cells.append({k: v for k, v in c.items() if k in keep})
    nb['cells'] = cells
    nb.get('metadata', {}).pop('widgets', None)
    return nb, fm

def _exporter():
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.TagRemovePreprocessor.update(enabled=True, remove_input_tags=('remove_input',), remove_all_outputs_tags=('remove_output',))
    c.HTMLExporter.update(exclude_input_prompt=True, exclude_output_prompt=True)
    return HTMLExporter(config=c, template_name='basic')

def slug(text:str) -> str:
    "Pandoc's (and so Quarto's) heading identifier: lowercase, punctuation except `_-.` dropped, spaces -> `-`."
    s = re.sub(r'\s+', '-', ''.join(ch for ch in text.strip().lower() if ch.isalnum() or ch in '_-. '))
    return re.sub(r'^[^a-z]+', '', s) or 'section'

# TeX: no MathJax offline, so matplotlib's mathtext draws each formula as an SVG (the TeX source when it cannot)
_re_math = re.compile(r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\d$])', re.DOTALL)

def _math_svg(tex:str, display:bool) -> str|None:
    "An <img> of `tex` drawn by mathtext, or None when mathtext cannot parse it."
    import io, base64, matplotlib
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties
    t = re.sub(r'\\text\{([^}]*)\}', r'\\mathrm{\1}', tex.strip())  # TeX mathtext lacks, written in what it has
    t = re.sub(r'\\[td]frac', r'\\frac', t)
    t = re.sub(r'\\frac\s*(\w)\s*(\w)', r'\\frac{\1}{\2}', t)
    t = t.replace(r'\,', r'\ ').replace(r'\!', '').replace(r'\;', r'\ ').replace(r'\|', r'\Vert ')
    buf = io.BytesIO()
    try:
        with matplotlib.rc_context({'svg.fonttype': 'path', 'mathtext.fontset': 'cm'}):
            mathtext.math_to_image(f'${t}$', buf, prop=FontProperties(size=16 if display else 14), format='svg', dpi=72)
    except Exception: return None
    svg = re.sub(r'<\?xml[^>]*>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*', '', buf.getvalue().decode(), flags=re.DOTALL)
    return (f'<img class="math{" display" if display else ""}" alt="{html.escape(tex)}" '
            f'src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}">')

def render_math(soup):
    "Replace `$...$` / `$$...$$` in text (not code) with drawn formulas."
    from bs4 import BeautifulSoup
    for node in list(soup.find_all(string=_re_math)):
        if node.find_parent(['code', 'pre', 'script', 'style', 'a']): continue
        s, out, pos = str(node), [], 0
        for m in _re_math.finditer(s):
            tex, disp = (m.group(1), True) if m.group(1) is not None else (m.group(2), False)
            out += [html.escape(s[pos:m.start()]), _math_svg(tex, disp) or f'<code class="math">{html.escape(tex)}</code>']
            pos = m.end()
        node.replace_with(BeautifulSoup(''.join(out) + html.escape(s[pos:]), 'html.parser'))

def _rel_url(target:str, page:str) -> str:
    "URL of site path `target` relative to site page `page`."
    return os.path.relpath(target, os.path.dirname(page) or '.').replace(os.sep, '/')

def convert_body(rel:str, nb:dict, doc_prefix:str) -> dict:
    "A processed notebook's page body (nbconvert HTML with Quarto's heading ids and working links), front matter and contents."
    import nbformat
    from bs4 import BeautifulSoup
    nb, fm = prepare_for_nbconvert(nb)
    page = page_name(rel)
    soup = BeautifulSoup(_exporter().from_notebook_node(nbformat.from_dict(nb))[0], 'html.parser')
    seen = set()
    for h in soup.find_all(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']):  # ids as Quarto makes them: `recipe.html#load_recipe`
        for a in h.find_all('a', class_='anchor-link'): a.decompose()
        base = sid = slug(h.get_text()); i = 0
        while sid in seen: i += 1; sid = f'{base}-{i}'
        seen.add(sid); h['id'] = sid
    for tag, attr in (('a', 'href'), ('img', 'src')):  # hosted docs -> relative; notebook links -> their pages
        for el in soup.find_all(tag):
            url = el.get(attr) or ''
            if doc_prefix and url.startswith(doc_prefix):
                path, _, frag = url[len(doc_prefix):].partition('#')
                path = re.sub(r'\.html\.md$', '.html', path.lstrip('/') or 'index.html')
                el[attr] = _rel_url(path + ('index.html' if path.endswith('/') else ''), page) + (f'#{frag}' if frag else '')
            elif not re.match(r'^[a-z][a-z0-9+.-]*:|^#|^/', url) and (path := url.partition('#')[0]).endswith(('.ipynb', '.qmd')):
                frag = url.partition('#')[2]
                el[attr] = _rel_url(page_name(os.path.normpath(os.path.join(os.path.dirname(rel), path))), page) + (f'#{frag}' if frag else '')
    for cell in soup.select('div.celltag_code_fold'):  # `#| exports` source, which Quarto shows in a fold
        if (inp := cell.find('div', class_='input')) is None: continue
        det = soup.new_tag('details', attrs={'class': 'code-fold', 'open': ''}); summ = soup.new_tag('summary'); summ.string = 'Exported source'
        inp.wrap(det); det.insert(0, summ)
    render_math(soup)
    toc = [(h.name, h['id'], h.get_text().strip()) for h in soup.find_all(['h2', 'h3'])]
    return dict(fm=fm, body=str(soup), toc=toc)

_CSS = """
:root { --accent:#2c6fbb; --muted:#5f6b7a; --border:#dde3ea; --code-bg:#f6f8fa; }
* { box-sizing:border-box; }
body { margin:0; font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:#1f2933; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.topbar { background:var(--accent); color:#fff; padding:.7rem 1.4rem; display:flex; gap:1rem; align-items:baseline; }
.topbar a { color:#fff; font-weight:600; font-size:1.15rem; } .topbar span { opacity:.8; font-size:.85rem; }
.layout { display:grid; grid-template-columns:230px minmax(0,1fr) 200px; gap:2rem; max-width:1400px; margin:0 auto; padding:0 1.2rem; }
nav.sidebar, aside.toc { position:sticky; top:0; align-self:start; max-height:100vh; overflow:auto; padding:1.2rem 0; font-size:.9rem; }
nav.sidebar .section { margin:1rem 0 .3rem; font-weight:700; color:var(--muted); text-transform:uppercase; font-size:.75rem; }
nav.sidebar ul, aside.toc ul { list-style:none; margin:0; padding:0; }
nav.sidebar li a { display:block; padding:.22rem .6rem; border-left:3px solid transparent; color:#2f3b48; }
nav.sidebar li a.active { border-left-color:var(--accent); background:#eef4fb; color:var(--accent); font-weight:600; }
main.content { padding:1.2rem 0 4rem; min-width:0; }
aside.toc ul { padding-left:.6rem; border-left:1px solid var(--border); } aside.toc li.l3 { padding-left:.8rem; }
aside.toc .toc-title { font-weight:700; color:var(--muted); margin-bottom:.3rem; }
.page-header h1.title { margin:.6rem 0 .2rem; font-size:2.1rem; }
.page-header .description { color:var(--muted); font-size:1.1rem; margin:0 0 1.2rem; font-style:italic; }
h2 { border-bottom:1px solid var(--border); padding-bottom:.2rem; margin-top:2rem; }
pre, code { font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace; font-size:.86rem; }
:not(pre) > code { background:var(--code-bg); padding:.08rem .3rem; border-radius:4px; }
img.math { vertical-align:middle; } img.math.display { display:block; margin:.6rem auto; }
.input_area, .highlight { background:var(--code-bg); border-radius:6px; }
.input_area pre, .highlight pre { margin:0; padding:.7rem .9rem; overflow:auto; }
.output_area pre { margin:.2rem 0 0 .8rem; padding:.3rem .8rem; border-left:2px solid lightsalmon; overflow:auto; }
.output_area .output_stderr pre { border-left-color:#c9a227; color:#5f5a4a; font-size:.8rem; }
.output_area img { max-width:100%; } .cell { margin:0 0 1rem; }
main table { border-collapse:collapse; margin:.6rem 0; font-size:.9rem; }
main th, main td { border:1px solid var(--border); padding:.25rem .55rem; text-align:left; vertical-align:top; }
main thead th { background:#f2f5f8; }
.output_markdown h3 { margin-top:.4rem; font-family:"DejaVu Sans Mono",Menlo,monospace; color:#123a66; }
blockquote { margin:.5rem 0; padding:.1rem 1rem; border-left:3px solid var(--border); color:var(--muted); }
details.code-fold > summary { cursor:pointer; color:var(--muted); font-size:.9rem; }
@media (max-width:1000px) { .layout { grid-template-columns:190px minmax(0,1fr); } aside.toc { display:none; } }
"""

ACTIVE = ' class="active"'

def render_page(rel:str, conv:dict, nav, titles:dict, site_title:str) -> str:
    "One complete page: top bar, sidebar in pipeline order, title and summary, the body, on-page contents."
    from nbconvert.filters import markdown2html
    page, fm = page_name(rel), conv['fm']
    title = fm.get('title') or Path(rel).stem
    desc = re.sub(r'^<p>(.*)</p>$', r'\1', markdown2html(fm.get('description', '')).strip(), flags=re.S)
    up = '' if (u := _rel_url('.', page)) == '.' else u + '/'
    side = []
    for sec, items in nav:
        side += ([f'<div class="section">{html.escape(sec)}</div>'] if sec else []) + ['<ul>']
        side += [f'<li><a{ACTIVE if it == rel else ""} href="{_rel_url(page_name(it), page)}">{html.escape(titles[it])}</a></li>'
                 for it in items if it in titles] + ['</ul>']
    toc = ''.join(f'<li class="l{n[1]}"><a href="#{i}">{html.escape(t)}</a></li>' for n, i, t in conv['toc'])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – {html.escape(site_title)}</title>
<link rel="stylesheet" href="{up}site.css"><link rel="stylesheet" href="{up}pygments.css"><link rel="stylesheet" href="{up}styles.css">
</head><body>
<header class="topbar"><a href="{up}index.html">{html.escape(site_title)}</a><span>documentation (offline build)</span></header>
<div class="layout"><nav class="sidebar">{''.join(side)}</nav>
<main class="content"><header class="page-header"><h1 class="title">{html.escape(title)}</h1><div class="description">{desc}</div></header>
{conv['body']}
</main>
{f'<aside class="toc"><div class="toc-title">On this page</div><ul>{toc}</ul></aside>' if toc else ''}
</div></body></html>
"""

def offline_site(results:list, out:Path, nav, nbs:Path, site_title:str):
    "Write the static site `out` from the converted bodies in `results`."
    from pygments.formatters import HtmlFormatter
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out/'site.css').write_text(_CSS)
    (out/'pygments.css').write_text(HtmlFormatter(style='default').get_style_defs('.highlight'))
    shutil.copy2(nbs/'styles.css', out/'styles.css')
    convs = {r['rel']: r['conv'] for r in results if r.get('conv')}
    titles = {rel: c['fm'].get('title') or Path(rel).stem for rel, c in convs.items()}
    if extra := [r for r in convs if r not in {it for _, items in nav for it in items}]: nav = list(nav) + [('Other', extra)]
    pages = {out/page_name(rel): render_page(rel, conv, nav, titles, site_title) for rel, conv in convs.items()}
    ids = {p: set(re.findall(r'\sid="([^"]+)"', t)) for p, t in pages.items()}
    for p, txt in pages.items():
        # nbdev links every backticked name of the module index, private helpers too: unlink those with no doc entry
        def _fix(m):
            tgt = (p.parent/m.group(1)).resolve() if m.group(1) else p
            return m.group(0) if tgt not in ids or m.group(2) in ids[tgt] else f'<code>{m.group(3)}</code>'
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(re.sub(r'<a href="([^"#:]*)#([^"]+)"><code>(.*?)</code></a>', _fix, txt))
        for url in re.findall(r'(?:href|src)="([^"#?:]+)[^"]*"', txt):  # images and files beside the notebooks
            tgt = (p.parent/url).resolve()
            if not tgt.exists() and tgt.is_relative_to(out.resolve()) and (s := nbs/tgt.relative_to(out.resolve())).is_file():
                tgt.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(s, tgt)

# --------------------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', help='output folder (default: _site_offline, or _docs with --quarto)')
    ap.add_argument('--nbs', default=str(NBS), help='notebook folder')
    ap.add_argument('--execute', choices=['auto', 'always', 'never'], default='auto',
                    help='run notebooks that have no current executed copy (auto), all of them (always), or none (never)')
    ap.add_argument('--quarto', action='store_true', help='render the Quarto site instead of the offline one')
    ap.add_argument('--proc', default=str(ROOT/'_proc'), help='with --quarto: folder for the processed notebooks')
    ap.add_argument('--jobs', type=int, default=min(os.cpu_count() or 1, 4), help='parallel workers')
    ap.add_argument('--only', default='', help='regex: build only notebooks whose path matches')
    ap.add_argument('--cell-timeout', type=int, default=900)
    a = ap.parse_args(argv)
    t0 = time.time()
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    nbs = Path(a.nbs).resolve()
    out = Path(a.out or (ROOT/('_docs' if a.quarto else '_site_offline'))).resolve()
    rels = [r for r in find_notebooks(nbs) if re.search(a.only, r.as_posix())]
    if not rels: sys.exit(f'no notebooks found in {nbs}')
    proc = Path(a.proc).resolve() if a.quarto else None
    if proc and proc.exists(): shutil.rmtree(proc)
    doc_prefix = None if a.quarto else (cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')).rstrip('/') + '/' if cfg.doc_host else ''
    res = stage(nbs, rels, a.execute, a.jobs, a.cell_timeout, proc, doc_prefix)
    for r in res:
        print(f"  {'ok ' if r['ok'] else 'ERR'} {r['rel']:<40} {r['secs']:5.1f}s {r.get('how', ''):<6} "
              f"{r.get('outputs', 0):3} outputs" + (f"\n      {r['error']}" if r['error'] else ''))
    if any('nbdev processing' in (r['error'] or '') for r in res): sys.exit('nbdev processing failed')
    if a.quarto: quarto_site(nbs, proc, out, a.jobs)
    else:
        nav = read_sidebar(nbs/'sidebar.yml') if (nbs/'sidebar.yml').exists() else [(None, [r.as_posix() for r in rels])]
        offline_site(res, out, nav, nbs, cfg.title)
    print(f'{len(rels)} pages -> {out} in {time.time()-t0:.0f}s')
    if bad := [r for r in res if not r['ok']]: sys.exit(f'{len(bad)} notebook(s) failed (their pages were still written)')

if __name__ == '__main__':
    # workers unpickle `build_docs.stage_one`: run as the importable module, not as __main__
    sys.path.insert(0, str(Path(__file__).parent))
    import build_docs
    build_docs.main()
