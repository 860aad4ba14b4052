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

"""The one exception type for bad user input: the CLI prints its message as one line."""


class JziError(Exception):
    """
    Bad input or state a user can fix.

    The message names the file/field/value and what was expected. The CLI prints it without a
    traceback and exits non-zero.
    """


class BadImageError(JziError):
    """
    An image (array or camera message) that cannot be localized.

    Wrong shape, unsupported encoding, inconsistent size/step, corrupt compressed data. The ROS
    node counts and skips these frames instead of stopping.
    """
