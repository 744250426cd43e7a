"""The printable sheet of a class's join links, for parents: each pupil's name, personal
link and QR code, A4, two cards a row, no card split across pages."""

from __future__ import annotations

import html

import segno

from edge.access.links import Link

STYLE = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #111; margin: 0; }
h1 { font-size: 15pt; margin: 0 0 2mm; }
.note { font-size: 9.5pt; margin: 0 0 5mm; }
.cards { display: grid; grid-template-columns: 1fr 1fr; gap: 4mm; }
.card { border: 1px dashed #777; padding: 4mm; display: flex; gap: 4mm; align-items: center;
        break-inside: avoid; page-break-inside: avoid; }
.card svg { width: 34mm; height: 34mm; flex: none; }
.who { font-size: 12pt; font-weight: bold; }
.id, .url, .hint { font-size: 8.5pt; }
.url { word-break: break-all; font-family: "DejaVu Sans Mono", monospace; }
.class-link { grid-column: 1 / -1; border-style: solid; }
@media screen { body { max-width: 210mm; margin: 8mm auto; } }
"""


def _card(link: Link, school: str) -> str:
    qr = segno.make(link.url, error="m").svg_inline(scale=4, border=1)
    if link.kind == "class":
        who = f"Đường link chung của lớp {html.escape(link.class_name)}"
        hint = "Em mở đường link rồi chọn đúng tên mình. Chỉ dùng khi chưa có đường link riêng."
        extra = " class-link"
        ident = ""
    else:
        who = html.escape(link.name or "")
        hint = "Đường link riêng của em: không chia sẻ cho người khác."
        extra = ""
        ident = f'<div class="id">Mã định danh: {html.escape(link.student_id or "")}</div>'
    return (
        f'<div class="card{extra}">{qr}<div><div class="who">{who}</div>{ident}'
        f'<div class="id">{html.escape(school)} · lớp {html.escape(link.class_name)}</div>'
        f'<div class="url">{html.escape(link.url)}</div><div class="hint">{hint}</div></div></div>'
    )


def render_sheet(school: str, class_name: str, links: list[Link]) -> str:
    cards = "\n".join(_card(link, school) for link in links)
    title = f"Đường link học trực tuyến · lớp {html.escape(class_name)}"
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
        f'<p class="note">{html.escape(school)}. Khi con nghỉ học ở nhà, phụ huynh quét mã QR '
        "hoặc mở đường link bằng điện thoại để con theo dõi tiết học của lớp trực tuyến. "
        "Không cần cài ứng dụng.</p>"
        f'<div class="cards">{cards}</div></body></html>'
    )
