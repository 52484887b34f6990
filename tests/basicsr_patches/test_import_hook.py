"""basicsr_patches/import_hook.py: ``import promptir_basicsr`` loads neither torch nor basicsr, and basicsr is
patched whenever it is imported afterwards, by whatever imports it."""
import subprocess
import sys


def _python(code):
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_importing_the_package_loads_neither_torch_nor_basicsr():
    assert _python('import sys, promptir_basicsr; print("torch" in sys.modules, "basicsr" in sys.modules)') == \
        ['False', 'False']


def test_basicsr_imported_after_the_package_is_patched_and_finds_our_registrations():
    """A user's script: import the plugin, then basicsr's registry and builder, nothing else of ours."""
    out = _python('import promptir_basicsr\n'
                  'from basicsr.archs import build_network\n'
                  'from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY\n'
                  'import basicsr.train\n'
                  'from promptir_basicsr.basicsr_patches.marks import is_ours\n'
                  'net = build_network({"type": "PromptIR", "dim": 8, "num_blocks": [1, 1, 1, 1], '
                  '"num_refinement_blocks": 1, "heads": [1, 1, 1, 1], "prompt_dims": [4, 8, 8], "prompt_sizes": [4, 4, 4]})\n'
                  'print(type(net).__name__, "AllInOneModel" in MODEL_REGISTRY, is_ours(basicsr.train.load_resume_state))')
    assert out == ['PromptIR', 'True', 'True']


def test_a_module_of_ours_imported_first_patches_basicsr_too():
    """Importing one of our modules first (it imports basicsr halfway through its own import) must neither fail on
    a half-imported module of ours nor leave basicsr unpatched."""
    out = _python('from promptir_basicsr.archs.promptir_arch import PromptIR\n'
                  'from basicsr.utils.registry import ARCH_REGISTRY\n'
                  'import basicsr.models.base_model as bm\n'
                  'from promptir_basicsr.basicsr_patches.marks import is_ours\n'
                  'print(ARCH_REGISTRY.get("PromptIR") is PromptIR, is_ours(bm.torch), "AirNet" in ARCH_REGISTRY)')
    assert out == ['True', 'True', 'True']
