"""``basicsr serve``: a local page that restores a photo with one or several networks and compares them.

- :mod:`.service`: what the page does, without the page: the networks loaded from weights files (labelled with
  architecture, parameters and file), uploads checked from their header before decoding, restorations written
  by :mod:`promptir_basicsr.image_restoration` (the bytes ``basicsr restore`` writes), previews, PSNR/SSIM.
- :mod:`.page`: the Gradio page on top of it (needs the optional ``web`` extra; imported by ``serve``'s ``run``).
"""
