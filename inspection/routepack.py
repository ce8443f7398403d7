"""The offline route pack: one self-contained HTML file a technician can open without a network
or print: each step's equipment, why it is on the route, its image (embedded as a data: URI),
the live values at the time the pack was made, and the checklist as a form to fill in."""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Mapping
from pathlib import Path

from inspection.routes import Route, RouteStep

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330;max-width:60rem}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin:0 0 .3rem}
.meta{color:#556;font-size:.85rem} .step{border:1px solid #ccd;border-radius:6px;padding:.8rem;margin:1rem 0;
page-break-inside:avoid} .state-alarm,.state-overloaded{color:#b00} .state-warning{color:#a60}
.state-unknown{color:#739} img{max-width:100%;border:1px solid #dde;margin:.4rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem} td,th{border:1px solid #ccd;padding:.3rem;
vertical-align:top;text-align:left} th{background:#eef} input[type=text]{width:6rem}
textarea{width:100%;height:3rem} ul{margin:.2rem 0 .4rem 1.2rem;padding:0}
@media print{.step{border-color:#888} input,textarea{border:1px solid #888}}
"""


def data_uri(path: Path) -> str:
    """A file as a data: URI (images are embedded so the pack needs nothing else)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _step_html(step: RouteStep, image: Path | None) -> str:
    e = html.escape
    out = [
        f'<section class="step" id="step-{step.number}">',
        f"<h2>{step.number}. {e(step.asset)} <small>({e(step.kind)})</small></h2>",
        f'<div class="meta">state <b class="state-{e(step.state)}">{e(step.state)}</b> · risk {step.risk:.3g} '
        f"(likelihood {step.likelihood:.2f} × {step.consequence_mw:.2f} MW) · tier {step.tier} · "
        f"position ({step.position[0]:.1f}, {step.position[1]:.1f}) m · walk {step.walk_m:.0f} m</div>",
        "<ul>" + "".join(f"<li>{e(w)}</li>" for w in step.why) + "</ul>",
    ]
    if image is not None and image.is_file():
        out.append(f'<img alt="{e(step.asset)}" src="{data_uri(image)}">')
    else:
        out.append(
            '<p class="meta no-view">No step view could be rendered for this step: see the substation view above.</p>'
        )
    out.append(
        f'<form name="step-{step.number}"><table><tr><th>check</th><th>pass</th><th>fail</th>'
        "<th>reading</th><th>compare with (live)</th></tr>"
    )
    for c in step.checks:
        name = f"s{step.number}-{c.key}"
        reading = f'<input type="text" name="{name}-reading"> {e(c.unit)}' if c.reading else ""
        compare = "<br>".join(f"{e(k)} = {v:.4g}" for k, v in c.compare.items())
        out.append(
            f"<tr><td>{e(c.text)}</td><td><input type=radio name='{name}' value=pass></td>"
            f"<td><input type=radio name='{name}' value=fail></td><td>{reading}</td><td>{compare}</td></tr>"
        )
    out.append(f'</table><p>Notes</p><textarea name="s{step.number}-notes"></textarea></form></section>')
    return "\n".join(out)


def route_pack_html(route: Route, images: Mapping[str, Path] | None = None, overview: Path | None = None) -> str:
    """The route as one HTML document; `images` maps an asset to its step image, `overview` is
    the substation render shown at the top."""
    e = html.escape
    images = images or {}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Inspection route {e(route.substation)} {e(route.generated)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Inspection route: substation {e(route.substation)}</h1>",
        f'<div class="meta">generated {e(route.generated)} (UTC) from live data · {len(route.steps)} steps · '
        f"{route.length_m:.0f} m walk</div>",
        f'<p class="meta">Order: {e(route.rule)}</p>',
    ]
    if overview is not None and overview.is_file():
        parts.append(f'<img alt="substation {e(route.substation)}" src="{data_uri(overview)}">')
    parts += [_step_html(s, images.get(s.asset)) for s in route.steps]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_route_pack(
    route: Route, path: Path, images: Mapping[str, Path] | None = None, overview: Path | None = None
) -> Path:
    """Write the route pack to `path` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(route_pack_html(route, images, overview), encoding="utf-8")
    return path
