"""`demo_data: true`: several ranks starting at once all get complete demo data."""
import json
import multiprocessing as mp

from promptir_basicsr.data.demo import prepare_demo_data


def _prepare(root, queue):
    queue.put(prepare_demo_data({'demo_data': root}))


def test_concurrent_ranks_get_one_complete_copy(tmp_path):
    root = str(tmp_path / 'demo')
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_prepare, args=(root, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert sorted(queue.get() for _ in procs) == [root, root]
    meta = json.loads((tmp_path / 'demo' / 'demo_meta.json').read_text())
    written = sum(1 for p in (tmp_path / 'demo').rglob('*.png'))
    assert written == sum(meta['files'].values())


def test_no_demo_data_key_does_nothing(tmp_path):
    assert prepare_demo_data({}) is None
