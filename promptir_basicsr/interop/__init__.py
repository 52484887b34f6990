"""Our weights outside this toolbox: spandrel (chaiNNer, ComfyUI), ONNX, TorchScript and safetensors.

- :mod:`.spandrel`: spandrel architecture support for PromptIR and AirNet (``install()`` adds it to
  spandrel's main registry, as ``spandrel_extra_arches.install()`` does; Restormer is already in the
  extra arches).
- :mod:`.export`: writers from a built network to ``.onnx`` (verified with onnxruntime), ``.pt``
  (TorchScript, verified) and ``.safetensors`` (the architecture and its options in the metadata).
- :mod:`.onnx_runtime`: :class:`~.onnx_runtime.OnnxNetwork`, an exported ``.onnx`` file run by
  onnxruntime behind the interface of a torch network, so ``basicsr restore`` tiles and writes files
  exactly as it does for PyTorch weights.

Everything here needs the optional ``interop`` extra; :func:`require` turns its absence into one line
that names the pip command.
"""
import importlib

from ..errors import UserError

#: The install command of the README (pinned versions); named by every "extra missing" error.
INTEROP_INSTALL = 'pip install --no-build-isolation -r requirements-interop.txt -e ".[interop]"'


class MissingExtraError(UserError, ImportError):
    """A package of the optional ``interop`` extra is not installed.

    A :class:`UserError` (the ``basicsr`` command prints it in one line and exits with status 2) and an
    ``ImportError`` (what library code expects from a failed import).
    """


def require(module_name, purpose):
    """Import ``module_name`` or raise :class:`MissingExtraError` saying that ``purpose`` needs the extra."""
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        package = module_name.split('.')[0]
        raise MissingExtraError(f'{purpose} needs the optional "interop" extra ({package} is not installed): '
                                f'run {INTEROP_INSTALL} in the promptir-basicsr folder') from err
