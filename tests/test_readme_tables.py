"""bench/readme_tables.py rewrites only the tables of the README's reproduce block."""

import pytest

from bench import readme_tables

README = """# Title
<!-- reproduce tables: ... -->
### The suite
Prose written by hand.

#### Table 5: old
| old |
<!-- end reproduce tables -->
After.
"""


def test_tables_replace_only_the_part_after_the_prose(tmp_path):
    (tmp_path / "table5").mkdir()
    (tmp_path / "table5" / "table.md").write_text("### Table 5: new\n\n| new |\n")
    (tmp_path / "fig5").mkdir()
    (tmp_path / "fig5" / "table.md").write_text("### Fig. 5: pool\n\n| pool |\n")
    out = readme_tables.replace_tables(README, readme_tables.tables_block(tmp_path, ["table5", "fig5"]))
    assert out == README.replace("#### Table 5: old\n| old |\n",
                                 "#### Table 5: new\n\n| new |\n\n#### Fig. 5: pool\n\n| pool |\n")


def test_missing_table_or_block_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="table6"):
        readme_tables.tables_block(tmp_path, ["table6"])
    with pytest.raises(ValueError, match="no '<!-- reproduce tables"):
        readme_tables.replace_tables("# no block\n", "")
