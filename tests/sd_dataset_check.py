"""Run by sd-scripts' own Python: load a dataset TOML with sd-scripts' config loader
and print what it found (JSON). Usage: python sd_dataset_check.py SD_SCRIPTS_DIR TOML"""

import argparse
import json
import sys

sys.path.insert(0, sys.argv[1])
from library import config_util, train_util  # noqa: E402

parser = argparse.ArgumentParser()
train_util.add_dataset_arguments(parser, True, True, True)
train_util.add_training_arguments(parser, True)
namespace = parser.parse_args([])
user_config = config_util.load_user_config(sys.argv[2])
sanitizer = config_util.ConfigSanitizer(True, True, False, True)
blueprint = config_util.BlueprintGenerator(sanitizer).generate(user_config, namespace)
group, _ = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
found = []
for dataset in group.datasets:
    for info in dataset.image_data.values():
        found.append(
            {
                "path": info.absolute_path,
                "caption": info.caption,
                "size": list(dataset.resolution) if hasattr(dataset, "resolution") else None,
            }
        )
print("RESULT " + json.dumps({"images": found, "bucket": [d.enable_bucket for d in group.datasets]}))
