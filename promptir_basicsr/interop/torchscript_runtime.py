"""A TorchScript ``.pt`` (what ``basicsr export --format torchscript`` writes) behind the interface of a torch network.

:class:`TorchScriptNetwork` wraps the module ``torch.jit.load`` reads, so ``basicsr restore`` runs it through the
same :class:`~promptir_basicsr.inference.Restorer` (padding, tiles, file handling) as the weights it was exported
from, as :class:`~promptir_basicsr.interop.onnx_runtime.OnnxNetwork` does for ``.onnx`` files. Loading is safe:
``torch.jit.load`` reads TorchScript code and tensors, and unpickles no Python objects (it needs no
``weights_only=False``). Only torch is needed, not the optional interop extra.
"""
import json

import torch
from torch import nn

from ..archs.arch_api import declaration
from ..errors import UserError

#: the extra file of the archive that records ``{'type': arch, ...options}`` (interop/export.py writes it)
OPTIONS_FILE = 'network_options.json'


class TorchScriptNetwork(nn.Module):
    """``path`` (a TorchScript archive) as a network: (N, C, H, W) float in, float32 out.

    Attributes: ``network_opt`` (the architecture and options recorded at export, or None for an archive
    written elsewhere), ``size_multiple`` (the recorded architecture's, so the Restorer pads and tiles as it does
    for that network; 1 when unknown), ``dtype`` (float32, or float16 for ``--fp16`` exports).
    """

    def __init__(self, path):
        super().__init__()
        extra = {OPTIONS_FILE: ''}
        try:
            self.module = torch.jit.load(path, map_location='cpu', _extra_files=extra)
        except RuntimeError as err:
            raise UserError(f'cannot load this TorchScript archive: {str(err).strip().splitlines()[0]}') from None
        recorded = extra[OPTIONS_FILE]
        self.network_opt = json.loads(recorded) if recorded else None
        self.size_multiple = declaration(self.network_opt['type'], 'size_multiple') if self.network_opt else 1
        floating = [p.dtype for p in self.module.parameters() if p.is_floating_point()]
        self.dtype = floating[0] if floating else torch.float32

    def forward(self, x):
        return self.module(x.to(self.dtype)).float()
