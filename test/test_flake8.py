import pytest

main_with_errors = pytest.importorskip(
    "ament_flake8.main", reason="ament_flake8 not installed (ROS 2 only)").main_with_errors


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=[])
    assert rc == 0, "Found %d code style errors / warnings:\n" % len(errors) + "\n".join(errors)
