"""Pictures of what the models do: comparison grids, training curves, prompt heatmaps.

- :mod:`.grids`: labelled side-by-side images (validation grids, ``restore --compare``), drawn with
  OpenCV at the images' own pixels.
- :mod:`.curves`: loss, learning rate and per-set metrics of training runs (``basicsr plot``).
- :mod:`.prompt_maps`: what PromptIR's prompt blocks choose per degradation (``basicsr prompts``).
- :mod:`.ablation_chart`: bars of an ablation's metrics per test set and variant (``basicsr ablate``).

matplotlib is imported only in this package, and only by the modules that plot.
"""
