"""Text a photo carries besides its pixels: embedded captions, titles, keywords, people tags and
face-region names (XMP, IPTC IIM, EXIF, PNG text chunks), and its file name.

Read with Pillow and the standard library only (no exiftool); the pixels are never decoded.
Each text keeps where it came from ("XMP dc:description"), which is what reports show.
"""
from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from PIL import Image, IptcImagePlugin

from photocheck.mediafiles import PIL_FORMATS, sniff_format

MAX_XMP_BYTES = 4 * 1024 * 1024      # real XMP packets are a few KB; Lightroom's rarely exceed 100 KB
MAX_TEXT_CHUNK_BYTES = 1024 * 1024   # a PNG zTXt/iTXt chunk inflated beyond this is not read further
MAX_TEXTS = 10_000                   # texts kept per file: a tag bomb cannot slow the scan down


@dataclass(frozen=True)
class FoundText:
    source: str  # "XMP dc:description", "IPTC caption", "EXIF XPKeywords", "file name", ...
    text: str


@dataclass
class EmbeddedText:
    texts: list[FoundText] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a block that exists but could not be read
    _seen: set[FoundText] = field(default_factory=set, repr=False)

    def add(self, source: str, text) -> None:
        if isinstance(text, bytes):
            text = _decode(text)
        text = str(text).replace("\x00", " ").strip()
        if text and len(self.texts) < MAX_TEXTS:
            item = FoundText(source, text)
            if item not in self._seen:
                self._seen.add(item)
                self.texts.append(item)


# XMP properties read, by namespace URI: local name -> label shown in reasons.
_NS = {
    "http://purl.org/dc/elements/1.1/": ("dc", {"title", "description", "subject"}),
    "http://ns.adobe.com/photoshop/1.0/": ("photoshop", {"Headline", "Caption"}),
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": ("Iptc4xmpExt", {"PersonInImage", "PersonName"}),
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": ("Iptc4xmpCore",
                                                    {"AltTextAccessibility", "ExtDescrAccessibility"}),
    "http://www.metadataworkinggroup.com/schemas/regions/": ("mwg-rs", {"Name", "Description"}),
    "http://ns.microsoft.com/photo/1.2/t/Region#": ("MPReg", {"PersonDisplayName"}),
    "http://ns.microsoft.com/photo/1.0/": ("MicrosoftPhoto", {"LastKeywordXMP", "LastKeywordIPTC"}),
    "http://ns.adobe.com/lightroom/1.0/": ("lr", {"hierarchicalSubject"}),
    "http://www.digikam.org/ns/1.0/": ("digiKam", {"TagsList"}),
    "http://ns.adobe.com/exif/1.0/": ("exif", {"UserComment"}),
    "http://ns.adobe.com/tiff/1.0/": ("tiff", {"ImageDescription"}),
}
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"

# IPTC IIM datasets (record 2) read.
_IPTC = {(2, 5): "IPTC object name", (2, 25): "IPTC keywords", (2, 105): "IPTC headline",
         (2, 120): "IPTC caption"}
# EXIF tags read: IFD0 text and Windows XP tags (UTF-16LE), and UserComment in the Exif IFD.
_EXIF_IFD0 = {0x010E: "EXIF ImageDescription", 0x9C9B: "EXIF XPTitle", 0x9C9C: "EXIF XPComment",
              0x9C9E: "EXIF XPKeywords", 0x9C9F: "EXIF XPSubject"}
_EXIF_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769


def read_embedded_text(path: str | Path, data: bytes | None = None) -> EmbeddedText:
    """Every text embedded in the image file plus its file name. `data`: the file's bytes if
    already read. Never decodes pixels; never raises for a bad file (see `problems`)."""
    out = EmbeddedText()
    out.add("file name", Path(path).name)
    try:
        if data is None:
            data = Path(path).read_bytes()
    except OSError as exc:
        out.problems.append(f"cannot read file: {exc.strerror or exc}")
        return out
    kind = sniff_format(data[:64])
    if kind is None:
        return out  # not an image: the pixel check reports it
    try:
        if kind == "HEIF":
            from photocheck.images import _ensure_heif  # registers pillow-heif's opener

            _ensure_heif()
        im = Image.open(io.BytesIO(data), formats=_formats(kind))
    except Exception as exc:
        out.problems.append(f"cannot open {kind} to read its tags: {type(exc).__name__}: {exc}")
        return out
    with im:
        _read_xmp(im, kind, data, out)
        _read_iptc(im, out)
        if kind != "PNG":  # Pillow decodes a whole PNG to find its eXIf chunk: read it below instead
            _read_exif(im.getexif, out)
        comment = im.info.get("comment")
        if comment:
            out.add(f"{kind} comment", comment)
    if kind == "PNG":
        _read_png_text(data, out)
    return out


def _formats(kind: str) -> list[str]:
    """Pillow's formats that may open a file of `kind`. JPEG and PNG (Pillow's preinit set) need
    no other plugin loaded: Image.init() imports all ~45 of them (~20 ms of a rescan)."""
    Image.preinit()
    formats = [f for f in PIL_FORMATS[kind] if f in Image.OPEN]
    if not formats:
        Image.init()
        formats = [f for f in PIL_FORMATS[kind] if f in Image.OPEN]
    return formats


def _decode(raw: bytes) -> str:
    for enc in ("utf-8", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


# ------------------------------------------------------------------ XMP

def _xmp_packet(im: Image.Image, kind: str, data: bytes) -> bytes | None:
    if kind == "PNG":
        return None  # read with the other PNG text chunks, wherever it is in the file
    raw = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if raw is None and kind == "TIFF":
        raw = getattr(im, "tag_v2", {}).get(700)
    if raw is None and kind == "HEIF":
        # pillow-heif exposes XMP as info["xmp"]; anything else: look for the packet in the bytes.
        m = re.search(rb"<x:xmpmeta.*?</x:xmpmeta>", data, re.S)
        raw = m.group(0) if m else None
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if isinstance(raw, tuple):  # TIFF tags may come back as a tuple of ints
        raw = bytes(raw)
    return raw or None


def _read_xmp(im: Image.Image, kind: str, data: bytes, out: EmbeddedText) -> None:
    _read_xmp_packet(_xmp_packet(im, kind, data), out)


def _read_xmp_packet(raw: bytes | None, out: EmbeddedText) -> None:
    if raw is None:
        return
    try:
        root = parse_xmp(raw)
    except ValueError as exc:
        out.problems.append(f"embedded XMP could not be read ({exc})")
        return
    collect_xmp(root, out)


def parse_xmp(raw: bytes) -> ET.Element:
    """Parse an XMP packet with the standard XML parser, safely: size-limited, and any
    DOCTYPE/ENTITY declaration refused (XMP never has one; entity expansion is an attack)."""
    if len(raw) > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {len(raw)} bytes is over the {MAX_XMP_BYTES}-byte limit")
    raw = raw.strip(b"\x00 \t\r\n")
    if re.search(rb"<!(DOCTYPE|ENTITY)", raw, re.I):
        raise ValueError("XMP packet declares a DOCTYPE or entities")
    start = raw.find(b"<x:xmpmeta")
    if start < 0:
        start = raw.find(b"<rdf:RDF")
    if start > 0:
        end_tag = b"</x:xmpmeta>" if raw.startswith(b"<x:xmpmeta", start) else b"</rdf:RDF>"
        end = raw.find(end_tag, start)
        raw = raw[start:end + len(end_tag)] if end >= 0 else raw[start:]
    parser = ET.XMLParser()
    try:
        parser.feed(raw)
        return parser.close()
    except ET.ParseError as exc:
        raise ValueError(f"malformed XML: {exc}") from None


def _label(tag: str) -> str | None:
    if not tag.startswith("{"):
        return None
    uri, _, local = tag[1:].partition("}")
    ns = _NS.get(uri)
    if ns and local in ns[1]:
        return f"XMP {ns[0]}:{local}"
    return None


def collect_xmp(root: ET.Element, out: EmbeddedText) -> None:
    """Add every wanted XMP property under `root`: element values (plain, or rdf:Alt/Bag/Seq
    items) and the attribute form (`<rdf:Description dc:title="..."/>`, how MWG region names
    and Windows PersonDisplayName are often written)."""
    for el in root.iter():
        for attr, value in el.attrib.items():
            label = _label(attr)
            if label:
                out.add(label, value)
        label = _label(el.tag)
        if label is None:
            continue
        items = [li for li in el.iter(f"{_RDF}li")]
        if items:
            for li in items:
                out.add(label, "".join(li.itertext()))
        elif len(el) == 0:
            out.add(label, el.text or "")
        # a struct value (rdf:Description child) is walked by root.iter() itself


# ------------------------------------------------------------------ IPTC, EXIF, PNG

def _read_iptc(im: Image.Image, out: EmbeddedText) -> None:
    try:
        info = IptcImagePlugin.getiptcinfo(im)
    except Exception as exc:
        out.problems.append(f"embedded IPTC could not be read ({type(exc).__name__}: {exc})")
        return
    for key, label in _IPTC.items():
        value = (info or {}).get(key)
        for v in value if isinstance(value, list) else [value] if value else []:
            out.add(label, v)


def _xp_text(value) -> str:
    if isinstance(value, tuple):
        value = bytes(value)
    if isinstance(value, bytes):
        return value.decode("utf-16-le", "replace")
    return str(value)


def _user_comment(value) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes):
        return ""
    head, body = value[:8], value[8:]
    if head.startswith(b"UNICODE"):
        # Byte order is the file's; try both and keep the one that looks like text.
        le, be = body.decode("utf-16-le", "replace"), body.decode("utf-16-be", "replace")
        return le if sum(c.isascii() for c in le) >= sum(c.isascii() for c in be) else be
    return _decode(body if head.rstrip(b"\x00") in (b"ASCII", b"JIS", b"") else value)


def _read_exif(get_exif, out: EmbeddedText) -> None:
    try:
        exif = get_exif()
        for tag, label in _EXIF_IFD0.items():
            if tag in exif:
                value = exif[tag]
                out.add(label, _xp_text(value) if tag >= 0x9C9B else value)
        sub = exif.get_ifd(_EXIF_IFD)
        if _EXIF_USER_COMMENT in sub:
            out.add("EXIF UserComment", _user_comment(sub[_EXIF_USER_COMMENT]))
    except Exception as exc:
        out.problems.append(f"embedded EXIF could not be read ({type(exc).__name__}: {exc})")


def _read_png_text(data: bytes, out: EmbeddedText) -> None:
    """tEXt, zTXt and iTXt chunks anywhere in the file (also after the pixel data), without
    decoding the pixels. The XMP iTXt chunk is read by _read_xmp."""
    pos = 8
    while pos + 12 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        try:
            if ctype == b"eXIf":
                _read_exif(lambda: _exif_from(body), out)
                continue
            if ctype == b"tEXt":
                key, _, text = body.partition(b"\x00")
                value = text.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = body.partition(b"\x00")
                value = _inflate(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = body.partition(b"\x00")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\x00")
                _tkey, _, text = rest.partition(b"\x00")
                raw = _inflate(text) if compressed else text
                if key == b"XML:com.adobe.xmp":
                    _read_xmp_packet(raw, out)
                    continue
                value = raw.decode("utf-8", "replace")
            else:
                continue
        except (ValueError, zlib.error, IndexError) as exc:
            out.problems.append(f"PNG text chunk could not be read ({exc})")
            continue
        out.add(f"PNG text {key.decode('latin-1', 'replace')}", value)


def _exif_from(raw: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(raw)
    return exif


def _inflate(raw: bytes) -> bytes:
    return zlib.decompressobj().decompress(raw, MAX_TEXT_CHUNK_BYTES)
