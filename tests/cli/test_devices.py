"""A device the project cannot run on is bad input (exit 2, one line), never a silent CPU run."""

import pytest

from descentlab.cli.main import main


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_an_unsupported_device_is_refused_in_one_line(device, tmp_path, capsys):
    rc = main(["navigate", "--preset", "note", "--out", str(tmp_path / "o"),
               "--device", device])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--device" in err and f"{device!r} is not supported" in err
    assert not (tmp_path / "o").exists()
