# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.


"""
Regenerate the generated parts of the docs (today: the node's parameter table in docs/ros.md).

Usage: ``python tools/update_docs.py`` (rewrite) or ``python tools/update_docs.py --check``
(exit 1 when a doc is stale; test/test_docs.py runs the same check).
"""
import argparse
from pathlib import Path
import re
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.ros.params import markdown_table  # noqa: E402  (after the path setup)

ROS_DOC = ROOT / "docs" / "ros.md"
BLOCK = re.compile(r"(<!-- BEGIN parameters[^\n]*-->\n)(.*?)(\n<!-- END parameters -->)", re.S)


def render(text: str) -> str:
    """Return ``text`` with the parameter block replaced by the current table."""
    if not BLOCK.search(text):
        raise SystemExit(f"{ROS_DOC}: no '<!-- BEGIN parameters' ... '<!-- END parameters -->' "
                         "markers")
    return BLOCK.sub(lambda m: m.group(1) + markdown_table() + m.group(3), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale docs")
    args = parser.parse_args()
    text = ROS_DOC.read_text(encoding="utf-8")
    new = render(text)
    if new == text:
        print(f"{ROS_DOC.relative_to(ROOT)} is current")
        return 0
    if args.check:
        print(f"{ROS_DOC.relative_to(ROOT)} is stale: run python tools/update_docs.py")
        return 1
    ROS_DOC.write_text(new, encoding="utf-8")
    print(f"updated {ROS_DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
