#!/usr/bin/env python
"""Turn every image folder of an option file into an LMDB; print the option lines or write the LMDB option file.

    python scripts/create_lmdb.py -opt options/train/promptir_allinone.yml [--out DIR] [--overwrite]
                                  [--write-opt options/train/promptir_allinone_lmdb.yml]

Converts the training ``sources`` of an AllInOneDataset and every other dataset with a
``dataroot_gt`` / ``dataroot_lq`` (validation sets included). Each folder becomes ``<folder>.lmdb``
beside it (or ``DIR/<folder path>.lmdb`` with ``--out``); keys are the percent-encoded
relative names (no dots, reversible), so pairing rules and list files keep working. Sources that are
already LMDB are skipped. ``--write-opt OUT.yml`` writes a copy of the option file that reads the LMDBs
(checked like any option file; the comments of the original are not copied). Details:
``promptir_basicsr/data/lmdb_tools.py``.
"""
import argparse
import os.path as osp
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('-opt', required=True, help='option file whose datasets to convert')
    parser.add_argument('--out', default=None, help='folder for the LMDBs (default: beside each image folder)')
    parser.add_argument('--overwrite', action='store_true', help='rebuild LMDBs that exist')
    parser.add_argument('--compress_level', type=int, default=1, help='PNG compression level 0-9 (default 1)')
    parser.add_argument('--write-opt', metavar='OUT.yml', default=None,
                        help='write the option file that reads the LMDBs (a copy of -opt with the paths replaced)')
    args = parser.parse_args(argv)

    import promptir_basicsr  # noqa: F401  (compat fixes before basicsr is used)
    from promptir_basicsr.data.lmdb_tools import create_lmdbs, lmdb_options
    from promptir_basicsr.errors import OptionError
    from promptir_basicsr.options.files import import_plugins, options_yaml, read_option_file
    from promptir_basicsr.utils.files import atomic_write_text
    if args.write_opt and osp.abspath(args.write_opt) == osp.abspath(args.opt):
        raise OptionError(f'--write-opt {args.write_opt} is the input option file; give another file name')
    opt = read_option_file(args.opt)
    import_plugins(opt, args.opt)
    text = create_lmdbs(opt, out_dir=args.out, overwrite=args.overwrite, compress_level=args.compress_level)
    if args.write_opt:
        header = (f'# The LMDB version of {args.opt}, written by scripts/create_lmdb.py: the same options, its image '
                  'folders\n# replaced by the LMDBs made from them. The comments of the original explain every key.\n')
        atomic_write_text(args.write_opt, header + options_yaml(lmdb_options(opt, args.out)))
        print(f'wrote {args.write_opt}: train with `basicsr train -opt {args.write_opt}`')
    else:
        print(text)
    return 0


if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from promptir_basicsr.errors import run_command
    sys.exit(run_command('create_lmdb.py', main, sys.argv[1:]))
