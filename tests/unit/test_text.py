"""Text that is not valid Unicode is shown as the user typed it (escaped), and valid text is left alone."""

from __future__ import annotations

from kagent_mlflow.text import for_terminal, printable, printable_data


def test_undecodable_command_line_bytes_show_as_typed() -> None:
    typed = b"bad \xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of $'bad \xff\xfe' in argv
    assert printable(typed) == "bad \\xff\\xfe"


def test_lone_surrogates_show_escaped_and_valid_text_is_unchanged() -> None:
    assert printable("x \ud800") == "x \\ud800"
    assert printable("héllo ✓ 😀") == "héllo ✓ 😀"
    assert printable_data({"k\ud800": ["x \udcff", 3, None]}) == {"k\\ud800": ["x \\xff", 3, None]}


def test_for_terminal_escapes_control_sequences_but_keeps_lines() -> None:
    hostile = "ok\x1b[2J\x1b]0;pwned\x07 line\r\nnext\ttab \x9b31m \x7f"
    assert for_terminal(hostile) == "ok\\x1b[2J\\x1b]0;pwned\\x07 line\\x0d\nnext\ttab \\x9b31m \\x7f"
    assert for_terminal("bad \udcff ✓") == "bad \\xff ✓"
