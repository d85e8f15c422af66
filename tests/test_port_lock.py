"""How ``diag`` names the process holding a port: the part that tells the agent apart must
survive the cut, however deep the install path (CI clones into a longer path than a
developer's tree; the agent's ``-m edge_agent.daemon.cli run`` was cut off there)."""

from __future__ import annotations

from edge_agent.console.port_lock import COMMAND_LIMIT, command_line


def test_the_program_is_named_without_its_path_so_the_arguments_fit() -> None:
    deep = "/check/work/" + "a-long-checkout-directory/" * 4 + ".venv/bin/python"
    raw = b"\0".join([deep.encode(), b"-m", b"edge_agent.daemon.cli", b"run",
                      b"--config", b"/etc/quantrac/station.toml"]) + b"\0"
    shown = command_line(raw)
    assert shown.startswith("python -m edge_agent.daemon.cli run --config "), shown
    assert "/check/work" not in shown


def test_a_long_command_is_cut_at_the_limit() -> None:
    raw = b"picocom\0" + b"x" * 500 + b"\0"
    shown = command_line(raw)
    assert len(shown) == COMMAND_LIMIT and shown.endswith("..."), shown
    assert shown.startswith("picocom xxx")


def test_control_characters_in_an_argv_are_escaped() -> None:
    shown = command_line(b"/usr/bin/evil\0\x1b[2Jcleared\0\r\0")
    assert "\x1b" not in shown and "\r" not in shown
    assert shown == "evil \\x1b[2Jcleared \\r"


def test_an_empty_cmdline_is_a_question_mark() -> None:
    assert command_line(b"") == "?"   # a kernel thread or a zombie
