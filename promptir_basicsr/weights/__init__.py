"""Weights files, in one place: reading any supported format safely, the network's tensors inside it, official
layouts converted, the network rebuilt from a file alone.

- :mod:`.files`: ``load_checkpoint`` (``weights_only=True``, every ``torch.load`` of the project),
  ``read_weights`` (``.pth``/``.ckpt``/``.safetensors``), the safetensors metadata that records the network.
- :mod:`.state_dict`: the weights inside a checkpoint of any layout (Lightning, basicsr, plain), compared with and
  fitted to a network (``convert_state_dict``).
- :mod:`.network`: ``load_network`` (file -> built, strictly loaded network), ``describe_network``.
- :mod:`.convert`: ``convert_checkpoint``, the work of ``basicsr convert``.

What is specific to an architecture (how to read its options from its keys, how its official layout differs) is
declared on the architecture's class and found through basicsr's registry (``archs/arch_api.py``). The errors
are :class:`~promptir_basicsr.errors.CheckpointError` (a user-fixable problem) and its ``CheckpointNotFoundError``.
"""
