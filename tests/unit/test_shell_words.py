"""When a command line can run as its program and when it needs the shell."""

from pgdurable.translators.shell import argv


def test_a_plain_command_runs_as_its_program():
    assert argv("sleep 5") == ("sleep", "5")


def test_shell_syntax_needs_the_shell():
    assert argv("echo $HOME", "/bin/bash") == ("/bin/bash", "-c", "echo $HOME")


def test_a_builtin_has_no_program_so_it_runs_in_the_shell():
    # `exit` and `cd` exist only inside a shell: run as programs they fail "not found"
    for line in ("exit 0", "cd /tmp", "export A=1", ": nothing", "set -e"):
        assert argv(line) == ("/bin/sh", "-c", line), line
