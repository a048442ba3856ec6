"""CLI tables and key/value blocks: aligned with CJK text, values verbatim, one line per row."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rich.cells import cell_len

from suifang.core.cli.output import print_kv, print_table


def test_columns_line_up_with_chinese_names(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(
        ["id", "patient", "status"],
        [[7, "张三丰", "open"], [12345, "Li Na", "closed"], [8, None, "开放"]],
    )
    header, rule, *rows = capsys.readouterr().out.splitlines()
    # Where the status column starts, counted in terminal cells (a hanzi takes two).
    start = cell_len(header[: header.index("status")])
    assert [
        cell_len(row[: row.index(word)])
        for row, word in zip(rows, ["open", "closed", "开放"], strict=True)
    ] == [start] * 3
    assert set(rule.replace(" ", "")) in ({"─"}, {"-"})
    assert len(rule.split()) == 3  # one rule per column, as every row has one word per column


def test_values_are_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["text"], [["[bold]胸口疼[/bold] :smile:"]])
    assert "[bold]胸口疼[/bold] :smile:" in capsys.readouterr().out


def test_a_wide_row_stays_on_one_line_in_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    long = "postgresql+psycopg://suifang:***@db.example:5432/suifang " * 5
    print_table(["setting", "value"], [["SUIFANG_DATABASE_URL", long.strip()]])
    print_kv([("SUIFANG_DATABASE_URL", long.strip())])
    out = capsys.readouterr().out
    assert out.count(long.strip()) == 2
    assert all(line == line.rstrip() for line in out.splitlines())


def test_an_empty_table_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["id"], [], empty="(no tickets)")
    assert capsys.readouterr().out == "(no tickets)\n"


def test_key_value_pairs_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    print_kv([("患者", "张三"), ("journey", 42), ("ended", None)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["患者", "journey", "ended"]
    assert cell_len(lines[0][: lines[0].index("张三")]) == lines[1].index("42")


def test_help_shows_on_off_flags_as_flags(cli: Callable[..., tuple[int, str, str]]) -> None:
    for command in (("pathways", "list"), ("tickets", "list"), ("pathways", "migrate")):
        code, out, _ = cli(*command, "--help")
        assert code == 0
        assert "<bool>" not in out, command
        assert "--json" in out or "--open" in out or "--dry-run" in out
