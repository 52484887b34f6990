"""Helpers of the arch tests: the official key lists and tiny configurations.

The official key lists (key TAB shape) live in ``tests/official_keys/``.
"""
from official_keys import official_key_shapes

# Tiny configurations: whole forward/backward passes in milliseconds on a CPU.
TINY_RESTORMER = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])
TINY_PROMPTIR = dict(TINY_RESTORMER, prompt_len=3, prompt_dims=[8, 8, 8], prompt_sizes=[8, 4, 4])
TINY_AIRNET = dict(n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 16], moco_dim=8, queue_size=12)


def official_keys(name):
    """{key: shape} of the official ``name`` network (promptir, restormer, airnet)."""
    return official_key_shapes(name)


def assert_matches_official(net, name):
    expected = official_keys(name)
    ours = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], 'keys missing from our network'
    assert sorted(set(ours) - set(expected)) == [], 'keys our network has but the official one does not'
    assert {k: ours[k] for k in expected if ours[k] != expected[k]} == {}, 'shape mismatches'
