"""promptir-basicsr: PromptIR, its successors AdaIR, MoCE-IR and BioIR, and its baselines as a BasicSR 1.4.2 plugin."""
from setuptools import find_packages, setup

setup(
    name='promptir-basicsr',
    version='0.1.0',
    description='All-in-one image restoration (PromptIR, AdaIR, MoCE-IR, BioIR, Restormer, AirNet) as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.11',  # the pinned numpy, scipy, scikit-image, matplotlib and onnxruntime need it
    packages=find_packages(include=['promptir_basicsr', 'promptir_basicsr.*']),
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr==1.4.2',
        'einops',
        'numpy',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'scikit-image>=0.19',
        'scipy',
        'matplotlib',  # training curves and prompt heatmaps (promptir_basicsr/visual/)
        'tensorboard',  # basicsr's tb_logger (the demos turn it on) and reading it in `basicsr plot`
        'safetensors',  # `basicsr restore --weights *.safetensors`
    ],
    extras_require={
        'test': ['pytest', 'import-linter>=2.17', 'pytest-xdist>=3.8'],  # tests/test_layers.py runs lint-imports
        # spandrel support, `basicsr export`, `basicsr restore --weights model.onnx` (promptir_basicsr/interop/)
        'interop': ['spandrel>=0.4.2', 'spandrel-extra-arches>=0.2.0', 'onnx>=1.16', 'onnxruntime>=1.17', 'onnxscript',
                    'safetensors>=0.4'],
        'web': ['gradio>=6.31.0,<7'],  # `basicsr serve` (promptir_basicsr/serving/)
        'mutation': ['mutmut==3.8.1'],  # scripts/mutation_test.py
    },
    entry_points={'console_scripts': ['basicsr=promptir_basicsr.cli:main']},
)
