"""HTML contact sheet: one self-contained file a reviewer can open, scroll and print.

No external URLs, no JavaScript: thumbnails are inline base64 JPEGs, CSS is in the file, and a
Content-Security-Policy forbids anything else, so even an escaping slip could not load or run code.
"""
from __future__ import annotations

import base64
import functools
import io
import os
import re
from html import escape
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps

from photocheck.reports._atomic import atomic_open
from photocheck.reports.json_report import SIGN_OFF_NOTE, photocheck_version
from photocheck.results import DISPLAY_ORDER, FaceResult, FaceStatus, PhotoResult, ScanSummary, Verdict, display_rank

_BOX_CLASS = {
    FaceStatus.LISTED: "listed",
    FaceStatus.UNCERTAIN: "review",
    FaceStatus.TOO_SMALL: "review",
    FaceStatus.UNPROTECTED: "review",
    FaceStatus.NO_MATCH: "nomatch",
}

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#111;background:#f4f4f4}
header{background:#fff;border:1px solid #ccc;padding:12px 16px;margin-bottom:16px}
h1{font-size:20px;margin:0 0 8px}
.note{border:2px solid #b00000;background:#fff3f3;padding:8px 12px;font-weight:600}
.warn{border:2px solid #b36b00;background:#fff8e6;padding:8px 12px}
table.info{border-collapse:collapse;margin:8px 0}
table.info th{text-align:left;padding:2px 12px 2px 0;vertical-align:top;color:#444;font-weight:600}
table.info td{padding:2px 0;word-break:break-all}
.counts span{margin-right:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ccc;border-top:6px solid #888;break-inside:avoid;page-break-inside:avoid}
.card.blocked{border-top-color:#d00000}.card.error{border-top-color:#6a1b9a}
.card.review{border-top-color:#e69500}.card.clear{border-top-color:#2e7d32}
.thumb{position:relative;line-height:0;background:#ddd}
.thumb img{display:block;width:100%;height:auto}
.missing{display:flex;align-items:center;justify-content:center;min-height:160px;line-height:1.4;
  padding:12px;color:#6a1b9a;text-align:center;word-break:break-word}
.box{position:absolute;border-style:solid}
.box.listed{border:3px solid #d00000}
.box.review{border:2px solid #e69500}
.box.nomatch{border:1px dashed #999}
.box span{position:absolute;left:-3px;bottom:100%;font:600 11px/1.3 system-ui,sans-serif;
  padding:0 3px;white-space:nowrap;color:#fff}
.box.below span{bottom:auto;top:100%}
.box.listed span{background:#d00000}.box.review span{background:#b36b00}
.meta{padding:8px 10px}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;font-weight:700;
  text-transform:uppercase;font-size:12px}
.badge.blocked{background:#d00000}.badge.error{background:#6a1b9a}
.badge.review{background:#b36b00}.badge.clear{background:#2e7d32}
.meta ul{margin:6px 0;padding-left:18px}
.path{font-family:ui-monospace,Consolas,monospace;font-size:12px;word-break:break-all;margin:6px 0 0;color:#333}
.err{color:#6a1b9a;word-break:break-word;font-weight:600}
details.tech{color:#555;font-size:12px;word-break:break-word}
.faces{color:#333;margin:6px 0 0}
.signoff{margin:6px 0 0;font-weight:600}
.signoff.pending{color:#b36b00}.signoff.approved,.signoff.redacted{color:#2e7d32}.signoff.rejected{color:#d00000}
.group{grid-column:1/-1;border:2px dashed #888;padding:8px;background:#fafafa}
.group.blocked{border-color:#d00000}.group.error{border-color:#6a1b9a}.group.review{border-color:#e69500}
.group h2{font-size:15px;margin:0 0 8px}
@media print{
  body{background:#fff;margin:0}
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  .grid{grid-template-columns:repeat(3,1fr)}
}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_html(summary: ScanSummary, path: str | os.PathLike, *, thumbnail_px: int = 480) -> Path:
    """Write the contact sheet atomically; returns the path written.

    Cards are written one at a time so memory stays bounded for thousands of photos; an
    unreadable or deleted photo gets a placeholder card instead of failing the report.
    """
    # Burst groups are shown together, in the place of their worst member; inside a group (and
    # between ungrouped photos) the worst verdict comes first. Every card keeps its own verdict.
    groups: dict[object, list[PhotoResult]] = {}
    for i, photo in enumerate(summary.photos):
        key = photo.group if (photo.group is not None and photo.group_size > 1) else ("single", i)
        groups.setdefault(key, []).append(photo)
    blocks = []
    for members in groups.values():
        members = sorted(members, key=lambda p: display_rank(p.verdict))  # stable
        blocks.append((display_rank(members[0].verdict), members))
    blocks.sort(key=lambda b: b[0])  # stable
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        _write_header(f, summary)
        for _, members in blocks:
            if len(members) > 1:
                worst = members[0].verdict
                f.write(f'<section class="group {escape(str(worst))}"><h2>Burst group {members[0].group}: '
                        f'{len(members)} near-identical photos — group verdict '
                        f'<span class="badge {escape(str(worst))}">{escape(str(worst))}</span> '
                        f'(each photo keeps its own verdict below)</h2>\n<div class="grid">\n')
                for photo in members:
                    f.write(_card(photo, thumbnail_px))
                f.write("</div></section>\n")
            else:
                f.write(_card(members[0], thumbnail_px))
        f.write("</main>\n</body>\n</html>\n")
    return Path(path)


def _write_header(f: IO[str], s: ScanSummary) -> None:
    e = escape
    counts = s.counts()
    title = f"photocheck contact sheet — scan {s.scan_id if s.scan_id is not None else '(unsaved)'}"
    rows = [
        ("Scan", s.scan_id if s.scan_id is not None else "—"),
        ("Owner", s.owner),
        ("Started", s.started_at),
        ("Finished", s.finished_at or "not finished"),
        ("Roots", ", ".join(str(r) for r in s.roots)),
        ("Listed students", s.listed_students),
        ("Channel", s.channel or "every opt-out (strictest)"),
        ("Model", _model_line(s.model)),
        ("Thresholds", _thresholds_line(s.thresholds)),
        ("photocheck", photocheck_version()),
    ]
    f.write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    f.write(f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n')
    f.write('<meta name="viewport" content="width=device-width,initial-scale=1">\n')
    f.write(f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<header>\n")
    f.write(f"<h1>{e(title)}</h1>\n")
    f.write(f'<p class="note">{e(SIGN_OFF_NOTE)}</p>\n')
    if s.unprotected_students:
        f.write('<p class="warn">Listed students without a usable reference photo (every photo with '
                f"a face needs review): {e(', '.join(s.unprotected_students))}</p>\n")
    f.write('<table class="info">\n')
    for k, v in rows:
        f.write(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>\n")
    f.write("</table>\n<p class=\"counts\">")
    for v in DISPLAY_ORDER:
        f.write(f'<span><span class="badge {v.value}">{v.value}</span> {counts.get(v.value, 0)}</span>')
    f.write(f"<span>total {len(s.photos)}</span></p>\n</header>\n<main class=\"grid\">\n")


def _model_line(model: dict) -> str:
    """Names and versions only: the full provenance (hashes, settings) is in the JSON report."""
    parts = []
    for role in ("detector", "encoder"):
        m = model.get(role)
        if isinstance(m, dict):
            parts.append(f"{role}: {m.get('name', '?')} {m.get('version') or m.get('source_version') or ''}".strip())
    return "; ".join(parts) or "—"


def _thresholds_line(thresholds: dict) -> str:
    """The numbers a reviewer may ask about; every threshold is in the JSON report."""
    match, quality = thresholds.get("match", {}), thresholds.get("quality", {})
    if not match and not quality:
        return ", ".join(f"{k}={v}" for k, v in thresholds.items()) or "—"
    return (f"blocked at distance ≤ {match.get('block_distance', '?')}, review ≤ {match.get('review_distance', '?')}; "
            f"faces under {quality.get('min_face_px', '?')} px or sharpness {quality.get('min_sharpness', '?')} "
            "go to review")


def _clean(text: str) -> str:
    # Python object reprs from decoders ("<_io.BytesIO object at 0x...>") mean nothing to anyone.
    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the file", text)


def explain_error(error: str) -> str:
    """One sentence a school user understands for why a file could not be checked."""
    from photocheck.images import effective_pixel_limit

    m = re.match(r"decompression bomb: (?:(\d+)x(\d+) = )?(\d+) MP exceeds the (\d+) MP limit", error)
    if m:
        size = f"{int(m.group(1)):,} × {int(m.group(2)):,} pixels, " if m.group(1) else ""
        return (f"Too big to check: {size}{m.group(3)} megapixels; photocheck reads photos of up to "
                f"{m.group(4)} megapixels. Save a smaller copy and scan that.")
    if error.startswith("decompression bomb"):
        return (f"Too big to check: more than {effective_pixel_limit() / 1e6:.0f} megapixels, the most photocheck "
                "reads. Save a smaller copy and scan that.")
    if error == "not an image (zero bytes)":
        return "The file is empty (0 bytes): copy it again from the camera or the original folder."
    if error.startswith("not an image"):
        return "Not a photo: photocheck does not recognise this file as a picture."
    if error.startswith("cannot list folder"):
        return ("This folder could not be opened (no permission, or a network share dropped): nothing in it was "
                "checked. Fix access and scan again.")
    if error.startswith("cannot examine"):
        return "This file or folder could not be examined (no permission, or it is gone): it was not checked."
    if error.startswith(("changed while being screened", "vanished while being screened",
                         "cannot read again after screening")):
        return "The file changed or disappeared while it was being checked: scan it again once it is final."
    if error.startswith("cannot read file"):
        return "The file could not be opened: check that it is still there and that you may read it."
    if re.match(r"(corrupt|truncated) ", error) or error.startswith("cannot decode image"):
        return ("The file is damaged or incomplete (for example cut short while copying): copy it again from the "
                "original and scan again.")
    if error.startswith(("multi-page", "animated")) or re.match(r"\S+ with \d+ images", error):
        return f"Several pictures in one file ({error.split(':')[0]}): save each as its own photo and scan those."
    if error.startswith("HEIF support unavailable") or "support is not available" in error:
        return "This kind of file cannot be read on this computer: convert it to JPEG and scan that."
    if "EXIF" in error:
        return ("The photo's orientation data is damaged, so its faces cannot be checked the right way up: "
                "re-save it with a photo editor and scan again.")
    if error.startswith("out of memory"):
        return "The computer ran out of memory reading this photo: save a smaller copy and scan that."
    if error.startswith("screening crashed"):
        return "Checking this photo crashed photocheck's worker: the file may be damaged or too large."
    return "This file could not be checked."


def _card(photo: PhotoResult, px: int) -> str:
    e = escape
    verdict = str(photo.verdict)
    if photo.verdict == Verdict.ERROR:
        # Never decoded for a preview: it could not be read when screened (a bomb must not be opened twice).
        thumb = '<div class="thumb missing">No preview: photocheck could not read this file.</div>'
    elif photo.kind == "video":
        thumb = _clip_frames(photo, px)
    else:
        thumb = _thumb_html(photo, px)
    parts = [f'<article class="card {e(verdict)}">', thumb, '<div class="meta">',
             f'<span class="badge {e(verdict)}">{e(verdict)}</span>']
    reasons = [r for r in photo.reasons if r != photo.error]  # the error is shown once, below
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in reasons) + "</ul>")
    if photo.error:
        plain = explain_error(photo.error)
        parts.append(f'<p class="err">{e(plain)} Not checked: it must not be published as is.</p>'
                     f'<details class="tech"><summary>Technical detail</summary>{e(_clean(photo.error))}</details>')
    if photo.faces or photo.verdict != Verdict.ERROR:  # an error photo was never searched for faces
        parts.append(f'<p class="faces">{e(faces_text(photo.faces))}</p>')
    state = photo.signoff.split(" ", 1)[0]
    ident = f"photo {photo.photo_id} · " if photo.photo_id is not None else ""
    parts.append(f'<p class="signoff {e(state)}">{e(ident)}sign-off: {e(photo.signoff)}</p>')
    parts.append(f'<p class="path" title="sha256 {e(photo.sha256 or "unknown")}">{e(str(photo.path))}</p>')
    parts.append("</div></article>\n")
    return "".join(parts)


MAX_CLIP_FRAMES = 4  # frames shown per clip: the worst flagged faces first


def clip_frame_times(faces: list[FaceResult], limit: int = MAX_CLIP_FRAMES) -> list[float]:
    """The times of a clip's frames to show: those of its listed faces, then of its review faces
    (up to `limit`); its first frame when none is flagged."""
    order = {"listed": 0, "review": 1}
    flagged = sorted((f for f in faces if f.time_s is not None and _BOX_CLASS.get(f.status) in order),
                     key=lambda f: (order[_BOX_CLASS[f.status]], f.time_s))
    return list(dict.fromkeys(f.time_s for f in flagged))[:limit] or [0.0]


def _clip_frames(photo: PhotoResult, px: int) -> str:
    """A clip's card pictures: the frame of each listed or review face (up to MAX_CLIP_FRAMES,
    listed first) with the faces seen in that frame boxed and its time; else its first frame."""
    from photocheck.video import frame_at

    times = clip_frame_times(photo.faces)
    out = []
    for t in times:
        try:
            rgb = frame_at(photo.path, t, max_side=px)
        except Exception:  # gone, unreadable: the report must still be written
            out.append(f'<div class="thumb missing">No preview of the frame at {t:.2f} s: the clip can no longer '
                       "be read.</div>")
            continue
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=80, optimize=True)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        w, h = (photo.width, photo.height) if photo.width and photo.height else (rgb.shape[1], rgb.shape[0])
        boxes = "".join(face_box_html(f, w, h) for f in photo.faces if f.time_s == t)
        out.append(f'<div class="thumb"><img src="{uri}" alt="frame at {t:.2f} s of {escape(str(photo.path))}">'
                   f'{boxes}</div><p class="frame-time">at {t:.2f} s of {photo.duration_s or 0:.1f} s</p>')
    return "".join(out)


def _thumb_html(photo: PhotoResult, px: int) -> str:
    e = escape
    try:
        data_uri, full = _thumbnail(photo.path, px)
    except FileNotFoundError:
        return '<div class="thumb missing">No preview: the file is no longer there.</div>'
    except Exception:  # changed since the scan, odd mode…: the report must still be written
        return '<div class="thumb missing">No preview: the file can no longer be read.</div>'
    # Boxes are in upright full-size pixels; % positions make them independent of thumbnail
    # and display size, and keep the thumbnail itself clean.
    w, h = (photo.width, photo.height) if photo.width and photo.height else full
    boxes = "".join(face_box_html(face, w, h) for face in photo.faces)
    return f'<div class="thumb"><img src="{data_uri}" alt="thumbnail of {e(str(photo.path))}">{boxes}</div>'


def faces_text(faces: list[FaceResult]) -> str:
    """The faces in words, for the report and the web review: the same facts as the boxes, so
    they survive a missing thumbnail and black-and-white print."""
    if not faces:
        return "No faces found."
    listed = [f.student_id or "?" for f in faces if f.status == FaceStatus.LISTED]
    review = [f for f in faces if _BOX_CLASS.get(f.status, "review") == "review"]
    text = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
    if listed:
        text += f"; listed: {', '.join(listed)}"
    times = [f"{f.student_id or f.status} at {f.time_s:.2f} s" for f in faces if f.time_s is not None
             and _BOX_CLASS.get(f.status, "review") != "nomatch"]
    if times:  # clips: where in the clip
        text += " (" + "; ".join(times) + ")"
    if review:
        text += f"; to review: {len(review)} (" + ", ".join(
            str(f.status) + (f" ~{f.candidate_id}" if f.candidate_id else "") for f in review) + ")"
    return text + "."


def face_box_html(face: FaceResult, w: int, h: int) -> str:
    """One face's box over a picture w x h (positioned in percent), for the report and the web review."""
    top, right, bottom, left = face.box
    cls = _BOX_CLASS.get(face.status, "review")

    def pct(v: float, full: int) -> float:
        return min(max(v / full * 100.0, 0.0), 100.0)

    x0, x1 = pct(left, w), pct(right, w)
    y0, y1 = pct(top, h), pct(bottom, h)
    if x1 <= x0 or y1 <= y0:
        return ""
    if face.status == FaceStatus.LISTED:
        label = face.student_id or "listed"
    elif cls == "review":
        label = str(face.status).replace("_", " ") + (f" ~{face.candidate_id}" if face.candidate_id else "")
    else:
        label = ""
    below = " below" if y0 < 8 else ""  # keep the label inside the picture for faces at the top edge
    style = f"left:{x0:.3f}%;top:{y0:.3f}%;width:{x1 - x0:.3f}%;height:{y1 - y0:.3f}%"
    span = f"<span>{escape(label)}</span>" if label else ""
    return f'<div class="box {cls}{below}" style="{style}" title="{escape(str(face.status))}">{span}</div>'


@functools.cache
def _register_heif() -> None:
    try:  # iPhone HEIC photos; optional so reports still work without pillow-heif
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def jpeg_thumbnail(path: str, px: int, *, quality: int = 80) -> tuple[bytes, tuple[int, int]]:
    """An upright RGB JPEG of the photo at most px on its longer side, and its upright full-size
    (w, h). Also serves the web review's pictures."""
    _register_heif()
    with Image.open(path) as src:
        w, h = src.size
        if src.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
            w, h = h, w
        # JPEG draft decodes at 1/2..1/8 scale: a 12 MP camera photo costs ~1 MP, not 36 MB.
        src.draft("RGB", (px, px))
        im = ImageOps.exif_transpose(src)
        im.thumbnail((px, px))
        im = _to_rgb(im)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue(), (w, h)


def _thumbnail(path: str, px: int) -> tuple[str, tuple[int, int]]:
    """Return a data: URI of an upright RGB JPEG thumbnail, and the upright full-size (w, h)."""
    data, full = jpeg_thumbnail(path, px)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), full


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent screenshots: flatten onto white; a plain convert would turn them black.
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, "white")
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")
