"""basicsr_patches/apply.py: every patch applied once, however often apply_all runs. Each test fails without its patch."""
import basicsr  # noqa: F401 (first, as in a run: importing apply before basicsr is a circular import)

from promptir_basicsr.basicsr_patches import apply, marks


def _patched_attributes():
    """(owner, attribute) of every basicsr function or module that the patches replace."""
    import basicsr.test
    import basicsr.train
    from basicsr.data import degradations
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.models import base_model
    from basicsr.utils import dist_util, file_client
    from basicsr.utils.logger import MessageLogger
    from basicsr.utils.registry import Registry
    return [(basicsr.train, 'load_resume_state'), (dist_util, '_init_dist_pytorch'), (dist_util, '_init_dist_slurm'),
            (base_model.BaseModel, 'model_to_device'), (degradations, 'add_jpg_compression'),
            (file_client.LmdbBackend, '__init__'), (base_model, 'torch'), (base_model.BaseModel, 'load_network'),
            (basicsr.train, 'get_env_info'), (basicsr.test, 'get_env_info'), (basicsr.train, 'parse_options'),
            (basicsr.test, 'parse_options'), (basicsr.train, 'create_train_val_dataloader'),
            (basicsr.train, 'dict2str'), (basicsr.test, 'dict2str'), (base_model.BaseModel, 'validation'),
            (EnlargedSampler, 'set_epoch'), (Registry, 'get'), (Registry, '__contains__'), (Registry, '__iter__'),
            (Registry, 'keys'), (MessageLogger, '__call__')]


def test_apply_all_twice_wraps_nothing_twice():
    """Guards against a repair that wraps basicsr's function again on a second apply_all() (model_to_device
    did): every patched attribute must stay the very object the first application installed."""
    before = [getattr(owner, name) for owner, name in _patched_attributes()]
    assert all(marks.is_ours(obj) for obj in before)  # the list above names only our replacements
    apply.apply_all()
    apply.apply_all()
    after = [getattr(owner, name) for owner, name in _patched_attributes()]
    for (owner, name), first, now in zip(_patched_attributes(), before, after):
        assert now is first, f'{getattr(owner, "__name__", owner)}.{name} was replaced again'
