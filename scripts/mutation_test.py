#!/usr/bin/env python
"""Mutation testing of the core modules with mutmut: do the tests fail when the code is changed?

    python scripts/mutation_test.py metrics              # one area (see AREAS below)
    python scripts/mutation_test.py all                  # every area, one after the other
    python scripts/mutation_test.py archs --max-children 1

Not part of CI (an area takes minutes to an hour on 2 CPU cores). Needs mutmut (``pip install
--no-build-isolation -r requirements-mutation.txt -e ".[mutation]"``); docs/testing.md explains the run and
holds the last rates. Each area runs in its own copy of the repository's files under
``build/mutation/<area>/`` (git-ignored), whose ``setup.cfg`` asks mutmut to mutate only that area and to
select tests only among those that cover it. mutmut maps each test to the functions it calls in its own
process, so tests that run the command line in subprocesses kill nothing (the subprocesses import the area's
unmutated copy); the slow end-to-end tests are left out. The script prints, per area, the mutants killed and
survived and the kill rate, twice: over all mutants, and over the behaviour mutants, leaving out those that
only change the wording of a message, note, log line or --help text (their strings, or a message replaced by
None). It lists the text survivors by name and the behaviour survivors with their diffs (``cd
build/mutation/<area> && mutmut show <name>`` shows one again). A behaviour survivor is either an
equivalent mutant (the change cannot alter behaviour, listed in EQUIVALENT) or a missing test.
"""
import argparse
import collections
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tests that export full-size networks (tens of seconds each); areas whose tiny-network tests cover the same code
# leave them out, so a surviving mutant costs seconds, not minutes.
FULL_NETWORK_EXPORTS = ['-k', 'not (onnx_float16 or onnx_export_has_dynamic_sizes or loads_the_official_release or '
                        'torchscript_export_restores or onnx_export_and_restore)']

# area -> (files to mutate, as mutmut's only_mutate globs; files left alone, do_not_mutate globs; the tests that
# may cover them[; more pytest arguments]). mutmut runs, for each mutant, only the tests that called the mutated
# function.
AREAS = {
    'archs': (['promptir_basicsr/archs/*'],
              ['promptir_basicsr/archs/adair_arch.py', 'promptir_basicsr/archs/moce_ir_arch.py',
               'promptir_basicsr/archs/bioir_arch.py'],
              ['tests/archs/test_airnet_arch.py', 'tests/archs/test_fast_paths.py',
               'tests/archs/test_golden_outputs.py', 'tests/archs/test_promptir_ablation_options.py',
               'tests/archs/test_promptir_arch.py',
               'tests/archs/test_restormer_arch.py', 'tests/archs/test_restormer_blocks.py']),
    # The all-in-one line (AdaIR, MoCE-IR, BioIR): their golden outputs and arch tests.
    'new_archs': (['promptir_basicsr/archs/adair_arch.py', 'promptir_basicsr/archs/moce_ir_arch.py',
                   'promptir_basicsr/archs/bioir_arch.py'], [],
                  ['tests/archs/test_golden_outputs.py', 'tests/archs/test_adair_arch.py',
                   'tests/archs/test_moce_ir_arch.py', 'tests/archs/test_bioir_arch.py']),
    'degradations': (['promptir_basicsr/data/degradations/*'], [],
                     ['tests/data/test_degradations.py', 'tests/data/test_all_in_one_dataset.py']),
    'dataset': (['promptir_basicsr/data/all_in_one_dataset.py'], [],
                ['tests/data/test_all_in_one_dataset.py', 'tests/data/test_errors.py']),
    'weights': (['promptir_basicsr/weights/*'], [],
                ['tests/weights/test_conversion.py', 'tests/weights/test_safe_loading.py', 'tests/test_inference.py',
                 'tests/commands/test_restore.py']),
    'metrics': (['promptir_basicsr/metrics/*'], [], ['tests/metrics']),
    # basicsr restore: the Restorer, image files, restoring a file, the command's planning.
    'inference': (['promptir_basicsr/inference.py', 'promptir_basicsr/image_restoration.py',
                   'promptir_basicsr/utils/images.py', 'promptir_basicsr/commands/restore.py'], [],
                  ['tests/test_inference.py', 'tests/commands/test_restore.py', 'tests/utils/test_images.py',
                   'tests/interop/test_export_command.py', 'tests/commands/test_restore_at_scale.py'],
                  FULL_NETWORK_EXPORTS),
    'tiling': (['promptir_basicsr/utils/tiling.py'], [], ['tests/utils/test_tiling.py', 'tests/test_inference.py']),
    # the slowest tests export full networks (a minute a mutant): their tiny-network counterparts
    # (tests/interop/test_export_internals.py) check the same code
    'interop': (['promptir_basicsr/interop/*'], [], ['tests/interop'], FULL_NETWORK_EXPORTS),
    # the models and the losses only they use (the contrastive and frequency losses)
    'models': (['promptir_basicsr/models/*', 'promptir_basicsr/losses/*'], ['promptir_basicsr/models/schedulers.py'],
               ['tests/models']),
    'schedulers': (['promptir_basicsr/models/schedulers.py'], [], ['tests/models/test_schedulers.py']),
    # the checks of an option file: the quick one (checker.py), the full one (schema.py), preparing a run
    'options': (['promptir_basicsr/options/*'], [],
                ['tests/options', 'tests/option_files/test_shipped_files.py',
                 'tests/basicsr_patches/test_utils_options.py']),
    # every subcommand but restore (in the inference area)
    'commands': (['promptir_basicsr/commands/*'], ['promptir_basicsr/commands/restore.py'],
                 ['tests/commands', 'tests/test_cli.py', 'tests/interop/test_export_command.py',
                  'tests/weights/test_conversion.py', 'tests/utils/test_results_table.py',
                  'tests/visual/test_pictures.py', 'tests/options/test_schema.py',
                  'tests/commands/test_commands_in_process.py'], FULL_NETWORK_EXPORTS),
}


# Surviving behaviour mutants that cannot change what the code does, per area: {mutant name: why}. The names are
# mutmut's for the source at the commit that lists them (editing a function renumbers its mutants).
EQUIVALENT = {
    'inference': {
        'promptir_basicsr.image_restoration.x_export_variant__mutmut_17':
            'strict=None for True: export options change no parameter name, so strict never fires',
        'promptir_basicsr.image_restoration.x_measured_backend__mutmut_75':
            "the verdict's JSON without indent: read back with json.load, the same values",
        'promptir_basicsr.image_restoration.x_export_variant__mutmut_20':
            'strict=False for True: export options change no parameter name, so strict never fires',
        'promptir_basicsr.utils.images.x_encode_image__mutmut_23':
            "the gray-to-BGR step for WebP skipped: OpenCV's WebP encoder does it itself (the same bytes)",
        'promptir_basicsr.image_restoration.x_measured_backend__mutmut_76':
            "the verdict's JSON indented by 2: read back with json.load, the same values",
        'promptir_basicsr.utils.images.x_read_image__mutmut_64':
            'raw.shape[:3] for raw.shape[:2]: OpenCV reads gray images as 2-D arrays, whose [:3] is the same two sides',
        'promptir_basicsr.utils.images.x_encode_image__mutmut_39':
            "no encoder parameters as None instead of []: OpenCV's imencode takes both as none",
        'promptir_basicsr.utils.images.x_read_image__mutmut_4':
            "setLogLevel(None) sets level 0, OpenCV's LOG_LEVEL_SILENT, the level asked for",
        'promptir_basicsr.image_restoration.x_calibrate__mutmut_25':
            '-(-side // m) * m with its sign changed: only padded * padded is used, the sign squares away',
        'promptir_basicsr.image_restoration.x_calibrate__mutmut_5':
            'tile_batch 2 instead of 1: the batch is not read when the forward is untiled',
        'promptir_basicsr.image_restoration.x_calibrate__mutmut_74':
            'measured[+1] for measured[-1]: calibrate measures one or two sides, where they are the same',
        'promptir_basicsr.utils.images.x__png_layout__mutmut_51':
            "int.from_bytes without 'big': big is the default on Python 3.11+, which setup.py requires",
    },
    'interop': {
        'promptir_basicsr.interop.export.x__trace_to_onnx__mutmut_23':
            "simplefilter('ignore') without a category: every warning silenced, not one kind; only output changes",
        'promptir_basicsr.interop.export.x__trace_to_onnx__mutmut_29':
            "simplefilter('ignore') without a category: every warning silenced, not one kind; only output changes",
        'promptir_basicsr.interop.export.x_torchscript_bytes__mutmut_18':
            "simplefilter('ignore') without a category: every warning silenced, not one kind; only output changes",
        'promptir_basicsr.interop.export.x_torchscript_bytes__mutmut_24':
            "simplefilter('ignore') without a category: every warning silenced, not one kind; only output changes",
        'promptir_basicsr.interop.onnx_runtime.xǁOnnxNetworkǁforward__mutmut_22':
            'astype(copy=None) instead of copy=False: a copy or not, the same values',
        'promptir_basicsr.interop.onnx_runtime.xǁOnnxNetworkǁforward__mutmut_24':
            'astype without copy=False: a copy or not, the same values',
        'promptir_basicsr.interop.onnx_runtime.xǁOnnxNetworkǁforward__mutmut_25':
            'astype(copy=True) instead of copy=False: a copy or not, the same values',
        'promptir_basicsr.interop.spandrel.x_spandrel_architectures__mutmut_5':
            "getattr's default None instead of (): both falsy, the class is skipped either way",
    },
    'models': {
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ_progressive_crop__mutmut_11':
            'mini_batch <= batch: at equality every sample is kept, in order: the same batch',
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ_progressive_crop__mutmut_32':
            'shape[+2:] is shape[-2:] for the 4-D lq',
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ_progressive_crop__mutmut_35':
            'mini_size <= height: a window as large as the image is the image',
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ_progressive_crop__mutmut_36':
            'mini_size <= width: a window as large as the image is the image',
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ__init____mutmut_18':
            "channels_last's default None: read as a bool, False like the default",
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁ__init____mutmut_37':
            "grad_checkpoint's default dropped: None, read as a bool, False like the default",
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁinit_training_settings__mutmut_62':
            'training=None: only tested for truth, false like False',
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁoptimize_parameters__mutmut_12':
            '_train_steps counted down: only compared for equality (the validation stamp), changed at every step alike',
        'promptir_basicsr.models.training_guards.xǁTrainingGuardsMixinǁloss_is_finite__mutmut_18':
            "nan_policy's default None: only 'skip' is tested for, so None stops like 'stop'",
        'promptir_basicsr.models.all_in_one_model.xǁAllInOneModelǁmodel_ema__mutmut_1':
            "the default decay is never used: every caller (ours, basicsr's) passes one",
    },
    'commands': {
        'promptir_basicsr.commands.ablate.x__read_json__mutmut_4':
            "open() without encoding='utf-8': the locale's encoding, UTF-8 on the systems the tests run on",
        'promptir_basicsr.commands.ablate.x__test__mutmut_42':
            'sort_keys=None for False: PyYAML tests it for truth, no sorting either way',
        'promptir_basicsr.commands.prompts.x_run__mutmut_6':
            'is_train=None for False: read as falsy',
        'promptir_basicsr.commands.arguments.x_add_device_arguments__mutmut_44':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.prompts.x_build_parser__mutmut_56':
            'speed=None instead of False: add_device_arguments tests `not speed`',
        'promptir_basicsr.commands.ablate.xǁVariantǁhas_prompts__mutmut_20':
            'another non-empty default tuple: only its truth is read',
        'promptir_basicsr.commands.ablate.x__run_command__mutmut_22':
            "the log opened without encoding='utf-8': its descriptor goes to the child, nothing is written through it",
        'promptir_basicsr.commands._pipeline.x_build_parser__mutmut_7':
            'type=None instead of str: argparse hands the string over unchanged either way',
        'promptir_basicsr.commands._pipeline.x_build_parser__mutmut_11':
            'no type instead of str: argparse hands the string over unchanged either way',
        'promptir_basicsr.commands._pipeline.x_build_parser__mutmut_86':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands._pipeline.x_run_pipeline__mutmut_2':
            'is_train=None instead of False: falsy wherever it is read (Key.is_required, `not is_train`)',
        'promptir_basicsr.commands.convert.x_build_parser__mutmut_40':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.convert.x_build_parser__mutmut_61':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.convert.x_build_parser__mutmut_75':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.prompts.x_run__mutmut_27':
            "param_key=None dropped: load_network's default is None",
        'promptir_basicsr.commands.serve.x_build_parser__mutmut_103':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.serve.x_build_parser__mutmut_115':
            'speed=None instead of False: add_device_arguments tests `not speed`',
        'promptir_basicsr.commands.serve.x_build_parser__mutmut_125':
            "default=None dropped: argparse's default is None",
        'promptir_basicsr.commands.serve.x_run__mutmut_38':
            "prefix=None: only the temporary folder's name changes",
    },
    'new_archs': {
        'promptir_basicsr.archs.adair_arch.xǁAdaIRǁforward__mutmut_71':
            'run_stage(last=False) for the refinement: whether the last stage is checkpointed, the same values',
        'promptir_basicsr.archs.adair_arch.xǁFreModuleǁforward__mutmut_10':
            'shape[+2:] is shape[-2:] for the 4-D features',
        'promptir_basicsr.archs.adair_arch.xǁFreModuleǁforward__mutmut_9':
            "bilinear interpolate without align_corners=False: torch's default for None is False",
        'promptir_basicsr.archs.moce_ir_arch.xǁModExpertǁ__init____mutmut_7':
            'Conv2d(bias=None) instead of bias=False: tested for truth, no bias either way',
        'promptir_basicsr.archs.moce_ir_arch.xǁModExpertǁ__init____mutmut_17':
            'Conv2d(bias=None) instead of bias=False: tested for truth, no bias either way',
        'promptir_basicsr.archs.moce_ir_arch.x_transposed_attention__mutmut_101':
            'torch.cat of the one head instead of the head itself: a copy, the same values',
        'promptir_basicsr.archs.moce_ir_arch.x__complexity_scale__mutmut_8':
            '<= 1e-6 for < 1e-6 on |max - 1|: differs only for a maximum exactly 1e-6 away from 1',
        'promptir_basicsr.archs.adair_arch.xǁAdaIRǁoptions_from_weights__mutmut_14':
            "fre4 for fre3 among a level's heads keys: fre1 comes first and exists whenever fre3 does",
        'promptir_basicsr.archs.adair_arch.xǁFreModuleǁbands__mutmut_20':
            'eager=None turns the empty-window shortcut off: the FFT path, the same bands (ifft2 of a zero spectrum)',
        'promptir_basicsr.archs.adair_arch.xǁAdaIRǁoption_problems__mutmut_20':
            "a changed entry of the heads default (1, 2, 4, 8) other than heads[2], the only one read",
        'promptir_basicsr.archs.adair_arch.xǁAdaIRǁoption_problems__mutmut_21':
            "a changed entry of the heads default (1, 2, 4, 8) other than heads[2], the only one read",
        'promptir_basicsr.archs.adair_arch.xǁAdaIRǁoption_problems__mutmut_23':
            "a changed entry of the heads default (1, 2, 4, 8) other than heads[2], the only one read",
        'promptir_basicsr.archs.bioir_arch.xǁBioIRǁoption_problems__mutmut_11':
            'a changed entry of the num_blocks default (6, 6, 14): only its length is read',
        'promptir_basicsr.archs.bioir_arch.xǁBioIRǁoption_problems__mutmut_12':
            'a changed entry of the num_blocks default (6, 6, 14): only its length is read',
        'promptir_basicsr.archs.bioir_arch.xǁBioIRǁoption_problems__mutmut_13':
            'a changed entry of the num_blocks default (6, 6, 14): only its length is read',
    },
    'options': {
        'promptir_basicsr.options.checker.xǁ_SourceModuleǁ__init____mutmut_9':
            'the file name appears only in the SyntaxError of a broken package file',
        'promptir_basicsr.options.checker.xǁ_SourceModuleǁ__init____mutmut_11':
            'the file name appears only in the SyntaxError of a broken package file',
        'promptir_basicsr.options.checker.xǁ_SourceModuleǁ__init____mutmut_6':
            "'UTF-8' is the same codec as 'utf-8'",
        'promptir_basicsr.options.checker.xǁ_SourceModuleǁ__init____mutmut_2':
            "the locale's encoding for UTF-8: the same on a UTF-8 system (the tests')",
        'promptir_basicsr.options.checker.xǁ_SourceModuleǁ__init____mutmut_4':
            "the locale's encoding for UTF-8: the same on a UTF-8 system (the tests')",
        'promptir_basicsr.options.files.x_read_option_file__mutmut_5':
            "the locale's encoding for UTF-8: the same on a UTF-8 system (the tests')",
        'promptir_basicsr.options.files.x_read_option_file__mutmut_7':
            "the locale's encoding for UTF-8: the same on a UTF-8 system (the tests')",
        'promptir_basicsr.options.checker.x_static_problems__mutmut_4':
            'Checker.opt is never read',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁ__init____mutmut_1':
            'Checker.opt is never read',
        'promptir_basicsr.options.checker.x_static_problems__mutmut_5':
            'is_train=None: the keys it reaches are required always or never, so is_train is not read',
        'promptir_basicsr.options.checker.x__misspelt_dataset_keys__mutmut_38':
            'the keys it reaches are required always or never, so is_train is not read',
        'promptir_basicsr.options.checker.x__misspelt_model_keys__mutmut_29':
            'every registered model declares train and val, so the fallback is never taken',
        'promptir_basicsr.options.checker.x__misspelt_model_keys__mutmut_31':
            'every registered model declares train and val, so the fallback is never taken',
        'promptir_basicsr.options.files.x_force_yml_value__mutmut_25':
            "with count('.') < 2 there is at most one dot: how many replace removes is the same",
        'promptir_basicsr.options.files.x_force_yml_value__mutmut_26':
            "with count('.') < 2 there is at most one dot: how many replace removes is the same",
        'promptir_basicsr.options.files.x_force_yml_value__mutmut_32':
            "with count('.') < 2 there is at most one dot: how many replace removes is the same",
        'promptir_basicsr.options.files.x_force_yml_value__mutmut_35':
            "with count('.') < 2 there is at most one dot: how many replace removes is the same",
        'promptir_basicsr.options.files.x_options_yaml__mutmut_3':
            'sort_keys: our representer passes data.items(), which PyYAML never sorts',
        'promptir_basicsr.options.files.x_options_yaml__mutmut_8':
            'sort_keys: our representer passes data.items(), which PyYAML never sorts',
        'promptir_basicsr.options.files.x_options_yaml__mutmut_12':
            'sort_keys: our representer passes data.items(), which PyYAML never sorts',
        'promptir_basicsr.options.prepare.x_consistency_warnings__mutmut_14':
            'the warnings list is still empty at that point',
        'promptir_basicsr.options.prepare.x_consistency_warnings__mutmut_84':
            "a num_gpu of None and 'auto' take the same branch",
        'promptir_basicsr.options.prepare.x_consistency_warnings__mutmut_86':
            "a num_gpu of None and 'auto' take the same branch",
        'promptir_basicsr.options.prepare.x_consistency_warnings__mutmut_97':
            'num_gpu is only read as max(int(num_gpu), 1)',
        'promptir_basicsr.options.prepare.x_prepare_run__mutmut_52':
            'the first check, with the real is_train, already passed; is_train=False checks less',
        'promptir_basicsr.options.schema.x__with_check__mutmut_3':
            'no basicsr key with a section check has choices or items',
        'promptir_basicsr.options.schema.x__with_check__mutmut_4':
            'no basicsr key with a section check has choices or items',
        'promptir_basicsr.options.schema.x__with_check__mutmut_8':
            'no basicsr key with a section check has choices or items',
        'promptir_basicsr.options.schema.x__with_check__mutmut_9':
            'no basicsr key with a section check has choices or items',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁcall__mutmut_10':
            'call runs only after type was found in its registry as a string',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁcall__mutmut_11':
            'call runs only after type was found in its registry as a string',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁcall__mutmut_12':
            'call runs only after type was found in its registry as a string',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁcall__mutmut_13':
            'call runs only after type was found in its registry as a string',
        'promptir_basicsr.options.schema.xǁSchemaCheckerǁsection__mutmut_8':
            'section() is called only with names in BASICSR_OPTIONS',
        'promptir_basicsr.options.schema.x__check_datasets__mutmut_105':
            'a workers default of None or 0 gives the same `not workers`',
        'promptir_basicsr.options.schema.x__check_datasets__mutmut_107':
            'a workers default of None or 0 gives the same `not workers`',
    },
    'tiling': {
        'promptir_basicsr.utils.tiling.x__blend_profile__mutmut_15':
            'arange without float32 is int64, and the division that follows gives the same float32 ramp',
        'promptir_basicsr.utils.tiling.x__blend_profile__mutmut_17':
            'arange without float32 is int64, and the division that follows gives the same float32 ramp',
        'promptir_basicsr.utils.tiling.x_pad_to_multiple__mutmut_4':
            'shape[+2:] is shape[-2:] for the 4-D (N, C, H, W) tensors the helper takes',
        'promptir_basicsr.utils.tiling.x_pad_to_multiple__mutmut_8':
            'multiple < 1 instead of <= 1: a multiple of 1 pads by (1 - h % 1) % 1 = 0 and returns x all the same',
        'promptir_basicsr.utils.tiling.x_tiled_forward__mutmut_41':
            'shape[+2:] is shape[-2:] for the 4-D padded image',
        'promptir_basicsr.utils.tiling.x_tiled_forward__mutmut_113':
            'torch.cat of a single tile instead of the tile itself: the same values',
        'promptir_basicsr.utils.tiling.x_fitted_tile__mutmut_27':
            'a smaller first count: the loop adds one until the first count that fits, the original first count',
        'promptir_basicsr.utils.tiling.x_fitted_tile__mutmut_43':
            'count += 1 never runs: c0 = ceil((L - o) / (M - o)) gives ceil((L + (c0 - 1) o) / c0) <= M, a multiple',
        'promptir_basicsr.utils.tiling.x_fitted_tile__mutmut_44':
            'count += 1 never runs (see x_fitted_tile__mutmut_43): the first count always fits',
        'promptir_basicsr.utils.tiling.x_fitted_tile__mutmut_45':
            'count += 1 never runs (see x_fitted_tile__mutmut_43): the first count always fits',
        'promptir_basicsr.utils.tiling.xǁTileGridǁ_starts__mutmut_1':
            'length < tile instead of <=: at length == tile, range(0, 0) is empty and the last start appended is 0',
    },
}


def _lines(key, values):
    return f'{key} =\n' + ''.join(f'    {v}\n' for v in values)


def prepare(area, fresh=True):
    """A copy of the repository's files (tracked and new, not ignored) with the area's setup.cfg; ``fresh``: in an
    empty folder (else over the last run's, keeping mutmut's records so that named mutants can run again)."""
    mutate, keep, tests, *pytest_args = AREAS[area]
    work = os.path.join(REPO, 'build', 'mutation', area)
    if fresh and os.path.exists(work):
        shutil.rmtree(work)
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if os.path.isfile(os.path.join(REPO, rel)):
            os.makedirs(os.path.dirname(os.path.join(work, rel)) or work, exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(work, rel))
    config = ('[mutmut]\nsource_paths = promptir_basicsr\n' + _lines('only_mutate', mutate)
              + (_lines('do_not_mutate', keep) if keep else '')
              + _lines('also_copy', sorted({rel.split('/')[0] for rel in files} - {'promptir_basicsr', 'tests'}))
              + _lines('pytest_add_cli_args_test_selection', tests)
              + _lines('pytest_add_cli_args', ['-m', 'not slow', '-p', 'no:cacheprovider',
                                               *(pytest_args[0] if pytest_args else [])]))
    with open(os.path.join(work, 'setup.cfg'), 'w', encoding='utf-8') as f:
        f.write(config)
    return work


# Run inside the work folder: every mutant's status and diff, from mutmut's own records (mutmut 3.8).
_LIST_MUTANTS = """
import json
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files
out = {}
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name, code in data.exit_code_by_key.items():
        out[name] = [status_by_exit_code[code], get_diff_for_mutant(name, path=path)]
print(json.dumps(out))
"""

_STRING = re.compile(r"""[rbfRBF]{0,2}("([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*')""")
_MESSAGE_STATEMENT = re.compile(r'^\s*(raise |log\(|logger\.|get_root_logger\(\)\.|print\(|notes\.append\(|'
                                r'parser\.error\(|warnings\.warn\()')
_HELP_ARGUMENT = re.compile(r'\b(help|description|epilog|metavar|prog)=(S|None|prog|description),?')
# arguments that are only words in a message or --help: interop's require(module, purpose) and
# check_differences(differences, precision, what); the help of the commands' shared arguments, the description
# of train's and test's parser
_MESSAGE_ARGUMENTS = (re.compile(r'(\brequire\([^,()]+,\s*)(S|None)'),
                      re.compile(r'(\bcheck_differences\((?:[^()]|\([^()]*\))*,\s*)(S|None)(?=\))'),
                      re.compile(r'(\badd_(?:output|arch_opt)_argument\(\s*parser,\s*)(S|None)'),
                      re.compile(r'(\b_pipeline\.build_parser\(\s*prog,\s*)(S|None)'))


def is_text_mutant(diff):
    """True when a mutant only changes wording: inside string literals, in a message statement, in an
    argparse help/description/metavar/prog argument, or in an argument that only names a thing in a message
    (``_MESSAGE_ARGUMENTS``)."""
    old = [line[1:] for line in diff.splitlines() if line.startswith('-') and not line.startswith('---')]
    new = [line[1:] for line in diff.splitlines() if line.startswith('+') and not line.startswith('+++')]
    if not old:
        return False
    if [_STRING.sub('S', line) for line in old] == [_STRING.sub('S', line) for line in new]:
        return True
    if _MESSAGE_STATEMENT.match(old[0]):
        return True

    def without_help(lines):
        text = re.sub(r'S(\s*S)+', 'S', _STRING.sub('S', ' '.join(lines)))  # implicit concatenation
        for argument in _MESSAGE_ARGUMENTS:
            text = argument.sub(r'\1S', text)
        return re.sub(r'\s', '', _HELP_ARGUMENT.sub('', text))

    return without_help(old) == without_help(new)


def _mutmut_env(work):
    """mutmut puts ``mutants/`` first on its own sys.path (and takes the work folder off it); PYTHONPATH names the
    work folder's unmutated copy for the tests' subprocesses (``python -m promptir_basicsr``), which would otherwise
    import the installed package: another checkout's code, whose messages and behaviour may differ from the tests'
    (a failing test stops mutmut's first, unmutated run, and every mutant is then left 'not checked')."""
    env = dict(os.environ, PYTHONPATH=work)
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


NO_MUTANT = 'no-mutant-has-this-name'  # mutmut makes the mutants and maps the tests, then stops: nothing to run


def run_area(area, max_children, again=False, behaviour_only=False, resume=False, sample=None, seed=0):
    """Run mutmut on ``area``: every mutant in a fresh copy, or (``again``) only the last run's survivors, with the
    repository's current tests copied over the last run's folder (and then the mutants of any source file changed
    since, which mutmut made anew and left 'not checked'); or (``resume``) only the mutants an interrupted run
    left 'not checked', with the current tests. ``behaviour_only``: leave the wording mutants
    (:func:`is_text_mutant`) 'not checked' (a quarter to two fifths of an area's mutants, whose time is saved); the
    behaviour kill rate is the same. ``sample``: in a fresh copy, run only that many behaviour mutants, drawn at
    random (``seed``) from the whole area; the rest stay 'not checked' and the report gives the kill rate with its
    95 % interval (an estimate of the area's rate; ``again`` and ``resume`` then keep to the sample)."""
    work = os.path.join(REPO, 'build', 'mutation', area)
    results = load_results(work) if again or resume else {}
    names = sorted(n for n, (status, _) in results.items()
                   if (status == 'not checked' if resume else status in NOT_KILLED))
    again = again or resume
    work = prepare(area, fresh=not again)
    cmd = [sys.executable, '-m', 'mutmut', 'run'] + (['--max-children', str(max_children)] if max_children else [])
    sample_file = os.path.join(work, 'sample.json')
    drawn = None  # the sample's names, when the run is (or continues) a sample
    if again and os.path.exists(sample_file):
        with open(sample_file, encoding='utf-8') as f:
            drawn = set(json.load(f)['names'])
    if (behaviour_only or sample) and not again:
        subprocess.run(cmd + [NO_MUTANT], cwd=work, env=_mutmut_env(work), check=False)
        results = load_results(work)
        names = sorted(results)
        if sample:
            behaviour = sorted(n for n in names if not is_text_mutant(results[n][1]))
            drawn = set(random.Random(seed).sample(behaviour, min(sample, len(behaviour))))
            with open(sample_file, 'w', encoding='utf-8') as f:
                json.dump(dict(seed=seed, of=len(behaviour), names=sorted(drawn)), f)
    # again: the survivors first, then what is left 'not checked' (mutmut runs the named mutants in its own order)
    for names in ([names, None] if again else [names]):
        if names is None:
            names = sorted(n for n, (status, _) in results.items() if status == 'not checked')
        if behaviour_only:
            names = [n for n in names if not is_text_mutant(results[n][1])]
        if drawn is not None:
            names = [n for n in names if n in drawn]
        if not names and (again or behaviour_only or drawn is not None):
            continue  # (no names at all would run every mutant without a result)
        subprocess.run(cmd + names, cwd=work, env=_mutmut_env(work), check=False)
        results = load_results(work)
    if results and all(status == 'not checked' for status, _ in results.values()):
        # mutmut first runs the selected tests on the unmutated code (with -x) to map tests to functions: one
        # failing test there stops it before any mutant runs
        print(f'\n!! {area}: no mutant ran. mutmut stops when a selected test fails on the unmutated code; its output '
              f'above names the test (cd {os.path.relpath(work, os.getcwd())}, add "debug = true" under [mutmut] in '
              'setup.cfg, run python -m mutmut run, to see it in full)')
    return work, results


def load_results(work):
    """{mutant name: (status, diff)} of a finished run in ``work``."""
    listing = subprocess.run([sys.executable, '-c', _LIST_MUTANTS], cwd=work, env=_mutmut_env(work),
                             capture_output=True, text=True, check=True).stdout
    return {name: tuple(value) for name, value in json.loads(listing).items()}


KILLED = ('killed', 'timeout', 'segfault')  # the tests noticed the mutant: a failure, a hang, a crash
NOT_KILLED = ('survived', 'no tests')  # 'no tests': no selected test calls the mutated function


def _rate(killed, judged, whole=None):
    """``killed / judged`` in per cent; with ``whole`` (the mutants the rate stands for) larger than ``judged`` (a
    sample or a partial run), also its 95 % Wilson interval: the rate of the whole lies there unless the sample was
    unusual (for a random sample; a partial run covers the first files only and is no sample)."""
    if not judged:
        return 'n/a'
    text = f'{100 * killed / judged:.1f}%'
    if whole is not None and whole > judged:
        z = 1.959964
        p = killed / judged
        centre = (p + z * z / (2 * judged)) / (1 + z * z / judged)
        half = z * math.sqrt(p * (1 - p) / judged + z * z / (4 * judged * judged)) / (1 + z * z / judged)
        text += f' ({100 * (centre - half):.1f}-{100 * (centre + half):.1f}%)'
    return text


def report(area, work, results):
    """Print the area's counts, rates and survivors; returns its row of the summary table."""
    def tally(names):
        statuses = collections.Counter(results[n][0] for n in names)
        killed = sum(statuses[s] for s in KILLED)
        return killed, killed + sum(statuses[s] for s in NOT_KILLED), statuses

    wording = {n for n, (_, diff) in results.items() if is_text_mutant(diff)}
    behaviour = sorted(set(results) - wording)
    equivalent = EQUIVALENT.get(area, {})
    survivors = [n for n in behaviour if results[n][0] in NOT_KILLED]
    listed = [n for n in survivors if n in equivalent]
    killed_all, judged_all, statuses = tally(results)
    killed, judged, _ = tally(behaviour)
    other = {k: v for k, v in statuses.items() if k not in KILLED + NOT_KILLED}
    whole = len(behaviour) if os.path.exists(os.path.join(work, 'sample.json')) else None  # a random sample
    print(f'\n== {area}: {len(results)} mutants, killed {killed_all} of {judged_all}'
          f'{f", other {dict(other)}" if other else ""}; kill rate {_rate(killed_all, judged_all)}')
    print(f'   behaviour mutants (not message/help wording): {len(behaviour)}, killed {killed}, not killed '
          f'{judged - killed} ({len(listed)} equivalent); kill rate {_rate(killed, judged, whole)} '
          f'({_rate(killed, judged - len(listed), whole)} of those that can change behaviour)'
          + (f'; a random sample of {judged}: in brackets, the 95 % interval of the area rate' if whole else ''))
    text = sorted(n for n in wording if results[n][0] in NOT_KILLED)
    print(f'   surviving wording mutants ({len(text)}): {", ".join(n.rsplit(".", 1)[-1] for n in text)}')
    for name in listed:
        print(f'   -- equivalent: {name}: {equivalent[name]}')
    for name in survivors:
        if name not in equivalent:
            status, diff = results[name]
            print(f'   -- {status}: {name}')
            print('\n'.join('      ' + line for line in diff.splitlines() if line[:1] in '+-' and line[:3] not in
                            ('---', '+++')))
    print(f'   inspect: cd {os.path.relpath(work, os.getcwd())} && mutmut show <name>')
    return dict(area=area, mutants=len(results), behaviour=len(behaviour), killed=killed, judged=judged,
                equivalent=len(listed), whole=whole)


def summary_table(rows):
    """The per-area table of docs/testing.md, in Markdown."""
    lines = ['| area | mutants | behaviour mutants | of them run | killed | not killed (equivalent) | '
             'behaviour kill rate | without the equivalent |',
             '|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r["area"]} | {r["mutants"]} | {r["behaviour"]} | {r["judged"]} | {r["killed"]} | '
                     f'{r["judged"] - r["killed"]} ({r["equivalent"]}) | '
                     f'{_rate(r["killed"], r["judged"], r["whole"])} | '
                     f'{_rate(r["killed"], r["judged"] - r["equivalent"], r["whole"])} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('areas', nargs='+', choices=sorted(AREAS) + ['all'], metavar='area',
                        help=f'one or more of {", ".join(sorted(AREAS))}, or all')
    parser.add_argument('--max-children', type=int, default=None,
                        help='parallel mutant runs (default: mutmut\'s, the number of CPUs)')
    parser.add_argument('--report-only', action='store_true',
                        help='print the report of the last run in build/mutation/<area>/ without running again')
    parser.add_argument('--again', action='store_true',
                        help="run only the last run's survivors again, against the repository's current tests")
    parser.add_argument('--resume', action='store_true',
                        help="go on with an interrupted run: only the mutants it left 'not checked'")
    parser.add_argument('--sample', type=int, default=None, metavar='N',
                        help='run N behaviour mutants drawn at random from the area (a fresh run), for an estimate of '
                             'its kill rate with a 95 %% interval; --again then reruns the sample\'s survivors')
    parser.add_argument('--seed', type=int, default=0, help='the random draw of --sample (default 0)')
    parser.add_argument('--behaviour-only', action='store_true',
                        help="run only the behaviour mutants, leaving those that change a message's wording 'not "
                             "checked' (a quarter to two fifths of the mutants; the behaviour kill rate is the same)")
    args = parser.parse_args(argv)
    rows = []
    for area in sorted(AREAS) if 'all' in args.areas else args.areas:
        if args.report_only:
            work = os.path.join(REPO, 'build', 'mutation', area)
            if not os.path.isdir(os.path.join(work, 'mutants')):
                print(f'\n== {area}: not run yet (no {os.path.relpath(work, os.getcwd())}/mutants)')
                continue
            rows.append(report(area, work, load_results(work)))
        else:
            rows.append(report(area, *run_area(area, args.max_children, args.again, args.behaviour_only, args.resume,
                                               args.sample, args.seed)))
    print('\n' + summary_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
