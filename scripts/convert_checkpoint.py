"""Convert an official PromptIR / AirNet / Restormer checkpoint to basicsr's {'params': ...} .pth.

Same options as ``basicsr convert`` (one parser serves both):

    python scripts/convert_checkpoint.py --arch PromptIR model.ckpt experiments/pretrained/promptir.pth
    python scripts/convert_checkpoint.py --arch AirNet All.pth airnet.pth --arch-opt queue_size=2560
"""
import sys

from promptir_basicsr.utils.checkpoints import convert_main

if __name__ == '__main__':
    sys.exit(convert_main(sys.argv[1:], prog='convert_checkpoint.py'))
