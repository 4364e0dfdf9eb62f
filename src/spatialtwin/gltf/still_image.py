"""Still images as files: PNG or WebP with the digital-twin disclosure in their metadata.

A still of a twin is a rendering of a person's likeness, never a photograph, and says so in
the file itself, where image tools and platforms look:

- XMP (`XML:com.adobe.xmp`: a PNG `iTXt` chunk, a WebP `XMP ` chunk) with IPTC's
  `Iptc4xmpExt:DigitalSourceType` = `http://cv.iptc.org/newscodes/digitalsourcetype/
  algorithmicMedia` (media made by an algorithm, here a renderer, not from sampled training
  data), `dc:description` = the twin's disclosure, `dc:creator` / `dc:rights` = the model and
  agency, `photoshop:Credit` and the SpatialTwin ids (twin, look, license, the still's key);
- for PNG also `tEXt` `Description`, `Author`, `Copyright`, `Software` for plain readers.

Encoding is deterministic: the same pixels and metadata give the same bytes (zlib level 6,
Pillow's fixed filter choice; WebP lossless at a fixed method).

    data = encode_still(rgb, "png", StillMetadata(disclosure=..., model=..., agency=...))
    read_still_metadata(data)["DigitalSourceType"]
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from numpy.typing import NDArray
from PIL import Image, PngImagePlugin

FORMATS = {"png": "image/png", "webp": "image/webp"}
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"
_SOFTWARE = "SpatialTwin studio stills (three.js in headless Chromium)"


@dataclass(frozen=True)
class StillMetadata:
    disclosure: str
    model: str
    agency: str
    ids: dict[str, str] = field(default_factory=dict)  # twinId, lookId, licenseId, stillKey

    def xmp(self) -> str:
        """The XMP packet: IPTC digital source type, description, creator, rights, ids."""
        ids = "".join(
            f"<spatialtwin:{name}>{escape(value)}</spatialtwin:{name}>"
            for name, value in sorted(self.ids.items())
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name)
        )
        credit = f"{self.model} (agency: {self.agency})"
        return (
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about=""'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
            ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
            ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
            ' xmlns:spatialtwin="https://spatialtwin.dev/ns/still/1.0/"'
            f" Iptc4xmpExt:DigitalSourceType={quoteattr(DIGITAL_SOURCE_TYPE)}"
            f" photoshop:Credit={quoteattr(credit)}"
            f" xmp:CreatorTool={quoteattr(_SOFTWARE)}>"
            f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(self.disclosure)}'
            "</rdf:li></rdf:Alt></dc:description>"
            f"<dc:creator><rdf:Seq><rdf:li>{escape(credit)}</rdf:li></rdf:Seq></dc:creator>"
            f'<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{escape(credit)}</rdf:li>'
            "</rdf:Alt></dc:rights>"
            f"{ids}"
            "</rdf:Description></rdf:RDF></x:xmpmeta>"
            '<?xpacket end="r"?>'
        )


def encode_still(rgb: NDArray[np.uint8], fmt: str, metadata: StillMetadata) -> bytes:
    """`rgb` (height, width, 3) as a PNG or lossless WebP carrying `metadata`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    out = io.BytesIO()
    xmp = metadata.xmp()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(XMP_KEY, xmp, zip=False)
        info.add_text("Description", metadata.disclosure)
        info.add_text("Author", f"{metadata.model} (agency: {metadata.agency})")
        info.add_text("Copyright", f"{metadata.model} (agency: {metadata.agency})")
        info.add_text("Software", _SOFTWARE)
        image.save(out, format="PNG", pnginfo=info, compress_level=6)
    else:
        image.save(out, format="WEBP", lossless=True, quality=80, method=4, xmp=xmp.encode())
    return out.getvalue()


def decode_png_rgb(data: bytes) -> NDArray[np.uint8]:
    """The pixels of a PNG as (height, width, 3) sRGB bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_still_metadata(data: bytes) -> dict[str, str]:
    """What a still says of itself: the XMP packet and the fields read from it."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "PNG":
            xmp = str(image.info.get(XMP_KEY, ""))
        else:
            raw = image.info.get("xmp", b"")
            xmp = raw.decode() if isinstance(raw, bytes) else str(raw)
        out = {"format": str(image.format), "xmp": xmp}
        source = re.search(r'DigitalSourceType="([^"]*)"', xmp)
        described = re.search(r"<dc:description>.*?<rdf:li[^>]*>(.*?)</rdf:li>", xmp)
        out["DigitalSourceType"] = source.group(1) if source else ""
        out["description"] = described.group(1) if described else ""
        if image.format == "PNG":
            out.update({k: str(v) for k, v in image.info.items() if k in ("Description",)})
        return out
