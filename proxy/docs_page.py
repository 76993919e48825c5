"""The OpenAPI document as one static HTML page: no script, no stylesheet from elsewhere.

Users may be offline, so the page carries everything it needs; schemas are shown as
indented JSON with every ``$ref`` turned into a link to the schema it names.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

REF_LINK = re.compile(r"&quot;#/components/schemas/([\w.-]+)&quot;")
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; }
pre { background: #f5f5f5; padding: .6rem; overflow-x: auto; font-size: 13px; }
.op { border-top: 1px solid #ccc; padding-top: .5rem; }
.method { font-weight: bold; text-transform: uppercase; font-family: monospace; }
.path { font-family: monospace; font-weight: bold; }
.public { color: #070; font-size: 13px; }
td, th { text-align: left; padding: .1rem .6rem .1rem 0; vertical-align: top; }
"""


def render(document: dict[str, Any]) -> str:
    """The page for an OpenAPI ``document``."""
    info = document["info"]
    ops = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(info['title'])} API</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        f"<p>{_text(info.get('description', ''))}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>',
        "<h2>Operations</h2><ul>",
        *(
            f'<li><a href="#{_anchor(op)}"><span class="method">{method}</span> '
            f'<span class="path">{escape(path)}</span></a> — {escape(op.get("summary", ""))}</li>'
            for path, method, op in ops
        ),
        "</ul>",
        *(_operation(path, method, op) for path, method, op in ops),
        "<h2>Schemas</h2>",
        *(
            f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>{_json(schema)}'
            for name, schema in document["components"]["schemas"].items()
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    html = [
        f'<section class="op" id="{_anchor(op)}">',
        f'<h3><span class="method">{method}</span> <span class="path">{escape(path)}</span></h3>',
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    if op.get("description"):
        html.append(f"<p>{_text(op['description'])}</p>")
    if op.get("security") == []:
        html.append('<p class="public">No API key needed.</p>')
    params = op.get("parameters", [])
    if params:
        html.append("<h4>Parameters</h4><table>")
        html += [
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'required' if p.get('required') else 'optional'}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in params
        ]
        html.append("</table>")
    body = op.get("requestBody")
    if body:
        required = "required" if body.get("required") else "optional"
        html.append(f"<h4>Request body ({required})</h4>")
        html += [_json(c["schema"]) for c in body["content"].values()]
    html.append("<h4>Responses</h4><table>")
    for status, answer in op["responses"].items():
        media = answer.get("content", {})
        schemas = " ".join(_json(c.get("schema", {}), inline=True) for c in media.values())
        html.append(
            f"<tr><td>{escape(status)}</td><td>{escape(answer['description'])}</td>"
            f"<td>{escape(', '.join(media))}</td><td>{schemas}</td></tr>"
        )
    html.append("</table></section>")
    return "\n".join(html)


def _anchor(op: dict[str, Any]) -> str:
    return "op-" + escape(str(op.get("operationId", "")))


def _text(text: str) -> str:
    """Plain text with `code` spans, as the descriptions are written."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text)).replace("\n\n", "</p><p>")


def _json(schema: Any, inline: bool = False) -> str:
    text = escape(json.dumps(schema, indent=None if inline else 2, ensure_ascii=False))
    linked = REF_LINK.sub(r'<a href="#schema-\1">\1</a>', text)
    return f"<code>{linked}</code>" if inline else f"<pre>{linked}</pre>"
