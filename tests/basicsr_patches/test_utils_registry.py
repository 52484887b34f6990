"""basicsr_patches/behaviour/utils_registry.py: our modules are imported on the first registry lookup, every kind of
lookup, once."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize('lookup', ['"AirNet" in ARCH_REGISTRY', 'ARCH_REGISTRY.get("AirNet").__name__',
                                    '"AirNet" in dict(iter(ARCH_REGISTRY))', '"AirNet" in list(ARCH_REGISTRY.keys())'])
def test_each_kind_of_lookup_registers_our_modules(lookup):
    code = ('import sys, promptir_basicsr\n'
            'from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY\n'
            'before = "promptir_basicsr.archs.airnet_arch" in sys.modules\n'
            f'found = {lookup}\n'
            'print(before, found, "AllInOneDataset" in DATASET_REGISTRY)')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['False', 'AirNet' if 'get(' in lookup else 'True', 'True']


def test_registering_modules_are_found_by_file_name():
    from promptir_basicsr.basicsr_patches.behaviour import utils_registry
    utils_registry.import_registering_modules()
    assert {'promptir_basicsr.archs.promptir_arch', 'promptir_basicsr.data.all_in_one_dataset',
            'promptir_basicsr.data.degradations.noise', 'promptir_basicsr.models.airnet_model',
            'promptir_basicsr.losses.contrastive_loss', 'promptir_basicsr.metrics.protocol_metric'} <= set(sys.modules)
