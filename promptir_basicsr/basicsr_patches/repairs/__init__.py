"""Repairs: basicsr 1.4.2 on today's stack (torch 2.14, torchvision 0.29, numpy 2, OpenCV 5, py-lmdb 3) and on
machines without CUDA. Each makes basicsr do what it was written to do; none changes what a working basicsr
did. One module per patched basicsr module, each with its test in ``tests/basicsr_patches/``."""
