"""Convert an official PromptIR / AirNet / Restormer checkpoint to basicsr's {'params': ...} .pth.

Same options as ``basicsr convert`` (one parser serves both):

    python scripts/convert_checkpoint.py --arch PromptIR model.ckpt experiments/pretrained/promptir.pth
    python scripts/convert_checkpoint.py --arch AirNet All.pth airnet.pth --arch-opt queue_size=2560
"""
import functools
import sys

from promptir_basicsr.errors import run_command
from promptir_basicsr.utils.checkpoints import convert_main

if __name__ == '__main__':
    prog = 'convert_checkpoint.py'
    sys.exit(run_command(prog, functools.partial(convert_main, prog=prog), sys.argv[1:]))
