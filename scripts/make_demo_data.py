#!/usr/bin/env python
"""Write the small all-in-one demo data set (noise, rain, haze, blur, low light) from scikit-image's photos.

    python scripts/make_demo_data.py [--out datasets/demo]

No download; about a second. The layout is in ``promptir_basicsr/data/demo.py`` (importable as
``promptir_basicsr.data.demo.make_demo_data(root)`` / ``ensure_demo_data(root)``).
"""
import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='datasets/demo',
                        help='output folder (default datasets/demo); replaced if it exists')
    args = parser.parse_args(argv)
    import promptir_basicsr  # noqa: F401
    from promptir_basicsr.data.demo import make_demo_data
    meta = make_demo_data(args.out, overwrite=True)
    print(f'Demo data written to {args.out} in {meta["seconds"]} s:')
    print(json.dumps(meta['files'], indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
