import pytest

from depthq.tables import markdown_table


def test_markdown_table_pads_and_aligns_columns():
    table = markdown_table(["name", "n"], [["a", 1], ["bbb", 22]], align="lr")
    assert table.splitlines() == [
        "| name |  n |",
        "|------|----|",
        "| a    |  1 |",
        "| bbb  | 22 |",
    ]


def test_markdown_table_rejects_ragged_rows_and_bad_alignment():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [[1, 2]])
    with pytest.raises(ValueError, match="align needs"):
        markdown_table(["a", "b"], [[1, 2]], align="lcr")
