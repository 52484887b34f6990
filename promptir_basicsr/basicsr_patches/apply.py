"""Applying every patch of :mod:`promptir_basicsr.basicsr_patches` (the list and its order)."""
from .behaviour import data_data_sampler, utils_logger, utils_registry
from .behaviour import models_base_model as base_model_behaviour
from .behaviour import utils_options as options_echo
from .repairs import data_degradations, models_base_model, train, utils_dist_util, utils_file_client, utils_options

REPAIRS = (data_degradations, train, utils_options, utils_dist_util, models_base_model, utils_file_client)
BEHAVIOUR = (base_model_behaviour, options_echo, utils_logger, data_data_sampler, utils_registry)


def apply_all():
    """Apply every patch (each only once, however often this runs). basicsr must be imported already, with
    :func:`~.repairs.data_degradations.alias_functional_tensor` applied before it was."""
    for module in REPAIRS + BEHAVIOUR:
        module.apply()
