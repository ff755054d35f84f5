"""Check an argument list against sd-scripts' own FLUX trainer parser before launching.

Usage: python validate_args.py SD_SCRIPTS_DIR ARGS_JSON_FILE
Prints MVIC_ARGS ok, or the parser's error and exits 2."""

import json
import os
import sys

checkout, args_file = sys.argv[1], sys.argv[2]
os.chdir(checkout)
sys.path.insert(0, checkout)
import flux_train_network  # noqa: E402

parser = flux_train_network.setup_parser()
args = json.load(open(args_file, encoding="utf-8"))
try:
    parser.parse_args(args)  # argparse prints the problem and exits 2 on bad arguments
except SystemExit as exc:
    sys.exit(exc.code)
print("MVIC_ARGS ok")
