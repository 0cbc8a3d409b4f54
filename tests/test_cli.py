import subprocess
import sys

from swarmtrain.cli import build_parser, discover_commands, main


def test_help_lists_every_discovered_command(capsys):
    modules = discover_commands()
    help_text = build_parser(modules).format_help()
    for module in modules:
        assert module.NAME in help_text


def test_no_command_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "usage: swarmtrain" in capsys.readouterr().out


def test_console_entry_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "swarmtrain", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "swarmtrain" in out.stdout
