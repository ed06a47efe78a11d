"""Device labels: a QR code with the link to the device record (no patient data), and a GS1
DataMatrix with the production identifiers as GS1 element strings.

DataMatrix element strings (in this order; fixed-length AIs first, FNC1 separators are added
by the encoder):
  (01) GTIN-14 - only when the site configured one for the device type (it needs a GS1
       company prefix; custom-made and in-house devices need no UDI, MDR Art. 27 / 5(5));
  (11) production date YYMMDD - the day the print ended;
  (10) batch/lot - the material lot the device was printed from (a one-off device has no
       batch of its own; the material lot is what a recall searches for);
  (21) serial number - the device serial, the key of the device record;
  (91) company-internal - the design version (approval and approved-mesh hash).
The QR code carries only the record URL (GS1 healthcare guidance keeps QR for links, not for
product identification).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date

import qrcode
import qrcode.image.svg
import zxingcpp
from fpdf import FPDF
from PIL import Image

from pocprint.domain.anatomy import describe
from pocprint.trace.pdf import FONT_DIR
from pocprint.trace.site import Site

# GS1 AI encodable character set 82 (what the lab's serials, lots and versions may use).
GS1_CHARS = re.compile(r"^[A-Za-z0-9!\"%&'()*+,\-./:;<=>?_]+$")
SIZES_MM = {"62mm": (100.0, 62.0), "4x6": (152.4, 101.6)}
SHEET_LABEL_MM = (99.1, 67.7)  # A4 sheet, 2 x 4 labels (e.g. Avery L7165 layout)


def qr_svg(url: str) -> str:
    """An SVG QR code for the record URL (error correction M survives a scuffed label)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=10)
    qr.add_data(url)
    qr.make(fit=True)
    image = qr.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def qr_image(url: str) -> Image.Image:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=8)
    qr.add_data(url)
    qr.make(fit=True)
    return qr.make_image().get_image().convert("L")


def qr_png(url: str) -> bytes:
    buffer = io.BytesIO()
    qr_image(url).save(buffer, format="PNG")
    return buffer.getvalue()


def gs1_element_string(
    *,
    serial: str,
    production_date: date | None,
    lot: str | None,
    design_version: str | None = None,
    gtin: str | None = None,
) -> str:
    """Human-readable element string, e.g. `(11)261122(10)L2026-001(21)D2026-000012(91)A3-1f2e`."""
    parts = []
    if gtin:
        parts.append(f"(01){gtin}")
    if production_date:
        parts.append(f"(11){production_date:%y%m%d}")
    for ai, value, limit in (("10", lot, 20), ("21", serial, 20), ("91", design_version, 90)):
        if not value:
            continue
        if len(value) > limit or not GS1_CHARS.match(value):
            raise ValueError(f"({ai}) {value!r} is not a valid GS1 value (max {limit} characters)")
        parts.append(f"({ai}){value}")
    return "".join(parts)


def datamatrix_image(element_string: str, scale: int = 8) -> Image.Image:
    """GS1 DataMatrix (FNC1 first, symbology ]d2) for the element string."""
    barcode = zxingcpp.create_barcode(element_string, zxingcpp.BarcodeFormat.DataMatrix, gs1=True)
    return Image.fromarray(barcode.to_image(scale=scale, add_quiet_zones=True)).convert("L")


@dataclass(frozen=True)
class LabelData:
    serial: str
    description: str
    patient_code: str
    case: str
    material: str
    lot: str | None
    build_date: date | None
    design_version: str
    status_text: str
    sterile_text: str
    release_text: str
    site_name: str
    url: str
    element_string: str


def label_data(record: dict, url: str, site: Site) -> LabelData:
    device = record["device"]
    material = record.get("material") or {}
    lot = (material.get("lot") or {}).get("lot_number")
    ended = (record.get("print") or {}).get("finished_at") or (record.get("print") or {}).get(
        "started_at"
    )
    build_date = date.fromisoformat(ended[:10]) if ended else None
    post = record.get("post_processing") or {}
    sterilised = next((s for s in post.get("steps", []) if s["step"] == "sterilisation"), None)
    if sterilised:
        p = sterilised["parameters"] or {}
        sterile_text = (
            f"Sterilised: {p.get('method')}, cycle {p.get('cycle_id')}, "
            f"{str(sterilised['performed_at'])[:10]}"
        )
    elif post.get("sterile"):
        sterile_text = "NOT YET STERILISED - sterilise before use"
    else:
        sterile_text = "Non-sterile"
    order = record.get("order") or {}
    route = order.get("regulatory_route")
    status = post.get("status_text") or ""
    if route == "custom_made" and "custom-made" not in status.lower():
        status = (status + " - custom-made device").strip(" -")
    release = record.get("release") or {}
    if release.get("state") == "valid":
        release_text = f"Released {str(release.get('signed_at'))[:10]} by {release.get('signer')}"
    else:
        release_text = "NOT RELEASED - do not use"
    # The coded anatomy of the order (registry taxonomy), never the part's free-text label,
    # which is typed by hand and may carry anything, a name included.
    description = device["device_type"].replace("_", " ").capitalize()
    coded = [describe(a) for a in (order.get("anatomy") or [])[:2]]
    description += ": " + ("; ".join(c for c in coded if c) or "anatomy not coded")
    return LabelData(
        serial=device["serial"],
        description=description,
        patient_code=device["patient_code"],
        case=device["case"],
        material=material.get("material") or "-",
        lot=lot,
        build_date=build_date,
        design_version=device["design_version"],
        status_text=status,
        sterile_text=sterile_text,
        release_text=release_text,
        site_name=site.name,
        url=url,
        element_string=gs1_element_string(
            serial=device["serial"],
            production_date=build_date,
            lot=lot,
            design_version=device["design_version"],
            gtin=site.gtins.get(device["device_type"]),
        ),
    )


class _LabelDoc(FPDF):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.set_auto_page_break(False)
        self.set_margins(0, 0, 0)
        self.unicode = (FONT_DIR / "DejaVuSans.ttf").exists()
        if self.unicode:
            self.add_font("body", "", str(FONT_DIR / "DejaVuSans.ttf"))
            self.add_font("body", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))

    def font(self, style: str = "", size: float = 7) -> None:
        self.set_font("body" if self.unicode else "Helvetica", style, size)

    def safe(self, text: str) -> str:
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")


def _draw(doc: _LabelDoc, label: LabelData, x: float, y: float, w: float, h: float) -> None:
    """One label in the box (x, y, w, h) mm: text on the left, the two codes on the right."""
    pad = 3.0
    code = min(h * 0.42, 30.0)  # each code's side; both stacked fit the label's height
    codes_x = x + w - pad - code
    doc.image(qr_image(label.url), x=codes_x, y=y + pad, w=code, h=code)
    doc.image(
        datamatrix_image(label.element_string), x=codes_x, y=y + h - pad - code, w=code, h=code
    )
    text_w = codes_x - x - 2 * pad
    scale = h / 62.0
    doc.set_xy(x + pad, y + pad)
    doc.font("B", 10 * scale)
    doc.cell(text_w, 5 * scale, doc.safe(label.serial), new_x="LEFT", new_y="NEXT", align="L")
    doc.font("", 6.5 * scale)
    lines = [
        label.description,
        f"Patient code {label.patient_code} - case {label.case}",
        f"Material {label.material}, lot {label.lot or '-'}",
        f"Built {label.build_date.isoformat() if label.build_date else '-'}; "
        f"design {label.design_version}",
        label.sterile_text,
        "Single use",
        label.release_text,
    ]
    for line in lines:
        doc.multi_cell(text_w, 3.1 * scale, doc.safe(line), new_x="LEFT", new_y="NEXT", align="L")
    doc.font("B", 7 * scale)
    doc.multi_cell(
        text_w, 3.4 * scale, doc.safe(label.status_text), new_x="LEFT", new_y="NEXT", align="L"
    )
    doc.font("", 5.5 * scale)
    doc.set_xy(x + pad, y + h - pad - 6 * scale)
    doc.multi_cell(
        text_w, 2.6 * scale, doc.safe(f"{label.site_name}\n{label.element_string}"), align="L"
    )


def label_pdf(label: LabelData, size: str = "62mm") -> bytes:
    """One label on label-printer stock: 62 x 100 mm tape or 4 x 6 in, landscape."""
    if size not in SIZES_MM:
        raise ValueError(f"label size must be one of {', '.join(SIZES_MM)}")
    w, h = SIZES_MM[size]
    doc = _LabelDoc(orientation="L", unit="mm", format=(h, w))
    doc.add_page()
    _draw(doc, label, 0, 0, w, h)
    return bytes(doc.output())


def label_sheet_pdf(labels: list[LabelData], copies: int = 1) -> bytes:
    """A4 sheets of 2 x 4 labels (99.1 x 67.7 mm), each label `copies` times."""
    w, h = SHEET_LABEL_MM
    left, top, gap = (210 - 2 * w) / 2, (297 - 4 * h) / 2, 2.5
    doc = _LabelDoc(orientation="P", unit="mm", format="A4")
    slots = [label for label in labels for _ in range(max(1, copies))]
    for i, label in enumerate(slots):
        if i % 8 == 0:
            doc.add_page()
        col, row = i % 2, (i % 8) // 2
        _draw(doc, label, left + col * (w + gap) - gap / 2, top + row * h, w, h)
    return bytes(doc.output())
