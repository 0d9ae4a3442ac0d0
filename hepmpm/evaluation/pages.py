"""Result pages: a markdown summary and a self-contained HTML page with the same sections.

Studies and the quickstart describe their results as :class:`Section` s (text, a table, PNG
figures); :func:`write_page` writes ``NAME.md`` (figures linked by relative path, for a
repository or a terminal) and ``NAME.html`` (figures embedded, one file to open or mail).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hepmpm.atomic import atomic_path


@dataclass(frozen=True)
class Section:
    """A heading, paragraphs, an optional table (header + rows) and figures (PNG paths)."""

    title: str
    text: Sequence[str] = ()
    table: tuple[Sequence[str], Sequence[Sequence[object]]] | None = None
    figures: Sequence[Path] = field(default_factory=tuple)


def format_cell(value: object) -> str:
    """Numbers to 3 decimals (3 significant digits below 0.01, e.g. a learning rate of 3e-4,
    and from 1000 up), ``None`` as an en dash, the rest as text."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if 0.01 <= abs(value) < 1000 or value == 0 else f"{value:.3g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(title: str, sections: Sequence[Section], directory: Path) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += list(section.text)
        if section.table is not None:
            parts.append(markdown_table(*section.table))
        for figure in section.figures:
            relative = Path(figure).resolve().relative_to(directory.resolve())
            parts.append(f"![{Path(figure).stem}]({relative.as_posix()})")
    return "\n\n".join(parts) + "\n"


def _html(title: str, sections: Sequence[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{html.escape(paragraph)}</p>" for paragraph in section.text]
        if section.table is not None:
            header, rows = section.table
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            lines = [f"<tr>{cells}</tr>"]
            for row in rows:
                cells = "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row)
                lines.append(f"<tr>{cells}</tr>")
            body.append("<table>" + "".join(lines) + "</table>")
        for figure in section.figures:
            data = base64.b64encode(Path(figure).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(Path(figure).stem)}" '
                f'src="data:image/png;base64,{data}"></figure>'
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;"
        "text-align:right}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_page(
    directory: Path, name: str, title: str, sections: Sequence[Section]
) -> tuple[Path, Path]:
    """Write ``directory/NAME.md`` and ``directory/NAME.html`` (atomically); their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    markdown, page = directory / f"{name}.md", directory / f"{name}.html"
    with atomic_path(markdown) as tmp:
        tmp.write_text(_markdown(title, sections, directory))
    with atomic_path(page) as tmp:
        tmp.write_text(_html(title, sections))
    return markdown, page
