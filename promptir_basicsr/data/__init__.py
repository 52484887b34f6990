"""Data: the all-in-one training mix, validation/test sets, and the degradation library.

- ``all_in_one_dataset.py``: ``AllInOneDataset`` (training; sources of paired or clean+degraded images)
- ``degraded_dataset.py``: ``DegradedImageDataset`` (val/test; paired, or clean + per-image seeded degradation)
- ``degradations/``: ``DEGRADATION_REGISTRY`` and the ops (noise, blur, jpeg, weather, light)
- ``pairing.py``: lq -> gt name rules and LMDB keys; ``sources.py``: listing, list files, reading, errors
- ``transforms.py``: crops, flips, random generators; ``lmdb_tools.py``: folder -> LMDB
- ``demo.py``: the demo data set made from scikit-image's photos

``promptir_basicsr`` imports every ``*_dataset.py`` here and every module of ``degradations/``.
"""
