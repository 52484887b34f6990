"""basicsr_patches/behaviour/utils_logger.py: the log says CPU or CUDA. Each test fails without its patch."""
import torch


def test_env_info_says_cpu():
    import basicsr.train
    info = basicsr.train.get_env_info()
    expected = 'CUDA' if torch.cuda.is_available() else 'CPU'
    assert f'Running on: {expected}' in info
