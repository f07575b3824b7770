"""The documentation site (scripts/build_docs.py): every notebook has a page made from its executed copy, so pages show
their tables and plots (checked in headless Chromium) and no progress bars; API pages carry `show_doc` entries (classes
as `class`), links resolve, formulas are drawn, GPU cells never run during a docs build, and the Quarto mode stages
what `nbdev-docs` renders from the top-level `_quarto.yml`.

tests/conftest.py runs this module after tests/test_notebooks.py, which saves the executed notebooks that the site is
built from; run alone, the build runs the notebooks itself."""
import json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
from urllib.parse import unquote

import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SCRIPT = ROOT/'scripts'/'build_docs.py'
sys.path.insert(0, str(SCRIPT.parent))
import build_docs  # noqa: E402

bs4 = pytest.importorskip('bs4')
NOTEBOOKS = build_docs.find_notebooks(NBS)

def _build(*args, timeout=600, **env):
    r = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1', **env})
    return r, r.stdout[-6000:] + '\n' + r.stderr[-6000:]

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "The offline site of the project's notebooks, from their executed copies (run now where missing), built once."
    out = tmp_path_factory.mktemp('site')
    r, log = _build('--out', out, '--jobs', 2, timeout=3600)
    return out, r.returncode, log

@pytest.fixture(scope='module')
def site(built):
    "The site, whose pages were all written (a failing notebook still gets a page, without its outputs)."
    out, rc, log = built
    assert (out/'index.html').exists() and 'nbdev processing failed' not in log, f'build_docs.py failed:\n{log}'
    return out

def test_build_shows_every_notebook_run(built):
    "The build ran (or found executed copies of) every notebook without an error."
    out, rc, log = built
    assert rc == 0, f'build_docs.py reports errors:\n{log}'

def _soup(p:Path): return bs4.BeautifulSoup(p.read_text(), 'html.parser')

def _title(nb:Path) -> str:
    "The notebook's H1, which nbdev turns into the page title."
    md = next(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
    return re.search(r'^#\s+(.+?)\s*$', md, re.M).group(1)

# --------------------------------------------------------------------------------------------------------------------
# configuration

def test_sidebar_lists_every_notebook_in_pipeline_order():
    nav = build_docs.read_sidebar(NBS/'sidebar.yml')
    listed = [it for _, items in nav for it in items]
    missing = [r.as_posix() for r in NOTEBOOKS if r.as_posix() not in listed]
    assert not missing, f'notebooks missing from nbs/sidebar.yml (custom_sidebar = true): {missing}'
    assert listed[0] == 'index.ipynb', 'the home page comes first'
    pipeline = dict(nav[1:])['Pipeline (API)']
    top = sorted(r.as_posix() for r in NOTEBOOKS if re.match(r'^\d+_', r.name) and len(r.parts) == 1)
    assert [p for p in pipeline if p in top] == top, 'every numbered notebook is in the pipeline section, in numeric order'
    assert len(listed) == len(set(listed)), 'no page listed twice'

def test_top_level_quarto_yml_is_what_nbdev_reads():
    "The design card's top-level `_quarto.yml` is the one file: nbs/_quarto.yml (where nbdev 3 reads it) links to it."
    top, nbs = ROOT/'_quarto.yml', NBS/'_quarto.yml'
    assert top.is_file() and not top.is_symlink()
    assert nbs.resolve() == top.resolve(), 'nbs/_quarto.yml must be a link to ../_quarto.yml'
    q = yaml.safe_load(top.read_text())
    assert q['project']['type'] == 'website'
    assert q['metadata-files'] == ['nbdev.yml', 'sidebar.yml'], 'nbdev-docs writes nbdev.yml; the sidebar is ours'
    assert (NBS/q['format']['html']['css']).exists(), 'paths in _quarto.yml are relative to nbs/'
    listed = {it for _, items in build_docs.read_sidebar(NBS/'sidebar.yml') for it in items}
    for item in q['website']['navbar'].get('left', []): assert item['href'] in listed, item
    wf = yaml.safe_load((ROOT/'.github/workflows/docs.yml').read_text())
    steps = ' '.join(str(s) for job in wf['jobs'].values() for s in job['steps'])
    assert 'build_docs.py' in steps and '--quarto' in steps and 'deploy-pages' in steps

def test_quarto_mode_stages_what_nbdev_docs_renders(tmp_path):
    "--quarto (what the Pages workflow runs) stages nbdev-processed pages plus the Quarto config, then calls quarto."
    fake = tmp_path/'bin'/'quarto'; fake.parent.mkdir()
    fake.write_text(f"""#!{sys.executable}
import os, sys, pathlib
pathlib.Path({str(tmp_path/'calls')!r}).open('a').write(os.getcwd() + ' ' + ' '.join(sys.argv[1:]) + chr(10))
out = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1]); out.mkdir(parents=True, exist_ok=True)
(out/'index.html').write_text('<html>rendered</html>')
""")
    fake.chmod(0o755)
    proc, out = tmp_path/'proc', tmp_path/'docs'
    r, log = _build('--quarto', '--only', r'^(index|01_recipe)\.', '--execute', 'never', '--jobs', 1, '--proc', proc, '--out', out,
                    timeout=300, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert r.returncode == 0, log
    calls = (tmp_path/'calls').read_text().split()
    assert calls[0] == str(proc) and 'render' in calls and (out/'index.html').exists()
    for f in ('sidebar.yml', 'styles.css', 'nbdev.yml'): assert (proc/f).exists(), f
    assert (proc/'_quarto.yml').read_text() == (ROOT/'_quarto.yml').read_text()
    nbdev_yml = yaml.safe_load((proc/'nbdev.yml').read_text())
    assert nbdev_yml['website']['repo-url'].startswith('https://github.com/') and nbdev_yml['project']['output-dir'] == 'docs'
    staged = yaml.safe_load((proc/'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert staged == ['index.ipynb', {'section': 'Pipeline (API)', 'contents': ['01_recipe.ipynb']}], 'pages not built are pruned'
    nb = json.loads((proc/'01_recipe.ipynb').read_text())
    assert 'output-file: recipe.html' in ''.join(nb['cells'][0]['source'])
    md = [''.join(o['data']['text/markdown']) for c in nb['cells'] for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
    assert any('### load_recipe' in m for m in md), 'show_doc rendered by nbdev'
    assert any('### Recipe' in m and '```python\nclass Recipe(' in m for m in md), 'a class is shown as `class`'

# --------------------------------------------------------------------------------------------------------------------
# the built pages

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[r.as_posix() for r in NOTEBOOKS])
def test_every_notebook_has_a_page(site, nb):
    page = site/build_docs.page_name(nb)
    assert page.exists(), f'{nb} has no page {page.name}'
    s = _soup(page)
    assert s.find('h1', class_='title').get_text(strip=True) == _title(NBS/nb)
    active = s.select('nav.sidebar a.active')
    assert len(active) == 1 and active[0]['href'] == Path(build_docs.page_name(nb)).name, 'page is current in the sidebar'
    main = s.find('main')
    assert len(main.get_text(' ', strip=True)) > 200, 'page has content'
    for pre in main.select('.input_area pre'):  # directives are stripped from shown code
        assert not re.search(r'^\s*#\s*\|', pre.get_text(), re.M), f'directive left in {page.name}:\n{pre.get_text()[:300]}'
    for c in main.find_all(['code', 'pre']): c.decompose()
    prose = main.get_text('\n')
    for leak in (r'\{target=', r'^\s*:::', r'\{\.callout'):  # pandoc/Quarto markup that nbconvert would show as text
        assert not re.search(leak, prose, re.M), f'Quarto syntax {leak!r} leaked into {page.name}'

def _pages(site): return sorted(site.rglob('*.html'))

# what tqdm and the trainer's default logging print: `45%|####5     | 9/20 [00:01<00:02, 4.5it/s]`, `{'loss': 2.1, ...}`
NOISE = re.compile(r"\d+%\|[^\n|]{0,80}\||\d(it|s)/(s|it)\]|\[\d\d:\d\d<\d\d:\d\d|\{'loss': |'grad_norm': ")

def test_no_progress_bars_or_raw_logs(site):
    bad = [f'{p.relative_to(site)}: {m.group(0)!r}' for p in _pages(site) for m in [NOISE.search(_soup(p).get_text())] if m]
    assert not bad, 'tqdm output or raw log dicts on pages:\n' + '\n'.join(bad)

def test_formulas_are_drawn(site):
    "Every $...$ formula becomes a drawn image; TeX mathtext cannot draw would show as raw code."
    raw = [f'{p.name}: {c.get_text()}' for p in _pages(site) for c in _soup(p).select('code.math')]
    assert not raw, 'formulas left as raw TeX:\n' + '\n'.join(raw)
    assert _soup(site/'quantization.html').select('img.math'), 'the quantization page has formulas'

def _outputs(page:Path):
    main = _soup(page).find('main')
    return (main.select('.output_area img[src^="data:image/png"]'), main.select('.output_area table'),
            ' '.join(o.get_text(' ', strip=True) for o in main.select('.output_area')))

def test_quickstart_shows_results(site):
    "The CPU tutorial's page shows the run: findings table, data report, one loss figure, one progress line, before/after."
    imgs, tables, text = _outputs(site/'tutorials'/'quickstart.html')
    assert len(imgs) == 1, f'one loss figure after training, not {len(imgs)}'
    assert len(tables) >= 3, f'doctor findings, data report and the before/after comparison as tables: {len(tables)}'
    assert re.search(r'held-out exact match: [\d.]+% -> [\d.]+%', text), 'the before/after numbers'
    assert len(re.findall(r'step \d+/\d+', text)) == 1, 'one compact progress line'

def test_api_page_shows_tables_and_plots(site):
    imgs, tables, text = _outputs(site/'quantization.html')
    assert len(imgs) >= 1 and len(tables) >= 2, (len(imgs), len(tables))

def test_api_pages_show_docs(site):
    "Every public function/class the package exports has its show_doc entry (an anchor and a `def`/`class` signature)."
    import importlib, inspect
    from qlora_nb._modidx import d
    pages, missing, n = {}, [], 0
    for mod, syms in d['syms'].items():
        for full, (link, _) in syms.items():
            short = full[len(mod)+1:]
            if '.' in short or short.startswith('_'): continue
            page, frag = link.split('#')
            if not (site/page).exists():
                if f'{page} (page of {mod})' not in missing: missing.append(f'{page} (page of {mod})')
                continue
            if page not in pages:  # (ids, {heading text: [text of the code block after it]})
                s, heads = _soup(site/page), {}
                for h in s.find_all(['h2', 'h3', 'h4']):
                    nxt = h.find_next('pre')
                    heads.setdefault(h.get_text().strip(), []).append(nxt.get_text() if nxt else '')
                pages[page] = ({e['id'] for e in s.find_all(id=True)}, heads)
            ids, heads = pages[page]
            kw = 'class' if inspect.isclass(getattr(importlib.import_module(mod), short, None)) else 'def'
            if frag not in ids or not any(re.search(rf'\b{kw}\s+{re.escape(short)}\b', sig) for sig in heads.get(short, [])):
                missing.append(f'{link} ({kw})')
            n += 1
    assert n > 20 and not missing, f'show_doc entries missing: {missing}'

@pytest.fixture(scope='module')
def parsed(site):
    "Every page of the site: {path: (ids, [(tag, url)])}, parsed once."
    res = {}
    for page in _pages(site):
        s = _soup(page)
        ids = {e['id'] for e in s.find_all(id=True)} | {e['name'] for e in s.find_all('a', attrs={'name': True})}
        res[page.resolve()] = (ids, [(el.name, el[a]) for el in s.find_all(['a', 'img', 'link', 'script']) for a in ('href', 'src') if el.get(a)])
    return res

def test_internal_links_resolve(parsed):
    "Every relative link points to a file in the site, and its #fragment to an element of that page."
    bad, n = [], 0
    for page, (_, links) in parsed.items():
        for tag, url in links:
            if re.match(r'^[a-z][a-z0-9+.-]*:', url): continue  # http(s), mailto, data
            path, _, frag = url.partition('#')
            target = (page.parent/unquote(path)).resolve() if path else page
            n += 1
            if not target.is_file(): bad.append(f'{page.name}: {url} (no file)')
            elif frag and target.suffix == '.html' and unquote(frag) not in parsed.get(target, (set(),))[0]: bad.append(f'{page.name}: {url} (no #{frag})')
    assert n > 50 and not bad, '\n'.join(bad)

def test_offline_and_self_contained(parsed):
    "Pages load nothing from the network, and nbdev's links to the hosted docs were made relative."
    from nbdev.config import get_config
    host = get_config(ROOT).doc_host
    for page, (_, links) in parsed.items():
        for tag, url in links:
            if tag in ('img', 'link', 'script'): assert not re.match(r'^https?:', url), f'{page.name} loads {url}'
            if host: assert not url.startswith(host), f'{page.name} links to the hosted site: {url}'

# --------------------------------------------------------------------------------------------------------------------
# GPU cells never run while docs are built

def _nb(*cells):
    import nbformat.v4 as v4
    nb = v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nb.cells = [v4.new_markdown_cell(c[3:]) if c.startswith('md:') else v4.new_raw_cell(c[4:]) if c.startswith('raw:')
                else v4.new_code_cell(c) for c in cells]
    return nb

def test_gpu_cells_and_skip_exec_never_run(tmp_path):
    "A notebook run by the build: flagged cells and skip_exec notebooks do not run; others show their outputs."
    import nbformat
    nbs = tmp_path/'nbs'; (nbs/'tutorials').mkdir(parents=True)
    boom = "raise RuntimeError('a GPU cell ran during the docs build')"
    nbformat.write(_nb('md:# Fixture\n> A CPU notebook with a GPU cell.',
                       '#| export\ndef double(x:int, # a number\n          )->int:\n    "Twice `x`."\n    return 2*x',
                       'y = 21',
                       f'#| gpu\nimport os\n{boom}',
                       'import math\nz = double(y)\nz',                      # imports + lesson code: keeps its output
                       'print(f"sqrt={math.sqrt(16.0)}")'), nbs/'00_fixture.ipynb')
    nbformat.write(_nb('raw:---\nskip_exec: true\n---', 'md:# GPU only\n> Needs a GPU.',
                       f'import torch\n{boom}'), nbs/'tutorials'/'gpu_only.ipynb')
    (nbs/'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - 00_fixture.ipynb\n'
                                   '      - section: Tutorials\n        contents:\n          - tutorials/gpu_only.ipynb\n')
    shutil.copy2(NBS/'styles.css', nbs/'styles.css')
    out = tmp_path/'site'
    r, log = _build('--nbs', nbs, '--out', out, '--jobs', 1, timeout=300, QLORA_NB_EXECUTED=str(tmp_path/'executed'))
    assert r.returncode == 0, log
    assert 'a GPU cell ran' not in log
    assert (tmp_path/'executed'/'00_fixture.ipynb').exists(), 'the executed copy is saved for the next build'
    main = _soup(out/'fixture.html').find('main')
    assert main.find(id='double') is not None and 'Twice' in main.get_text(), 'show_doc rendered for the exported function'
    assert boom.split("'")[1] in main.get_text(), 'the GPU cell is shown'
    outs = ' '.join(o.get_text(' ', strip=True) for o in main.select('.output_area'))
    assert '42' in outs and 'sqrt=4.0' in outs, f'executed outputs shown: {outs!r}'
    assert 'a GPU cell ran' not in outs
    gp = _soup(out/'tutorials'/'gpu_only.html')
    assert gp.find('h1', class_='title').get_text(strip=True) == 'GPU only' and not gp.select('.output_area')
    assert 'href="tutorials/gpu_only.html"' in (out/'fixture.html').read_text(), 'sidebar links into the tutorials folder'

# --------------------------------------------------------------------------------------------------------------------
# what a reader sees, in a real browser

def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        if p := shutil.which(name): return p
    return '/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else None

def _screenshot(url:str, png:Path, height:int):
    if (exe := _chromium()) is None:
        msg = 'Chromium is not installed: apt-get update && apt-get install -y chromium'
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    with tempfile.TemporaryDirectory() as prof:
        r = subprocess.run([exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                            '--disable-background-networking', '--disable-component-update', '--disable-sync',
                            '--disable-dev-shm-usage', '--hide-scrollbars', f'--user-data-dir={prof}',
                            f'--screenshot={png}', f'--window-size=1280,{height}', url], capture_output=True, text=True, timeout=120)
    assert png.exists() and png.stat().st_size > 0, f'no screenshot of {url}:\n{r.stderr[-2000:]}'
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(png).convert('RGB')).astype(int)

def _near(a, rgb, tol): return int((abs(a - rgb).max(axis=2) <= tol).sum())

# pixels of the first four colours of matplotlib's default cycle (plot lines and bars) and of a table's header row
PLOT_RGB = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
TABLE_HEAD_RGB = (242, 245, 248)  # `main thead th` in build_docs._CSS

@pytest.mark.parametrize('page,plots,tables', [('index.html', False, False), ('recipe.html', False, False),
                                               ('tutorials/quickstart.html', True, True), ('quantization.html', True, True)])
def test_screenshot_shows_rendered_page(site, page, plots, tables, tmp_path):
    "A rendered page, not a blank or error page; the tutorial and the quantization page show their plots and tables."
    a = _screenshot((site/page).as_uri(), tmp_path/'page.png', 5000 if plots else 1600)
    assert (a[:1600].min(axis=2) < 235).mean() > 0.05, 'mostly blank'
    import numpy as np
    assert len(np.unique(a.reshape(-1, 3) // 8, axis=0)) > 40, 'too few colours'
    assert abs(a[5:30, 600:700].reshape(-1, 3).mean(0) - [44, 111, 187]).max() < 25, 'the top bar: site.css loaded'
    assert (a[300:1500, 300:1000].min(axis=2) < 150).mean() > 0.01, 'no text in the main column'
    if plots: assert sum(_near(a, c, 6) for c in PLOT_RGB) > 100, 'no plot visible'
    if tables: assert _near(a, TABLE_HEAD_RGB, 2) > 2000, 'no table visible'
    if os.environ.get('DOCS_SCREENSHOT_DIR'):  # keep them to look at
        shutil.copy2(tmp_path/'page.png', Path(os.environ['DOCS_SCREENSHOT_DIR'])/(page.replace('/', '_') + '.png'))
