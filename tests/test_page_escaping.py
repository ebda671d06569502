"""report.html escapes whatever it embeds: names with markup in them (class names, run folder names, the settings a
sweep varies) show as text and leave every chart's data intact, in the page's markup and in its <script> blocks.

In a <script> block the HTML parser ends the block at "</script" and, after "<!--", reads a "<script" as the start
of a nested block (so a later "</script>" no longer ends it): the charts' JSON must hold no "<" at all.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from job.analysis.report import FINISHED, write_comparison, write_run_report
from tests.test_damaged_runs import synthetic_run

# Names that would end, open or comment out markup and scripts, quotes and ampersands, and JavaScript's own line
# terminators (valid in JSON strings, not in older JavaScript string literals).
NAMES = [
    "<!--<script>",
    "</script>",
    "<script>alert(1)</script>",
    "<!-- -->",
    "\"double\" & 'single'",
    "&amp; &lt;",
    "a\u2028b\u2029c",
    "]]></svg>",
]
FOLDER_NAMES = [name for name in NAMES if "/" not in name]  # a folder name cannot hold a slash


def script_blocks(page: str) -> dict[str, str]:
    """The JSON <script> blocks of a page by id, cut where an HTML parser ends each one (its first "</script")."""
    return dict(re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script', page, re.DOTALL))


def markup(page: str) -> str:
    return re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)


def charts(page: str) -> dict[str, dict]:
    return {chart["id"]: chart["figure"] for chart in json.loads(script_blocks(page)["charts"])}


def assert_scripts_hold_no_markup(page: str) -> None:
    for block in script_blocks(page).values():
        assert "<" not in block and ">" not in block and "&" not in block
        json.loads(block)  # whole: the block was not cut short


def test_class_names_with_markup_round_trip_through_the_run_pages_chart(tmp_path):
    run = synthetic_run(tmp_path / "run", class_names=NAMES)
    page = write_run_report(run, FINISHED).read_text()
    assert_scripts_hold_no_markup(page)
    assert charts(page)["chart-class_shares"]["data"][0]["x"] == NAMES
    assert "<!--<script>" not in markup(page) and "</script>" not in markup(page)


def test_a_run_folder_named_with_markup_is_text_in_the_page_and_intact_in_its_data(tmp_path):
    for name in FOLDER_NAMES:
        run = synthetic_run(tmp_path / name)
        page = write_run_report(run, FINISHED).read_text()
        assert_scripts_hold_no_markup(page)
        body = markup(page)
        assert name not in body if re.search(r"[<>&\"']", name) else name in body
        assert f"<h1>{_escaped(name)}</h1>" in body


def test_the_comparison_keeps_run_names_and_the_settings_they_vary_intact(tmp_path):
    # A sweep's runs differ by settings shown in the ranking: here --data, a path that may hold any text.
    runs = [synthetic_run(tmp_path / name, data=f"data/{name}.npz") for name in FOLDER_NAMES]
    page = write_comparison(runs, tmp_path / "compare.html").read_text()
    assert_scripts_hold_no_markup(page)
    for figure in charts(page).values():
        assert [trace["name"] for trace in figure["data"]] == FOLDER_NAMES
    ranking = markup(page)[markup(page).index('id="ranking"') :]
    for name in FOLDER_NAMES:
        assert f"<th>{_escaped(name)}</th>" in ranking and f"<td>data/{_escaped(name)}.npz</td>" in ranking


def _escaped(text: str) -> str:
    """Text as jinja's autoescape writes it."""
    import markupsafe

    return str(markupsafe.escape(text))


@pytest.mark.slow
def test_a_comparison_of_runs_named_with_markup_draws_every_chart_in_chromium(tmp_path):
    from tests.test_report import CHROMIUM, console_messages, open_in_chromium

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    # No "-->" among them: after "<!--<script>", it would put the parser back on track.
    names = [name for name in FOLDER_NAMES if "-->" not in name]
    runs = [synthetic_run(tmp_path / name, class_names=names) for name in names]
    page = write_comparison(runs, tmp_path / "compare.html")
    result = open_in_chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result) == []
    drawn = re.findall(r'<div class="chart[^"]*" id="([^"]+)"[^>]*>.*?class="main-svg"', result.stdout, re.DOTALL)
    assert set(drawn) == set(charts(page.read_text())) and drawn
    assert result.stdout.count('class="main-svg"') >= len(charts(page.read_text()))


def test_a_run_folder_whose_name_is_not_utf8_still_makes_both_pages(tmp_path):
    name = os.fsdecode(b"run-\xff")  # a byte that is no UTF-8: Python holds it as a lone surrogate
    run = synthetic_run(tmp_path / name, class_names=["a\udcffb", "c"])
    assert "<h1>run-\\udcff</h1>" in write_run_report(run, FINISHED).read_text()
    page = write_comparison([run], tmp_path / "compare.html").read_text()
    assert_scripts_hold_no_markup(page)
    assert {trace["name"] for figure in charts(page).values() for trace in figure["data"]} == {name}
