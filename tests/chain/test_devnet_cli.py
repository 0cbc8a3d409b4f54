"""`swarmtrain devnet` argument handling (in-process; the server itself is tested elsewhere)."""

from __future__ import annotations

import socket

from swarmtrain.cli import main


def test_invalid_settings_are_refused_with_exit_code_2(tmp_path, capsys):
    assert main(["devnet", "--state", str(tmp_path), "--block-time", "0"]) == 2
    assert "invalid devnet settings" in capsys.readouterr().err
    assert not (tmp_path / "devnet.sqlite").exists()


def test_a_port_in_use_is_reported_not_raised(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["devnet", "--state", str(tmp_path), "--port", str(port), "--quiet"])
    assert code == 1
    assert f"could not listen on 127.0.0.1:{port}" in capsys.readouterr().err
