"""Strings from run folders are hostile: report.html, report.md and tables.tex show them only escaped.

Two `crs eval` folders (with hostile folder names) get summary.json fields a reader takes as free text
(policy, dataset, ranker, setting, notes) set to HTML, Markdown and LaTeX attacks; the report of them,
with a hostile title and an example dialogue and persona analysis naming hostile items and tags, is
rendered in every format and read back: by an HTML parser, by a CommonMark + tables renderer, and (where
``pdflatex`` is installed) by LaTeX itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from crs.app.evaluation import run_evaluation
from crs.report import build_report, render_latex, render_markdown
from crs.report.build import Report
from crs.report.examples import DialogueTurn, ExampleDialogue
from crs.report.formatting import ranker_text
from crs.report.persona import PersonaAnalysis
from crs.report.render import to_html, to_latex, to_markdown
from tests.crs.test_report_render import balanced

SCRIPT = "<script>alert(1)</script>"
POLICIES = (
    f"{SCRIPT} a|b\nc",
    'x" onmouseover="alert(1) `y` $\\input{/etc/passwd}$ [z](javascript:alert(2))',
)
DATASET = "data|set <img src=x onerror=alert(3)> 50% _off_"
RANKER = "\\input{passwd} \\write18{rm -rf ~} \\immediate & #1 ~$^{} ✓ | <b>r"  # no "/": shown whole
SETTING = "multi|ple\n\nchoice <b>s</b> 5%"
NOTE = "note <script>alert(4)</script> | pipe\n\nnew paragraph \\input{/etc/passwd} 1% ~"
TITLE = '<script>alert("t")</script> T|x\n\n50% _t_ \\input{/etc/passwd}'
ITEM = "Item ``` <script>alert(5)</script> | x"
TAG = "<3 & **tag** `t` \\input{/etc/passwd}"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    root = tmp_path_factory.mktemp("escaping")
    run_evaluation("ask-4", episodes=20, seed=1, out=root / "clean", show_progress=False)
    folders = []
    for index, policy in enumerate(POLICIES):
        folder = root / f"run {index}|<b>x</b> 5%_{{y}}"
        shutil.copytree(root / "clean", folder)
        summary = json.loads((folder / "summary.json").read_text())
        summary.update(
            policy=policy, policy_spec=policy, dataset=DATASET, ranker=RANKER, setting=SETTING, notes=[NOTE]
        )
        (folder / "summary.json").write_text(json.dumps(summary))
        folders.append(folder)
    built = build_report(folders, root / "report", title=TITLE, examples=1)
    turns = (
        DialogueTurn(f"[open] the user wants {ITEM}", "open"),
        DialogueTurn(f"[recommend] {ITEM}", "recommend", f"persona P0 · {TAG}: {TAG}", success=True),
    )
    built.examples = [ExampleDialogue(POLICIES[0], 0, f"{POLICIES[0]}: looking for {ITEM!r}", turns, True)]
    built.persona = [
        PersonaAnalysis(
            source=f"runs/{SCRIPT}`x`|y", dataset=DATASET, n_pairs=1, prototype_names=(f"P0 · {TAG}",),
            usage=np.ones(1), group_names=None, heatmap=None, agreement=None, chance=None,
            n_truth_personas=0, deletion_persona=None, deletion_aspect=None, notes=(f"{TAG} {SCRIPT}",),
        )
    ]  # fmt: skip
    return built


class _Tags(HTMLParser):
    """The tags and attributes of a page, and its text outside <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self._style = tag == "style"
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        self._style = False
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._style:
            self._cell.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def _no_injected_markup(parsed: _Tags) -> None:
    assert not parsed.tags & {"script", "a", "b", "iframe", "svg"}, parsed.tags
    assert not any(name.startswith("on") for name in parsed.attributes), parsed.attributes


def test_html_shows_every_input_string_escaped(report: Report) -> None:
    page = to_html(report)
    parsed = _parse(page)
    _no_injected_markup(parsed)
    assert page.count("<img ") == sum(len(plots) for plots in report.table_plots.values())  # plots only
    for raw in (SCRIPT, "<b>", "<img src=x", '" onmouseover="', "<script>alert"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "x&quot; onmouseover=&quot;alert(1)" in page
    assert "&lt;3 &amp;" in page  # the tag name, in the explanation and the persona analysis
    # a name's **x** and `x` stay text in a table cell: its label reads as it was written
    assert f"{SCRIPT} a|b\nc" in parsed.cells


def _markdown_html(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return str(markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))


def test_markdown_shows_every_input_string_escaped(report: Report) -> None:
    markdown = to_markdown(report)
    rendered = _markdown_html(markdown)  # raw HTML allowed, as GitHub and most renderers allow some
    parsed = _parse(rendered)
    _no_injected_markup(parsed)
    assert rendered.count("<img ") == sum(len(plots) for plots in report.table_plots.values())  # plots only
    assert "<script" not in rendered
    # no name breaks a table: each cell holds the whole name, and every line of a table the same cells
    for row in report.tables[0].rows:
        assert " ".join(row.label.splitlines()) in parsed.cells and ranker_text(row) in parsed.cells
    tables = re.findall(r"(?:^\|.*\n)+", markdown, flags=re.M)
    assert len(tables) == 2
    for table in tables:
        assert len({len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()}) == 1, table
    # the dialogue stays one code block however many backticks an item name holds
    assert f"[recommend] {ITEM}" in rendered.replace("&lt;", "<").replace("&gt;", ">")
    assert rendered.count("<pre><code>") == 1
    escaped = render_markdown.escape("a|b\n<i>_x_</i> lastfm_star")
    assert escaped == "a\\|b &lt;i&gt;\\_x\\_&lt;/i&gt; lastfm_star"
    # "&" is escaped only where it starts a character reference: "R&B" reads as itself in report.md
    name = "R&B &lt;b&gt; &#60;"
    assert render_markdown.escape(name) == "R&B &amp;lt;b&amp;gt; &amp;#60;"
    shown = _markdown_html(render_markdown.escape(name))
    assert "<b>" not in shown and "&lt;b" not in shown.replace("&amp;lt;b", "")
    assert shown.strip() == "<p>R&amp;B &amp;lt;b&amp;gt; &amp;#60;</p>"


def test_latex_shows_every_input_string_escaped(report: Report, tmp_path: Path) -> None:
    tex = to_latex(report)
    assert balanced(tex)
    commands = [
        (line, name) for line in tex.splitlines() for name in re.findall(r"(?<!\\)\\([a-z]+\d*)", line)
    ]
    dangerous = {"input", "write", "write18", "immediate", "include", "openout", "catcode", "def"}
    assert [name for line, name in commands if name in dangerous and not line.startswith("%")] == []
    assert r"\textbackslash{}input\{passwd\} \textbackslash{}write18\{rm -rf \textasciitilde{}\}" in tex
    assert r"50\% \_off\_" in tex and r"\& \#1 \textasciitilde{}\$\textasciicircum{}\{\}" in tex
    # a line break in a name neither ends the title's comment nor leaves a blank line in a caption
    head = tex[: tex.index(r"\begin{table}")].splitlines()
    assert all(line.startswith("%") or not line for line in head), head
    for float_ in re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.S):
        assert "\n\n" not in float_
    assert render_latex.escape("a\nb\r\tc|<>") == r"a b  c$\vert$$<$$>$"
    if shutil.which("pdflatex") is None:
        return  # LaTeX itself, where installed
    (tmp_path / "tables.tex").write_text(tex)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs,graphicx}\n"
        "\\begin{document}\\input{tables.tex}\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "/etc/passwd" not in (tmp_path / "paper.log").read_text(errors="replace")


def test_a_name_with_dollars_draws_as_text_in_the_plots(report: Report) -> None:
    # matplotlib reads "$...$" as math; "$\input{...}$" would have failed the whole report
    assert {plot.path.name for plots in report.table_plots.values() for plot in plots} >= {
        "sr_curves.png",
        "turns.png",
        "action_mix.png",
    }


def test_the_terminal_shows_names_and_paths_as_written_never_as_markup(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crs.cli import app

    run_evaluation("ask-4", episodes=20, seed=1, out=tmp_path / "clean", show_progress=False)
    folder = tmp_path / "hostile"
    shutil.copytree(tmp_path / "clean", folder)
    summary = json.loads((folder / "summary.json").read_text())
    policy = "[red]RED[/red][link=https://evil.example]click[/link] x[/]"
    summary.update(policy=policy, policy_spec=policy, dataset="[bold]set")
    (folder / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "o[red]x[/]"
    args = ["report", str(tmp_path / "clean"), str(folder), "--out", str(out), "--examples", "0"]
    result = CliRunner().invoke(app, [*args, "--no-persona"])
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())
    for written in (policy, "[bold]set", str(out / "report.html")):
        assert "".join(written.split()) in text


def test_bold_and_code_spans_never_cross_in_html_or_markdown() -> None:
    from crs.report.render_html import _md_inline
    from crs.report.render_markdown import _inline

    text = "policy **b `c** d` then `<i>`"
    assert _md_inline(text) == "policy <strong>b `c</strong> d<code> then </code>&lt;i&gt;`"
    assert _inline(text) == "policy **b \\`c** d` then `&lt;i&gt;\\`"


def test_a_returning_user_runs_memory_name_is_escaped_in_its_session_table(tmp_path: Path) -> None:
    """Guards against writing a session table's cells raw: the memory mode is summary.json's free text,
    so it must show as itself in report.html and report.md, never as markup or a broken table."""
    from tests.crs.test_report_hostile_inputs import lines, write_eval

    memory = f"{SCRIPT} m|x"
    folder = write_eval(tmp_path / "e", lines(20, sessions=3), sessions={"sessions": 3, "memory": memory})
    built = build_report([folder], tmp_path / "r", examples=0, persona=False)
    for page in (to_html(built), _markdown_html(to_markdown(built))):
        parsed = _parse(page)
        _no_injected_markup(parsed)
        assert memory in parsed.cells


def test_a_train_runs_name_is_escaped_where_its_missing_parts_are_listed(tmp_path: Path) -> None:
    """Guards against writing a train run's folder name raw in the learning-curve section's list of what
    a run lacks (a folder name is the user's free text)."""
    from crs.app.run_folder import RunRecord
    from crs.app.settings import make_settings

    name = "<img src=x onerror=alert(3)> a|b"
    run = tmp_path / name
    run.mkdir()
    RunRecord(settings=make_settings({"seed": 1}), name=name, versions={}, written="").write(run)
    built = build_report([run], tmp_path / "r", examples=0, persona=False)
    assert built.train_groups and all(r.missing for runs in built.train_groups.values() for r in runs)
    for page in (to_html(built), _markdown_html(to_markdown(built))):
        parsed = _parse(page)
        _no_injected_markup(parsed)
        assert "img" not in parsed.tags
        assert "&lt;img src=x onerror=alert(3)&gt; a|b" in page


def test_the_reason_a_table_is_separate_shows_the_names_it_holds_escaped(tmp_path: Path) -> None:
    """Guards against writing a separate table's reason raw: it names the other tables' rows (policy
    names, free text of summary.json)."""
    from tests.crs.test_report_hostile_inputs import lines, write_eval

    hostile = "<img src=x onerror=alert(1)> a|b"
    paths = [
        write_eval(tmp_path / "a", lines(), policy=hostile, policy_spec=hostile, conversations="list-a"),
        write_eval(tmp_path / "b", lines(), conversations="list-b"),
    ]
    built = build_report(paths, tmp_path / "r", examples=0, persona=False)
    assert len(built.tables) == 2 and hostile in built.tables[1].separated
    html, markdown = to_html(built), _markdown_html(to_markdown(built))
    for page in (html, markdown):
        parsed = _parse(page)
        _no_injected_markup(parsed)
        assert page.count("<img ") == sum(len(plots) for plots in built.table_plots.values())
        assert "not compared with &lt;img src=x onerror=alert(1)&gt; a|b" in page


@pytest.mark.parametrize("path", ["`runs`/x", "runs/x`", "``a` b"])
def test_a_path_that_starts_or_ends_with_a_backtick_stays_one_code_span(path: str) -> None:
    """Guards against a code span whose text touches its fence: without a space inside the fence, a
    leading or trailing backtick of the text joins the fence and the span reads as other text."""
    from crs.report.render_markdown import _code

    rendered = _markdown_html(f"- {_code(path)}")
    assert f"<code>{path}</code>" in rendered


def test_a_name_holding_bold_marks_cannot_inject_markup_through_them(tmp_path: Path) -> None:
    """Guards against escaping a sentence's text but not its bold spans: a policy named with ``**`` around
    HTML makes a bold span of the answer that names it, which must still show the HTML as text."""
    from tests.crs.test_report_hostile_inputs import lines, write_eval

    hostile = "x **<img src=x onerror=alert(1)>** y"
    folder = write_eval(tmp_path / "a", lines(), policy=hostile, policy_spec=hostile)
    built = build_report([folder], tmp_path / "r", examples=0, persona=False)
    assert hostile in built.answer
    for page in (to_html(built), _markdown_html(to_markdown(built))):
        parsed = _parse(page)
        _no_injected_markup(parsed)
        assert page.count("<img ") == sum(len(plots) for plots in built.table_plots.values())
        assert "<strong>&lt;img src=x onerror=alert(1)&gt;</strong>" in page


def test_an_example_turns_explanation_is_escaped_in_html(report: Report) -> None:
    """Guards against writing a turn's explanation raw: it names the ranker's tags and items, which come
    from the data (the fixture's tag is no tag to an HTML parser; this one is)."""
    import dataclasses

    turns = (DialogueTurn("[recommend] x", "recommend", f"persona P0 · {SCRIPT}", success=True),)
    examples = [ExampleDialogue(POLICIES[0], 0, "looking for x", turns, True)]
    page = to_html(dataclasses.replace(report, examples=examples))
    _no_injected_markup(_parse(page))
    assert "why: persona P0 · &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_verdicts_dataset_name_is_escaped_in_html(tmp_path: Path) -> None:
    """Guards against writing a verdict's dataset name raw in report.html's verdict badges (the dataset is
    summary.json's free text)."""
    from tests.crs.test_report_hostile_inputs import write_eval
    from tests.crs.test_report_mutants import records, train_with_test

    dataset = "<img src=x onerror=alert(3)> set"
    flags = {"full": (True, True), "pb": (False, True), "ab": (True, False), "bo": (False, False)}
    paths = []
    for name, (persona, aspect) in flags.items():
        run = train_with_test(
            tmp_path / "runs", name, 1, {}, persona_attention=persona, aspect_attention=aspect
        )
        lines = records([2] * 24 if name == "full" else [None] * 24)
        spec = {"policy": name, "policy_spec": str(run), "ranker": "run", "ranker_identity": "one ranker"}
        spec["dataset"] = dataset
        paths.append(write_eval(tmp_path / "eval" / name, lines, **spec))
    built = build_report(paths, tmp_path / "r", examples=0, persona=False)
    assert built.verdicts == {dataset: "yes"}
    page = to_html(built)
    _no_injected_markup(_parse(page))
    assert page.count("<img ") == sum(len(plots) for plots in built.table_plots.values())
    assert '<span class="verdict yes">&lt;img src=x onerror=alert(3)&gt; set: yes</span>' in page
