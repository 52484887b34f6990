"""``basicsr table``: the results tables of several test runs merged into one."""
import json

from cli_helpers import run_cli

from promptir_basicsr.utils import results_table as rt


def test_table_merges_two_runs(tmp_path):
    """Guards the command's wiring (arguments, -o) and the merged numbers: the averages are
    recomputed per row and the shared degraded-input row appears once."""
    metrics = ['psnr', 'ssim']
    inputs = rt.make_row(rt.INPUT_ROW, {'Rain': {'psnr': 20.0, 'ssim': 0.6}, 'Haze': {'psnr': 13.0, 'ssim': 0.7}},
                         metrics, reference=True)
    rt.write_table(rt.make_table([rt.make_row('PromptIR', {'Rain': {'psnr': 30.0, 'ssim': 0.9},
                                                           'Haze': {'psnr': 25.0, 'ssim': 0.8}}, metrics), inputs],
                                 metrics), tmp_path / 'results' / 'a')
    rt.write_table(rt.make_table([rt.make_row('AirNet', {'Rain': {'psnr': 28.0, 'ssim': 0.85},
                                                         'Haze': {'psnr': 21.0, 'ssim': 0.75}}, metrics), inputs],
                                 metrics), tmp_path / 'results' / 'b')
    proc = run_cli(['table', 'results/a', 'results/b/results_table.json', '-o', 'merged'], tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '| Method | Rain | Haze | Average |' in proc.stdout
    assert '| PromptIR | 30.00/0.9000 | 25.00/0.8000 | 27.50/0.8500 |' in proc.stdout
    assert '| AirNet | 28.00/0.8500 | 21.00/0.7500 | 24.50/0.8000 |' in proc.stdout
    merged = json.loads((tmp_path / 'merged' / rt.JSON_NAME).read_text())
    assert [r['model'] for r in merged['rows']] == ['PromptIR', rt.INPUT_ROW, 'AirNet']
    assert (tmp_path / 'merged' / rt.MD_NAME).read_text().strip() in proc.stdout



def test_results_table_names_a_missing_folder_in_one_line(tmp_path, capsys):
    """Guards the one-line error (exit status 2, no traceback) of `basicsr table`."""
    from promptir_basicsr import cli
    assert cli.main(['table', str(tmp_path / 'none')]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f'basicsr table: error: no {rt.JSON_NAME} at {tmp_path / "none"}: give a results folder written by '
        f'`basicsr test` (results/<name>) or its {rt.JSON_NAME}']
