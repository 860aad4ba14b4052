import pytest

ament_copyright_main = pytest.importorskip(
    "ament_copyright.main", reason="ament_copyright not installed (ROS 2 only)").main


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    rc = ament_copyright_main(argv=[".", "test"])
    assert rc == 0, "Found errors"
