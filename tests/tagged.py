"""Making photos that carry text the way photo apps write it: XMP (Pillow), IPTC IIM (an APP13
segment built by hand), EXIF (Image.Exif) and PNG text chunks."""
from __future__ import annotations

import struct
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, PngImagePlugin


def xmp(description: str | None = None, *, title: str | None = None, subjects=(), persons=(),
        mwg_names=(), ms_names=(), hierarchical=(), attribute_title: str | None = None) -> bytes:
    """An XMP packet as Lightroom / Photos / Windows write it (rdf:Alt, rdf:Bag, region structs)."""
    def alt(v):
        return f'<rdf:Alt><rdf:li xml:lang="x-default">{escape(v)}</rdf:li></rdf:Alt>'

    def bag(vs):
        return "<rdf:Bag>" + "".join(f"<rdf:li>{escape(v)}</rdf:li>" for v in vs) + "</rdf:Bag>"

    props = []
    if description is not None:
        props.append(f"<dc:description>{alt(description)}</dc:description>")
    if title is not None:
        props.append(f"<dc:title>{alt(title)}</dc:title>")
    if subjects:
        props.append(f"<dc:subject>{bag(subjects)}</dc:subject>")
    if persons:
        props.append(f"<Iptc4xmpExt:PersonInImage>{bag(persons)}</Iptc4xmpExt:PersonInImage>")
    if hierarchical:
        props.append(f"<lr:hierarchicalSubject>{bag(hierarchical)}</lr:hierarchicalSubject>")
    if mwg_names:
        regions = "".join(
            f'<rdf:li><rdf:Description mwg-rs:Name="{escape(n)}" mwg-rs:Type="Face">'
            f'<mwg-rs:Area stArea:x="0.5" stArea:y="0.5" stArea:w="0.1" stArea:h="0.1" stArea:unit="normalized"/>'
            f"</rdf:Description></rdf:li>" for n in mwg_names)
        props.append(f'<mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:RegionList><rdf:Bag>{regions}'
                     f"</rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>")
    if ms_names:
        regions = "".join(f"<rdf:li><rdf:Description><MPReg:PersonDisplayName>{escape(n)}</MPReg:PersonDisplayName>"
                          f"<MPReg:Rectangle>0.1, 0.1, 0.2, 0.2</MPReg:Rectangle></rdf:Description></rdf:li>"
                          for n in ms_names)
        props.append(f"<MP:RegionInfo><rdf:Description><MPRI:Regions><rdf:Bag>{regions}</rdf:Bag>"
                     f"</MPRI:Regions></rdf:Description></MP:RegionInfo>")
    attr = f' dc:title="{escape(attribute_title)}"' if attribute_title else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:lr="http://ns.adobe.com/lightroom/1.0/" '
        'xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/" '
        'xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#" '
        'xmlns:MP="http://ns.microsoft.com/photo/1.2/" xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#" '
        f'xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"{attr}>'
        + "".join(props)
        + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode("utf-8")


def iptc_app13(caption: str | None = None, keywords=(), headline: str | None = None) -> bytes:
    """A JPEG APP13 segment (Photoshop 3.0, 8BIM resource 0x0404) holding IPTC IIM datasets, in
    UTF-8 (dataset 1:90 says so)."""
    def ds(record: int, number: int, value: bytes) -> bytes:
        return b"\x1c" + bytes([record, number]) + struct.pack(">H", len(value)) + value

    iim = ds(1, 90, b"\x1b%G")
    if headline:
        iim += ds(2, 105, headline.encode())
    for k in keywords:
        iim += ds(2, 25, k.encode())
    if caption:
        iim += ds(2, 120, caption.encode())
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    body = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def with_app13(jpeg: bytes, segment: bytes) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def blank(size=(320, 240), color=(120, 160, 200)) -> Image.Image:
    """A photo with no face in it (sky, a wall)."""
    rng = np.random.default_rng(0)
    a = np.clip(np.array(color)[None, None, :] + rng.normal(0, 6, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def save_jpeg(path: Path, img: Image.Image | None = None, *, xmp_packet: bytes | None = None,
              exif: Image.Exif | None = None, iptc: bytes | None = None) -> Path:
    img = img or blank()
    kw = {}
    if xmp_packet is not None:
        kw["xmp"] = xmp_packet
    if exif is not None:
        kw["exif"] = exif
    img.save(path, "JPEG", quality=90, **kw)
    if iptc is not None:
        path.write_bytes(with_app13(path.read_bytes(), iptc))
    return path


def save_png(path: Path, texts: dict[str, str], img: Image.Image | None = None, compressed: bool = False) -> Path:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_itxt(k, v, zip=compressed)
    (img or blank()).save(path, "PNG", pnginfo=info)
    return path
