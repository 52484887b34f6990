from promptir_basicsr.commands.table import main as table_main
from promptir_basicsr.utils import results_table as rt


def test_merge_and_markdown(tmp_path):
    metrics = ['psnr', 'ssim']
    inp = rt.make_row(rt.INPUT_ROW, {'A': {'psnr': 20.0, 'ssim': 0.5}, 'B': {'psnr': 22.0, 'ssim': 0.7}}, metrics, True)
    one = rt.make_table([rt.make_row('m1', {'A': {'psnr': 30.0, 'ssim': 0.9}, 'B': {'psnr': 32.0, 'ssim': 0.95}},
                                     metrics), inp], metrics)
    two = rt.make_table([rt.make_row('m2', {'A': {'psnr': 31.0, 'ssim': 0.91}}, metrics), inp], metrics)
    rt.write_table(one, tmp_path / 'a')
    rt.write_table(two, tmp_path / 'b')
    assert table_main([str(tmp_path / 'a'), str(tmp_path / 'b'), '-o', str(tmp_path / 'm')]) == 0
    merged = rt.read_table(tmp_path / 'm')
    assert [r['model'] for r in merged['rows']] == ['m1', rt.INPUT_ROW, 'm2']
    assert merged['rows'][0]['average'] == {'psnr': 31.0, 'ssim': 0.925}
    md = (tmp_path / 'm' / rt.MD_NAME).read_text()
    lines = md.splitlines()
    assert lines[2] == '| Method | A | B | Average |'
    assert lines[4].startswith('| Input (degraded) | 20.00/0.5000 |')
    assert '| m2 | 31.00/0.9100 | - | 31.00/0.9100 |' in md
