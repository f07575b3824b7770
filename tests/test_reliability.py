"""Reliability battery (issue 16): bad inputs and faults across recipe, CLI, data, run directory, resume and merge, on the
CPU toy model. Each case asserts one clear message (the CLI: exit code 2, one `qlora-nb ...: error:` line, no traceback)
or correct behaviour, and that nothing already written was lost. Training processes are killed with SIGKILL during a
step and during a checkpoint write, and interrupted with SIGINT, then resumed. Runs in a few minutes on 2 cores."""
import contextlib, hashlib, io, json, os, random, shutil, signal, subprocess, sys, time, warnings
from pathlib import Path
from types import SimpleNamespace
import pytest

os.environ.setdefault('OMP_NUM_THREADS', '1')
from qlora_nb.recipe import QloraError, load_recipe, parse_overrides, read_recipe, toy_recipe, write_recipe
from qlora_nb.cli import main
from qlora_nb.toy import toy_model_dir
from qlora_nb.train import finetune, read_summary
from qlora_nb.run import Run, check_base, pick_checkpoint, read_run

TINY = {'training.max_steps': 4, 'training.save_steps': 2, 'training.batch_size': 8, 'training.logging_steps': 1,
        'training.save_total_limit': 0, 'data.path': 'toy:upper'}

# ---------------------------------------------------------------- helpers
def cli(*args):
    "Run `qlora-nb ARGS` in this process: (exit code, stdout, stderr); an exception escaping `main` fails the test (a traceback)"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()

def clear_error(res, *words):
    "Exit code 2, no traceback, exactly one error line, naming `words`"
    rc, out, err = res
    assert rc == 2, f'exit code {rc}\n{err[-2000:]}'
    assert 'Traceback' not in err, err
    lines = [l for l in err.splitlines() if ': error: ' in l]
    assert len(lines) == 1, err
    for w in words: assert w in lines[0], f'{w!r} not in: {lines[0]}'
    return lines[0]

def api_error(fn, *words):
    with pytest.raises(QloraError) as e: fn()
    for w in words: assert w in str(e.value), f'{w!r} not in: {e.value}'
    return str(e.value)

def snapshot(p:Path) -> dict:
    "Every file under `p` with its content hash: compared before and after a refused command (nothing lost)"
    p = Path(p)
    return {str(f.relative_to(p)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(p.rglob('*')) if f.is_file()}

def ini(ws, name, **kw) -> Path:
    "A toy recipe file whose runs go to `ws.runs`"
    r = toy_recipe(**{**TINY, 'model.name_or_path': str(ws.base), 'output.dir': str(ws.runs), 'output.name': name, **kw})
    return write_recipe(r, ws.dir/f'{name}.ini')

def train(ws, name, *extra, **kw):
    return cli('train', '--recipe', ini(ws, name, **kw), *extra)

def train_api(ws, name, overrides=None, **kw):
    "`finetune` on the toy recipe `name` with options the CLI may not expose yet (fresh, force)"
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); return finetune(ini(ws, name, **(overrides or {})), **kw)

@pytest.fixture(scope='session')
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp('reliability')
    base = d/'base'; shutil.copytree(toy_model_dir(), base)
    w = SimpleNamespace(dir=d, base=base, runs=d/'runs')
    rc, out, err = train(w, 'shared')
    assert rc == 0, err
    w.shared = w.runs/'shared'
    return w

def copy_run(ws, name) -> Path:
    dst = ws.dir/'copies'/name
    shutil.copytree(ws.shared, dst)
    return dst

# ---------------------------------------------------------------- recipe values (CLI: exit 2 before anything loads)
BAD_VALUES = [  # (key, value, words the error must contain)
    ('training.lr', '-1', 'must be a number > 0'), ('training.lr', '0', 'must be a number > 0'),
    ('training.lr', 'nan', 'training.lr'), ('training.lr', 'abc', 'must be float'),
    ('training.batch_size', '0', 'training.batch_size'), ('training.batch_size', '2.5', 'must be int'),
    ('training.grad_accum', '-2', 'training.grad_accum'), ('training.grad_accum', '0', 'training.grad_accum'),
    ('training.warmup', '-5', 'training.warmup'), ('training.warmup', '1.5', 'whole number of steps'),
    ('data.eval_split', '1.5', 'data.eval_split'), ('data.eval_split', '-0.1', 'data.eval_split'),
    ('training.max_steps', '0', 'training.max_steps'), ('training.epochs', '-1', 'training.epochs'),
    ('lora.r', '0', 'lora.r'), ('lora.alpha', '0', 'lora.alpha'), ('lora.dropout', '1.0', 'probability'),
    ('lora.dropout', '-0.1', 'lora.dropout'), ('training.logging_steps', '0', 'logging_steps'),
    ('training.save_steps', '0', 'save_steps'), ('training.eval_steps', '0', 'eval_steps'),
    ('training.save_total_limit', '-1', 'save_total_limit'), ('data.max_length', '0', 'max_length'),
    ('training.seed', '-1', 'training.seed'), ('training.max_grad_norm', '-1', 'max_grad_norm'),
    ('quantization.quant_type', 'nf5', 'Did you mean `nf4`'), ('quantization.compute_dtype', 'bfloat17', 'Did you mean `bfloat16`'),
    ('lora.bias', 'some', 'lora.bias'), ('data.on_error', 'skip', 'data.on_error'),
    ('distributed.strategy', 'deepspeed', 'distributed.strategy'), ('model.backend', 'vllm', 'model.backend'),
    ('output.name', '../escape', 'not a run name'), ('output.name', 'x.incomplete', 'not a run name'),
    ('training.lr_scheduler', 'cosin', 'Did you mean `cosine`'), ('training.lr_scheduler', 'cosine_with_min_lr', 'scheduler arguments'),
    ('training.optimizer', 'adamw_torc', 'Did you mean `adamw_torch`'), ('model.attn_implementation', 'flash_attn2', 'Did you mean `flash_attention_2`'),
    ('training.gradient_checkpointing', 'maybe', 'must be bool'), ('training.lerning_rate', '1', 'Did you mean `lr`'),
    ('trainng.lr', '1', 'Did you mean `training`'), ('training.report_to', 'tensorbord', 'Did you mean `tensorboard`'),
]

@pytest.mark.parametrize('key,value,words', BAD_VALUES, ids=[f'{k}={v}' for k, v, _ in BAD_VALUES])
def test_bad_recipe_value(ws, tmp_path, key, value, words):
    name = f"v{abs(hash((key, value))) % 10**8}"
    clear_error(train(ws, name, f'--{key}', value), words)
    assert not (ws.runs/name).exists() and not (ws.runs/f'{name}.incomplete').exists()

def test_reduce_on_plateau_without_eval(ws):
    clear_error(train(ws, 'plateau', '--training.lr_scheduler', 'reduce_lr_on_plateau'), 'trainer refuses')

def test_epochs_zero_with_max_steps_unset():
    api_error(lambda: load_recipe(toy_recipe(), **{'training.max_steps': -1, 'training.epochs': 0}), 'trains nothing')

# ---------------------------------------------------------------- recipe files
INI_FILES = [  # (file text, words)
    ('[training]\nlr = 1e-3\nbatch_size = 2\nlr = 2e-3\n', ['line 4', 'key `lr` appears twice', '[training]']),
    ('[training]\nlr = 1e-3\n[training]\nseed = 1\n', ['line 3', 'section `[training]` appears twice']),
    ('lr = 1e-3\n[training]\n', ['line 1', 'before any `[section]`']),
    ('[training]\nthis is not a key value line\n', ['line 2']),
    ('[training]\n\n# schedule\nwarmup = -5\n', ['line 4', '`training.warmup`']),
    ('[training]\nlr = fast\n', ['line 2', 'must be float']),
    ('[lora]\nrank = 8\n', ['Unknown recipe key `rank`']),
    ('[traning]\nlr = 1e-3\n', ['Did you mean `training`']),
]

@pytest.mark.parametrize('text,words', INI_FILES, ids=[f'ini{i}' for i in range(len(INI_FILES))])
def test_bad_recipe_file(ws, tmp_path, text, words):
    f = tmp_path/'r.ini'; f.write_text(text)
    clear_error(cli('train', '--recipe', f), *words)

def test_recipe_missing(tmp_path): clear_error(cli('train', '--recipe', tmp_path/'nope.ini'), 'not found')
def test_recipe_is_directory(tmp_path): clear_error(cli('train', '--recipe', tmp_path), 'cannot be read')
def test_recipe_not_utf8(tmp_path):
    f = tmp_path/'r.ini'; f.write_bytes(b'[training]\nlr = \xff\xfe\n')
    clear_error(cli('train', '--recipe', f), 'cannot be read')

# ---------------------------------------------------------------- command line
def test_missing_value_before_next_option(ws):
    clear_error(train(ws, 'mv', '--training.lr', '--output.name', 'x'), 'needs a value', '--output.name')
def test_missing_value_at_end(ws): clear_error(train(ws, 'mv2', '--training.lr'), 'needs a value')
def test_negative_value_is_a_value(): assert parse_overrides(['--training.warmup', '-5']) == {'training.warmup': '-5'}
def test_stray_positional(ws): clear_error(train(ws, 'sp', 'oops'), 'Unexpected argument')
def test_unknown_command():
    rc, out, err = cli('trian')
    assert rc == 2 and 'Did you mean `train`' in err and 'Traceback' not in err
def test_estimate_bad_value(): clear_error(cli('estimate', 'toy', '--training.batch_size', '0'), 'batch_size')
def test_merge_missing_run(tmp_path): clear_error(cli('merge', tmp_path/'nope'), 'does not exist')
def test_generate_missing_run(tmp_path): clear_error(cli('generate', tmp_path/'nope', '--prompt', 'hi'), 'does not exist')

# ---------------------------------------------------------------- data (owned by 30_data; here to measure)
def _data_case(ws, tmp_path, name, content, *words, **kw):
    f = tmp_path/name
    if isinstance(content, bytes): f.write_bytes(content)
    elif content is not None: f.write_text(content)
    return clear_error(train(ws, f'd{abs(hash(name)) % 10**8}', '--data', f, **kw), *words)

def test_data_missing(ws, tmp_path): _data_case(ws, tmp_path, 'missing.jsonl', None, 'missing.jsonl')
def test_data_empty(ws, tmp_path): _data_case(ws, tmp_path, 'empty.jsonl', '', 'empty.jsonl')
def test_data_bad_json_line(ws, tmp_path):
    _data_case(ws, tmp_path, 'bad.jsonl', '{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n', 'bad.jsonl')
def test_data_wrong_columns(ws, tmp_path):
    _data_case(ws, tmp_path, 'cols.jsonl', '{"question": "a", "answer": "b"}\n' * 20, 'cols.jsonl')
def test_data_binary(ws, tmp_path): _data_case(ws, tmp_path, 'garbage.jsonl', os.urandom(2000), 'garbage.jsonl')
def test_data_directory_without_data(ws, tmp_path):
    (tmp_path/'dd').mkdir(); (tmp_path/'dd'/'notes.txt').write_text('x')
    clear_error(train(ws, 'ddir', '--data', tmp_path/'dd'), 'dd')
def test_eval_split_count_too_large(ws):
    clear_error(train(ws, 'evbig', '--data.eval_split', '100000'), 'eval_split')

# ---------------------------------------------------------------- run directory
def test_output_dir_is_a_file(ws, tmp_path):
    f = tmp_path/'afile'; f.write_text('x')
    clear_error(train(ws, 'od', '--output.dir', f), 'is a file')
def test_run_path_is_a_file(ws):
    ws.runs.mkdir(exist_ok=True); (ws.runs/'isfile').write_text('keep me')
    clear_error(train(ws, 'isfile'), 'is a file')
    assert (ws.runs/'isfile').read_text() == 'keep me'
def test_work_path_is_a_file(ws):
    (ws.runs/'wfile.incomplete').write_text('keep me')
    clear_error(train(ws, 'wfile'), 'is a file')
    assert (ws.runs/'wfile.incomplete').read_text() == 'keep me'
def test_finished_run_not_overwritten(ws):
    before = snapshot(ws.shared)
    clear_error(train(ws, 'shared'), 'already holds a finished run', '--overwrite')
    assert snapshot(ws.shared) == before

def _interrupted(ws, name, steps=6, **kw):
    "A run killed (here: a crash) after its checkpoint at step 4 -> `name.incomplete` with checkpoint-2 and -4"
    from transformers import TrainerCallback
    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **k):
            if state.global_step == 5: raise RuntimeError('simulated crash')
    r = read_recipe(ini(ws, name, **{'training.max_steps': steps, **kw}))
    with warnings.catch_warnings(), pytest.raises(RuntimeError): warnings.simplefilter('ignore'); finetune(r, callbacks=[Crash()])
    return ws.runs/f'{name}.incomplete'

def test_rerun_without_resume_keeps_work(ws):
    w = _interrupted(ws, 'keep'); before = snapshot(w)
    clear_error(train(ws, 'keep', **{'training.max_steps': 6}), 'holds an interrupted run', '--resume', '--fresh')
    assert snapshot(w) == before

def test_fresh_moves_work_aside(ws):
    w = _interrupted(ws, 'fresh'); before = snapshot(w)
    (w/'accelerate.yaml').write_text('num_processes: 1\n')
    train_api(ws, 'fresh', {'training.max_steps': 6}, fresh=True)
    aside = [p for p in ws.runs.glob('fresh.incomplete.*')]
    assert len(aside) == 1 and all(k in snapshot(aside[0]) for k in before)   # nothing lost
    assert read_summary(ws.runs/'fresh')['resumed_from'] is None and (ws.runs/'fresh'/'accelerate.yaml').exists()

def test_overwrite_keeps_merged_model(ws):
    name = 'ovm'
    assert train(ws, name)[0] == 0
    m = ws.runs/name/'merged-16bit'; m.mkdir(); (m/'config.json').write_text('{}'); (m/'model.safetensors').write_bytes(b'w' * 100)
    rc, out, err = train(ws, name, '--overwrite')
    assert rc == 0, err
    kept = list(ws.runs.glob(f'{name}.replaced.*'))
    assert len(kept) == 1 and (kept[0]/'merged-16bit'/'model.safetensors').read_bytes() == b'w' * 100
    assert (ws.runs/name/'adapter').exists()

def test_overwrite_plain_run(ws):
    assert train(ws, 'ovp')[0] == 0
    rc, out, err = train(ws, 'ovp', '--overwrite', **{'training.max_steps': 2})
    assert rc == 0 and read_summary(ws.runs/'ovp')['steps'] == 2, err

def test_lock_held_by_live_process(ws):
    (ws.runs).mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        (ws.runs/'locked.lock').write_text(json.dumps(dict(pid=holder.pid, host=os.uname().nodename, since='now')))
        clear_error(train(ws, 'locked'), f'process {holder.pid} on {os.uname().nodename}')
    finally: holder.kill(); holder.wait()

def test_stale_lock_taken_over(ws):
    (ws.runs/'stale.lock').write_text(json.dumps(dict(pid=2**22 + 4321, host=os.uname().nodename, since='long ago')))
    rc, out, err = train(ws, 'stale')
    assert rc == 0 and not (ws.runs/'stale.lock').exists(), err

# ---------------------------------------------------------------- resume
def test_resume_without_work_starts_fresh(ws):
    rc, out, err = train(ws, 'rnw', '--resume')
    assert rc == 0 and read_summary(ws.runs/'rnw')['steps'] == 4, err

def test_resume_skips_truncated_checkpoint(ws):
    w = _interrupted(ws, 'trunc')
    opt = w/'checkpoints'/'checkpoint-4'/'optimizer.pt'; opt.write_bytes(opt.read_bytes()[:100])
    rc, out, err = train(ws, 'trunc', '--resume', **{'training.max_steps': 6})
    assert rc == 0, err
    assert read_summary(ws.runs/'trunc')['resumed_from'] == 'checkpoint-2'
    assert list((ws.runs/'trunc'/'checkpoints').glob('incomplete-4.*'))          # set aside, not deleted

@pytest.mark.parametrize('damage', ['trainer_state.json', 'adapter_model.safetensors', 'rng_state.pth', 'scheduler.pt', 'empty-adapter'])
def test_resume_skips_damaged_checkpoint(ws, damage):
    name = f"dmg{abs(hash(damage)) % 10**6}"
    w = _interrupted(ws, name); ck = w/'checkpoints'/'checkpoint-4'
    if damage == 'empty-adapter': (ck/'adapter_model.safetensors').write_bytes(b'')
    else: (ck/damage).unlink()
    rc, out, err = train(ws, name, '--resume', **{'training.max_steps': 6})
    assert rc == 0, err
    assert read_summary(ws.runs/name)['resumed_from'] == 'checkpoint-2'

def test_resume_names_skipped_checkpoint(ws):
    w = _interrupted(ws, 'why'); (w/'checkpoints'/'checkpoint-4'/'trainer_state.json').unlink()
    ck, notes = pick_checkpoint(Run(w))
    assert ck.name == 'checkpoint-2' and 'skipped `checkpoint-4` (`trainer_state.json` is missing)' in notes[0]

@pytest.mark.parametrize('key,value,words', [('training.lr', '1e-3', 'training.lr: 0.005 -> 0.001'), ('lora.r', '8', 'lora.r: 16 -> 8'),
                                              ('data.path', 'toy:reverse', 'data.path'), ('data.max_length', '32', 'data.max_length')])
def test_resume_refuses_changed_recipe(ws, key, value, words):
    name = f"chg{abs(hash(key)) % 10**6}"
    w = _interrupted(ws, name); before = snapshot(w)
    clear_error(train(ws, name, '--resume', f'--{key}', value, **{'training.max_steps': 6}), words, '--force')
    assert snapshot(w) == before

def test_resume_refuses_changed_data_file(ws, tmp_path):
    f = tmp_path/'d.jsonl'
    f.write_text(''.join(json.dumps(dict(prompt=f'q{i}', completion=f' a{i}')) + '\n' for i in range(64)))
    r = read_recipe(ini(ws, 'chgdata', **{'training.max_steps': 6}))
    from transformers import TrainerCallback
    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **k):
            if state.global_step == 5: raise RuntimeError('crash')
    with warnings.catch_warnings(), pytest.raises(RuntimeError): warnings.simplefilter('ignore'); finetune(r, data=str(f), callbacks=[Crash()])
    f.write_text(f.read_text().replace('a3', 'b3'))
    clear_error(cli('train', '--recipe', ws.dir/'chgdata.ini', '--data', f, '--resume'), 'the training data')

def test_resume_force_continues(ws):
    _interrupted(ws, 'forced')
    api_error(lambda: train_api(ws, 'forced', {'training.max_steps': 6, 'training.lr': 1e-3}, resume=True), 'force=True')
    train_api(ws, 'forced', {'training.max_steps': 6, 'training.lr': 1e-3}, resume=True, force=True)
    assert read_summary(ws.runs/'forced')['steps'] == 6

def test_resume_summary_covers_whole_run(ws):
    _interrupted(ws, 'whole')
    assert train(ws, 'whole', '--resume', **{'training.max_steps': 6})[0] == 0
    assert train(ws, 'whole-ref', **{'training.max_steps': 6})[0] == 0
    a, b = read_summary(ws.runs/'whole'), read_summary(ws.runs/'whole-ref')
    assert a['segments'] == 2 and a['tokens'] == b['tokens'] and abs(a['first_loss'] - b['first_loss']) < 1e-4
    assert abs(a['final_loss'] - b['final_loss']) < 1e-3

# ---------------------------------------------------------------- killed processes
SLOW = ("import sys, time, trl, transformers\n"
        "f = trl.SFTTrainer.training_step\n"
        "def slow(self, *a, **k): time.sleep(0.25); return f(self, *a, **k)\n"
        "trl.SFTTrainer.training_step = slow\n"
        "g = transformers.Trainer._save_rng_state\n"
        "HANG = int(sys.argv[1]); n = [0]\n"
        "def rng(self, d):\n"
        "    n[0] += 1\n"
        "    if n[0] == HANG: open(d + '/HANGING', 'w').close(); time.sleep(120)\n"
        "    return g(self, d)\n"
        "transformers.Trainer._save_rng_state = rng\n"
        "sys.argv = ['qlora-nb'] + sys.argv[2:]\n"
        "from qlora_nb.cli import main; sys.exit(main(sys.argv[1:]))\n")

def _spawn(ws, name, hang=0, steps=12):
    args = ['train', '--recipe', str(ini(ws, name, **{'training.max_steps': steps, 'training.save_steps': 3}))]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    return subprocess.Popen([sys.executable, '-c', SLOW, str(hang), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

def _wait_for(p, proc, timeout=240):
    t = time.time()
    while not p.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t < timeout, 'timed out'
        time.sleep(0.1)

def test_sigkill_during_step_then_resume(ws):
    proc = _spawn(ws, 'killstep')
    _wait_for(ws.runs/'killstep.incomplete'/'checkpoints'/'checkpoint-6'/'trainer_state.json', proc)
    time.sleep(random.Random(16).uniform(0.05, 0.6))
    proc.send_signal(signal.SIGKILL); proc.communicate()
    assert (ws.runs/'killstep.lock').exists() and not (ws.runs/'killstep').exists()   # the dead process's lock, no "finished" run
    rc, out, err = train(ws, 'killstep', '--resume', **{'training.max_steps': 12, 'training.save_steps': 3})
    assert rc == 0, err
    s = read_summary(ws.runs/'killstep')
    assert s['steps'] == 12 and s['resumed_from'] in ('checkpoint-6', 'checkpoint-9') and s['segments'] == 2

def test_sigkill_during_checkpoint_write_then_resume(ws):
    proc = _spawn(ws, 'killsave', hang=2)
    _wait_for(ws.runs/'killsave.incomplete'/'checkpoints'/'checkpoint-6'/'HANGING', proc)
    proc.send_signal(signal.SIGKILL); proc.communicate()
    ck, notes = pick_checkpoint(Run(ws.runs/'killsave.incomplete'))
    assert ck.name == 'checkpoint-3' and 'checkpoint-6' in notes[0]
    rc, out, err = train(ws, 'killsave', '--resume', **{'training.max_steps': 12, 'training.save_steps': 3})
    assert rc == 0, err
    assert read_summary(ws.runs/'killsave')['resumed_from'] == 'checkpoint-3'

def test_sigint_is_clean_and_second_run_is_locked_out(ws):
    proc = _spawn(ws, 'ctrlc', steps=40)
    _wait_for(ws.runs/'ctrlc.incomplete'/'checkpoints'/'checkpoint-3'/'trainer_state.json', proc)
    clear_error(train(ws, 'ctrlc', '--resume', **{'training.max_steps': 40, 'training.save_steps': 3}), f'process {proc.pid}')
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err and 'Resume it with: qlora-nb train' in err and '--resume' in err, err[-3000:]
    assert (ws.runs/'ctrlc.incomplete'/'checkpoints').exists() and not (ws.runs/'ctrlc.lock').exists()
    rc, out, err = train(ws, 'ctrlc', '--resume', **{'training.max_steps': 40, 'training.save_steps': 3})
    assert rc == 0 and read_summary(ws.runs/'ctrlc')['steps'] == 40, err

# ---------------------------------------------------------------- reading a run back: merge / generate
def test_merge_truncated_adapter(ws):
    d = copy_run(ws, 'trunc-adapter'); f = d/'adapter'/'adapter_model.safetensors'; f.write_bytes(f.read_bytes()[:500])
    clear_error(cli('merge', d), 'adapter_model.safetensors` is truncated')
def test_merge_corrupt_adapter_config(ws):
    d = copy_run(ws, 'bad-config'); (d/'adapter'/'adapter_config.json').write_text('{"peft_type": "LO')
    clear_error(cli('merge', d), 'adapter_config.json` is not valid JSON')
def test_merge_adapter_config_not_lora(ws):
    d = copy_run(ws, 'not-lora'); (d/'adapter'/'adapter_config.json').write_text('{"hello": 1}')
    clear_error(cli('merge', d), 'not a LoRA adapter config')
def test_merge_missing_adapter_weights(ws):
    d = copy_run(ws, 'no-weights'); (d/'adapter'/'adapter_model.safetensors').unlink()
    clear_error(cli('merge', d), 'adapter_model.safetensors` is missing')
def test_merge_missing_adapter_config(ws):
    d = copy_run(ws, 'no-config'); (d/'adapter'/'adapter_config.json').unlink()
    clear_error(cli('merge', d), 'adapter_config.json')
def test_merge_damaged_recipe(ws):
    d = copy_run(ws, 'bad-recipe'); (d/'recipe.ini').write_text('[training]\nlr = -1\n')
    clear_error(cli('merge', d), 'recipe.ini')
def test_merge_on_other_architecture(ws):
    d = copy_run(ws, 'other-arch'); (d/'recipe.ini').write_text((d/'recipe.ini').read_text().replace(str(ws.base), 'toy:mistral'))
    clear_error(cli('merge', d), 'different model', str(ws.base), 'allow_other_base')
def test_merge_on_same_shape_other_weights(ws):
    import torch
    from safetensors.torch import load_file, save_file
    other = ws.dir/'other-base'; shutil.copytree(ws.base, other)
    for f in other.glob('*.safetensors'):
        sd = load_file(f); save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in sd.items()}, f, metadata={'format': 'pt'})
    d = copy_run(ws, 'other-weights'); (d/'recipe.ini').write_text((d/'recipe.ini').read_text().replace(str(ws.base), str(other)))
    clear_error(cli('generate', d, '--prompt', 'hi'), 'different model', 'weights')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert check_base(Run(d), allow_other_base=True) is not None and any('different model' in str(x.message) for x in w)
def test_merge_into_unknown(ws): clear_error(cli('merge', ws.shared, '--into', '3bit'), '3bit')
def test_merge_existing_output(ws, tmp_path):
    (tmp_path/'out').mkdir()
    clear_error(cli('merge', ws.shared, '--out', tmp_path/'out'), 'already exists')
def test_generate_on_interrupted_run(ws):
    w = _interrupted(ws, 'gen-incomplete')
    clear_error(cli('generate', ws.runs/'gen-incomplete', '--prompt', 'hi'), 'did not finish', '--resume')
def test_generate_on_plain_directory(ws, tmp_path):
    clear_error(cli('generate', tmp_path, '--prompt', 'hi'), 'neither a run directory')
def test_shared_run_reads_back(ws):
    run = read_run(ws.shared)
    prov = run.provenance()
    assert prov['base']['path'] == str(ws.base.resolve()) and prov['base']['weights_sha'] and prov['data']['rows'][0] > 0
    assert prov['recipe']['training']['max_steps'] == 4 and len(prov['segments']) == 1
