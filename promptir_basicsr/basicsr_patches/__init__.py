"""Every change this project makes to basicsr 1.4.2, in one place: nothing elsewhere patches basicsr.

basicsr's own code is never copied or forked; a patch replaces an attribute where basicsr's code looks it up
(a module global, a class method), and where a replacement re-states a basicsr function its docstring says
what differs. Patches are marked (:mod:`.marks`), so applying them twice changes nothing. :func:`.apply.apply_all`
applies them all; ``promptir_basicsr/__init__.py`` calls it as soon as basicsr is imported (and the torchvision
alias just before).

:mod:`.repairs` make basicsr work on today's stack and without CUDA; :mod:`.behaviour` are the deliberate
differences. One module per patched basicsr module (named after it: ``utils_dist_util`` patches
``basicsr.utils.dist_util``); each patch has its test in ``tests/basicsr_patches/test_<module>.py``.

=====================================  ==========================================================================
module                                 what
=====================================  ==========================================================================
repairs.data_degradations              the renamed torchvision module basicsr imports (before basicsr loads); an
                                       int JPEG quality for OpenCV 5
repairs.train                          resume without CUDA and from ``opt['path']['training_states']``; epochs
                                       counted from the loader's real length (the full ``total_iter`` runs)
repairs.utils_options                  ``parse_options``: CPU fallbacks, defaults for keys basicsr indexes
                                       unchecked, seeding after ``--force_yml``
repairs.utils_dist_util                gloo without CUDA, the rank's GPU with it
repairs.models_base_model              DDP around a CPU module (``device_ids=None``)
repairs.utils_file_client              py-lmdb 3: one environment per (process, database)
behaviour.models_base_model            atomic checkpoint writes, ``weights_only`` reads, a clear error for weights
                                       that do not fit, the final validation reported at ``total_iter``
behaviour.utils_options                the options echoed as YAML, after the notes of the option check
behaviour.utils_logger                 "Running on: CPU/CUDA" in the log; a false warning dropped; an eta that
                                       counts the iterations left (never negative at the last one)
behaviour.data_data_sampler            the current epoch recorded (saves on pre-emption name it)
behaviour.utils_registry               our modules registered on the first registry lookup
behaviour.pipelines                    train/test pipelines run with an argument list; ranks leave together
=====================================  ==========================================================================
"""
