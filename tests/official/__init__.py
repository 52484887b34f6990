"""Independent re-statements of the official networks (AdaIR, MoCE-IR, BioIR; PromptIR, Restormer and AirNet
are in ``tests/official_formulation.py``): written for this project from the official code's facts, sharing
no line with ``promptir_basicsr.archs``, so a bug there cannot hide here. The golden fixtures are made from
them, the equality tests and ``scripts/benchmark.py`` compare our networks to them."""
