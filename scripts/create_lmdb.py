#!/usr/bin/env python
"""Turn every image folder of an option file into an LMDB and print the option lines to use it.

    python scripts/create_lmdb.py -opt options/train/promptir_3task.yml [--out DIR] [--overwrite]

Converts the training ``sources`` of an AllInOneDataset and every other dataset with a
``dataroot_gt`` / ``dataroot_lq`` (validation sets included). Each folder becomes ``<folder>.lmdb``
beside it (or ``DIR/<folder path>.lmdb`` with ``--out``); keys are the percent-encoded
relative names (no dots, reversible), so pairing rules and list files keep working. Sources that are
already LMDB are skipped. Details: ``promptir_basicsr/data/lmdb_tools.py``.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('-opt', required=True, help='option file whose datasets to convert')
    parser.add_argument('--out', default=None, help='folder for the LMDBs (default: beside each image folder)')
    parser.add_argument('--overwrite', action='store_true', help='rebuild LMDBs that exist')
    parser.add_argument('--compress_level', type=int, default=1, help='PNG compression level 0-9 (default 1)')
    args = parser.parse_args(argv)

    import promptir_basicsr  # noqa: F401  (compat fixes before basicsr is used)
    from promptir_basicsr.data.lmdb_tools import create_lmdbs
    from promptir_basicsr.data.sources import DatasetError
    from promptir_basicsr.options import OptionError, import_plugins, read_option_file
    try:
        opt = read_option_file(args.opt)
        import_plugins(opt, args.opt)
        text = create_lmdbs(opt, out_dir=args.out, overwrite=args.overwrite, compress_level=args.compress_level)
    except (DatasetError, OptionError) as err:
        print(f'create_lmdb: error: {err}', file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
