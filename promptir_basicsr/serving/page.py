"""The Gradio page of ``basicsr serve`` (the optional ``web`` extra): upload, pick networks, compare, download.

Everything the page computes comes from :mod:`.service`; this module only lays it out and keeps the server
local: analytics and Gradio's version check off (``GRADIO_ANALYTICS_ENABLED=False`` before Gradio is imported,
``analytics_enabled=False``), no share link, no server-side rendering (no Node process), system fonts only (no
font download), and every script and style from Gradio's own package, served by this server.
"""
import os
import sys
import tempfile
import time
import traceback

# Before Gradio is imported (it reads them at import): no analytics, no Hugging Face Hub calls.
NO_NETWORK_ENVIRONMENT = {'GRADIO_ANALYTICS_ENABLED': 'False', 'HF_HUB_OFFLINE': '1', 'HF_HUB_DISABLE_TELEMETRY': '1',
                          'DO_NOT_TRACK': '1'}
os.environ.update(NO_NETWORK_ENVIRONMENT)

import gradio as gr  # noqa: E402  (after the environment above)

from ..errors import UserError  # noqa: E402
from .service import UploadError, check_upload, preview, restore_upload, scores  # noqa: E402

SYSTEM_FONTS = ['ui-sans-serif', 'system-ui', 'Segoe UI', 'Roboto', 'Helvetica', 'Arial', 'sans-serif']
MONO_FONTS = ['ui-monospace', 'SFMono-Regular', 'Menlo', 'Consolas', 'monospace']
ABOUT = '''# Restore a photo with your networks
Drop a photo (PNG, JPEG, BMP, TIFF or WebP; 8 or 16 bits, gray, RGB or with alpha), or pick a demo image below,
choose one or several networks and press **Restore**. One network: a before/after slider. Several: a grid.
Give a reference (the clean image) for PSNR and SSIM. The results to download are the files `basicsr restore`
writes for the same weights and image (same size, mode and bit depth). Large photos are restored in tiles
(progress below); networks run one request at a time, so other visitors wait in the queue.'''


def _score_table(results, with_scores):
    head = '| network | s | tile overhead |' + (' PSNR (dB) | SSIM |' if with_scores else '')
    rule = '|---|---:|---:|' + ('---:|---:|' if with_scores else '')
    rows = []
    for network, _, seconds, overhead, metrics, _ in results:
        row = f'| {network.label} | {seconds:.2f} | {overhead:.2f} |'
        if with_scores:
            row += f' {metrics[0]:.2f} | {metrics[1]:.4f} |'
        rows.append(row)
    return '\n'.join([head, rule, *rows])


def restore_request(networks, work_folder, max_megapixels, photo, reference, chosen, progress):
    """What the Restore button does: ``(status line, slider value or None, grid or None, score table, files)``.
    Any problem is one line in the status, never a traceback (unexpected ones are logged on the server)."""
    by_label = {network.label: network for network in networks}
    try:
        if not photo:
            raise UploadError('drop a photo first (or pick one of the demo images below the button)')
        chosen = [label for label in (chosen or []) if label in by_label]
        if not chosen:
            raise UploadError('pick at least one network')
        width, height = check_upload(photo, 'the photo', max_megapixels)
        if reference:
            check_upload(reference, 'the reference', max_megapixels)
        before = preview(photo, 'the photo')
        folder = tempfile.mkdtemp(prefix='request-', dir=work_folder)
        results = []
        for index, label in enumerate(chosen):
            network = by_label[label]
            progress(index / len(chosen), desc=f'{network.label}: queued')

            def on_tile(done, total, name=network.label):
                progress((done, total), desc=f'{name}: tiles', unit='tiles')

            out_path, seconds, overhead = restore_upload(network, photo, folder, on_tile)
            metrics = scores(out_path, reference) if reference else None
            results.append((network, out_path, seconds, overhead, metrics, preview(out_path, 'the result')))
    except UserError as err:
        return f'**Error:** {err}', None, None, '', None
    except Exception as err:  # noqa: BLE001 (the page gets one line; the server's log gets the traceback)
        traceback.print_exc(file=sys.stderr)
        first = (str(err).strip().splitlines() or [''])[0][:200]
        return f'**Error:** the restoration failed ({type(err).__name__}: {first})', None, None, '', None
    status = (f'Restored {os.path.basename(photo)} ({width} x {height}) with {len(results)} network(s)'
              + (', scored against the reference.' if reference else '.'))
    slider = (before, results[0][-1]) if len(results) == 1 else None
    grid = [(before, 'input')] + [(r[-1], r[0].label) for r in results] if len(results) > 1 else None
    return status, slider, grid, _score_table(results, bool(reference)), [r[1] for r in results]


def build_page(networks, examples, work_folder, max_megapixels):
    """The ``gr.Blocks`` page for ``networks`` (:class:`~.service.LoadedNetwork`), with ``examples`` ([photo,
    reference] pairs) offered when no photo is given."""
    labels = [network.label for network in networks]
    with gr.Blocks(title='basicsr serve', analytics_enabled=False) as page:
        gr.Markdown(ABOUT)
        with gr.Row():
            with gr.Column(scale=2):
                photo = gr.File(label='Photo', file_types=['image'], type='filepath', elem_id='photo')
                reference = gr.File(label='Reference (optional): PSNR / SSIM', file_types=['image'], type='filepath',
                                    elem_id='reference')
                chosen = gr.CheckboxGroup(labels, value=labels[:1], label='Networks', elem_id='networks')
                button = gr.Button('Restore', variant='primary', elem_id='restore')
                if examples:
                    gr.Examples(examples, [photo, reference], label='Demo validation images (degraded, reference)',
                                examples_per_page=8)
            with gr.Column(scale=3):
                status = gr.Markdown('Drop a photo, pick networks, press Restore.', elem_id='status')
                slider = gr.ImageSlider(label='before / after', type='numpy', format='png', elem_id='slider')
                grid = gr.Gallery(label='input and each network', format='png', columns=3, height=340,
                                  elem_id='grid', visible=False)
                table = gr.Markdown(elem_id='scores')
                files = gr.File(label='Results (the files basicsr restore writes)', file_count='multiple',
                                elem_id='downloads', interactive=False)

        def on_restore(photo_path, reference_path, chosen_labels, progress=gr.Progress()):
            text, before_after, pictures, scores_md, paths = restore_request(
                networks, work_folder, max_megapixels, photo_path, reference_path, chosen_labels, progress)
            return (text, gr.ImageSlider(value=before_after, visible=before_after is not None),
                    gr.Gallery(value=pictures, visible=pictures is not None), scores_md, paths)

        # One restoration at a time for the whole page (concurrency_limit=1): networks never run side by side
        # on a small machine; other requests wait in Gradio's queue.
        # The status says at once that this request started (then the progress and the result replace it), so a
        # visitor never reads the previous request's line as this one's.
        button.click(lambda: 'Restoring ...', None, status, queue=False).then(
            on_restore, [photo, reference, chosen], [status, slider, grid, table, files], concurrency_limit=1,
            concurrency_id='networks')
    return page


def serve(networks, examples, host='127.0.0.1', port=7860, max_megapixels=100, exit_after=None, log=print):
    """Start the page and block until Ctrl-C (or ``exit_after`` seconds); returns 0."""
    with tempfile.TemporaryDirectory(prefix='basicsr-serve-') as work_folder:
        page = build_page(networks, examples, work_folder, max_megapixels)
        page.queue(max_size=32)
        theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)
        try:
            page.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
                        ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, quiet=True,
                        max_file_size='1gb', allowed_paths=[work_folder], footer_links=[], theme=theme,
                        show_error=False)
        except OSError as err:
            raise UserError(f'--host {host} --port {port}: cannot listen there ({str(err).splitlines()[0]}); '
                            'choose another --port') from None
        log(f'serving {len(networks)} network(s) on http://{host}:{port} (Ctrl-C stops)')
        deadline = time.monotonic() + exit_after if exit_after else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            page.close()
    return 0
