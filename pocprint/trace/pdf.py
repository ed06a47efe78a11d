"""PDF exports of the device history record and the Annex XIII statement (fpdf2, LGPL-3.0).

Every signature is printed with the signer's name, date and time and meaning (21 CFR 11.50).
The footer carries the SHA-256 of the record's JSON, so a printout can be matched to the
electronic record it came from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fpdf import FPDF

from pocprint.domain.cases import FIELD_LABELS
from pocprint.domain.times import local_text
from pocprint.domain.wording import device_status, say
from pocprint.trace.annex_xiii import statement_sections
from pocprint.trace.site import Site

# Order fields not in the order form, as the record names them.
ORDER_LABELS = {
    **FIELD_LABELS,
    "code": "case",
    "review_status": "review status",
    "created_at": "ordered at",
    "created_by": "ordered by",
}
KEY_WIDTH = 46.0  # mm: the label column of a facts list; longer labels wrap within it

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def record_digest(record: dict) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class _Doc(FPDF):
    def __init__(self, title: str, footer_note: str, zone: str = "UTC", **kwargs):
        super().__init__(**kwargs)
        self.title_text = title
        self.footer_note = footer_note
        self.zone = zone
        self.unicode = (FONT_DIR / "DejaVuSans.ttf").exists()
        if self.unicode:  # DejaVu covers the lab's text (°, µ, dashes, names with accents)
            self.add_font("body", "", str(FONT_DIR / "DejaVuSans.ttf"))
            self.add_font("body", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
            self.add_font("mono", "", str(FONT_DIR / "DejaVuSansMono.ttf"))
        self.set_auto_page_break(True, margin=16)
        self.set_margins(14, 14, 14)

    def font(self, style: str = "", size: float = 9, mono: bool = False) -> None:
        if self.unicode:
            self.set_font("mono" if mono else "body", "" if mono else style, size)
        else:
            self.set_font("Courier" if mono else "Helvetica", style, size)

    def when(self, value: Any) -> str:
        """A stored UTC time in the site's time zone, to the minute (never microseconds)."""
        return local_text(value, self.zone)

    def text_safe(self, value: Any) -> str:
        text = "-" if value is None or value == "" else str(value)
        if not self.unicode:
            text = text.encode("latin-1", "replace").decode("latin-1")
        return text

    def footer(self):
        self.set_y(-12)
        self.font(size=6.5)
        width = self.w - self.l_margin - self.r_margin
        self.cell(width - 18, 4, self.text_safe(f"{self.title_text} - {self.footer_note}"))
        self.cell(18, 4, f"page {self.page_no()}/{{nb}}", align="R")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.font("B", 11)
        self.cell(0, 7, self.text_safe(text), new_x="LMARGIN", new_y="NEXT")
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1)

    def facts(self, pairs: list[tuple[str, Any]], mono_keys: tuple[str, ...] = ()) -> None:
        """Label and value side by side; a long label wraps inside its column and the row
        takes the height of the taller of the two, so nothing overlaps."""
        width = self.w - self.l_margin - self.r_margin
        line = 5.0
        for key, value in pairs:
            key_text, value_text = self.text_safe(key), self.text_safe(value)
            self.font("B", 8.5)
            key_lines = self.multi_cell(KEY_WIDTH - 2, line, key_text, dry_run=True, output="LINES")
            self.font(size=8.5, mono=key in mono_keys)
            value_lines = self.multi_cell(
                width - KEY_WIDTH, line, value_text, dry_run=True, output="LINES"
            )
            height = line * max(len(key_lines), len(value_lines), 1)
            if self.get_y() + height > self.page_break_trigger:
                self.add_page()
            x, y = self.l_margin, self.get_y()
            self.font("B", 8.5)
            self.set_xy(x, y)
            self.multi_cell(KEY_WIDTH - 2, line, key_text, align="L")
            self.font(size=8.5, mono=key in mono_keys)
            self.set_xy(x + KEY_WIDTH, y)
            self.multi_cell(width - KEY_WIDTH, line, value_text, align="L")
            self.set_xy(x, y + height)

    def table(self, headings: list[str], rows: list[list[Any]], widths: list[float]) -> None:
        """Rows of cells; a cell wraps only when its text is wider than the column (measured
        with the font's own widths), and the row takes the height of its tallest cell."""
        if not rows:
            self.font(size=8.5)
            self.cell(0, 5, "none recorded", new_x="LMARGIN", new_y="NEXT")
            return
        line = 3.6
        self._row([self.text_safe(h) for h in headings], widths, line, bold=True)
        for values in rows:
            self._row([self.text_safe(v) for v in values], widths, line)

    def _row(self, texts: list[str], widths: list[float], line: float, bold=False):
        self.font("B" if bold else "", 7.5)
        counts = []
        for text, width in zip(texts, widths, strict=True):
            if self.get_string_width(text) <= width - 1.2:
                counts.append(1)
            else:
                lines = self.multi_cell(width - 0.6, line, text, dry_run=True, output="LINES")
                counts.append(len(lines))
        height = max(counts) * line + 0.8
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()
        y, x = self.get_y(), self.l_margin
        for text, width, count in zip(texts, widths, counts, strict=True):
            self.set_xy(x, y + 0.4)
            if count == 1:
                self.cell(width - 0.6, line, text)
            else:
                self.multi_cell(width - 0.6, line, text, align="L")
            x += width
        self.set_y(y + height)
        self.set_draw_color(210, 210, 210)
        self.line(self.l_margin, self.get_y(), self.l_margin + sum(widths), self.get_y())


def _who(person: dict | None) -> str:
    return person["name"] if person else "-"


def _params(parameters: dict | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (parameters or {}).items())


def dhr_pdf(record: dict, site: Site, zone: str = "UTC") -> bytes:
    """The production record; times in the site's time zone (`zone`), to the minute."""
    device = record["device"]
    doc = _Doc(
        f"Device history record {device['serial']}",
        f"record SHA-256 {record_digest(record)}",
        zone=zone,
        format="A4",
    )
    doc.alias_nb_pages()
    doc.add_page()
    doc.font("B", 15)
    doc.cell(
        0,
        9,
        doc.text_safe(f"Device history record - {device['serial']}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    doc.font(size=8.5)
    doc.multi_cell(
        0,
        4.5,
        doc.text_safe(
            f"{site.name}. Production record (ISO 13485 7.5.1 / former DHR). "
            f"Generated {doc.when(record['generated_at'])} ({record['schema']}). "
            f"Times in {zone}."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
        align="L",
    )

    doc.heading("Identity")
    doc.facts(
        [
            ("Device serial", device["serial"]),
            ("Device type", say(device["device_type"])),
            ("Case", device["case"]),
            ("Patient code", device["patient_code"]),
            ("Part", device["part"]),
            ("Design version", device["design_version"]),
            (
                "Status",
                device_status(
                    device["state"],
                    device["outcome"],
                    (record.get("release") or {}).get("state") == "valid",
                ),
            ),
            (
                "Quantities",
                "built {built}, accepted {accepted}, released {released}".format(
                    **record["quantities"]
                ),
            ),
        ]
    )

    doc.heading("Order")
    order = record.get("order") or {}
    doc.facts(
        [
            (_first_upper(ORDER_LABELS.get(k, k.replace("_", " "))), _order_value(v, doc))
            for k, v in order.items()
        ]
    )

    doc.heading("Signatures")
    doc.table(
        ["Meaning", "Signed by", "Date and time", "On", "Content SHA-256", "Status"],
        [
            [
                s["meaning"],
                s["signer"],
                doc.when(s["signed_at"]),
                f"{s['entity']} {s['entity_id']}",
                s["content_sha256"][:16] + "...",
                "withdrawn" if s["withdrawn"] else ("withdrawal" if s["withdraws"] else "signed"),
            ]
            for s in record["signatures"]
        ],
        [30, 32, 38, 26, 32, 24],
    )

    files = record["files"]
    verification = record["print"].get("verification") or {}
    doc.heading("Files")
    doc.facts(
        [
            (f"Source ({files['source']['format']})", files["source"]["sha256"]),
            ("Repaired mesh", files["repaired_mesh"]["sha256"]),
            ("G-code SHA-256", files["gcode"]["sha256"]),
            ("Print verified by", verification.get("label") or "nothing: not verified"),
            (
                "Printer's own SHA-1"
                if verification.get("evidence") == "printer_sha1"
                else "Hash checked",
                verification.get("value") or "-",
            ),
        ],
        mono_keys=(
            f"Source ({files['source']['format']})",
            "Repaired mesh",
            "G-code SHA-256",
            "Printer's own SHA-1",
            "Hash checked",
        ),
    )

    repair = record["repair"]
    doc.heading("Repair and fidelity")
    fidelity = repair.get("fidelity") or {}
    doc.facts(
        [
            ("Verdict", say(repair["verdict"])),
            ("Units", f"{repair['units']['unit']} (x{repair['units']['scale_to_mm']})"),
            ("Reasons", "; ".join((repair.get("report") or {}).get("reasons", []) or []) or "none"),
            ("Fidelity", _order_value(fidelity, doc) if fidelity else "-"),
            (
                "Accepted by",
                (
                    f"{_who(repair['acceptance']['accepted_by'])}: {repair['acceptance']['reason']}"
                    if repair.get("acceptance")
                    else "not needed"
                ),
            ),
        ]
    )

    slicing = record["slicing"]
    doc.heading("Slicing")
    doc.facts(
        [
            ("Slicer", f"{slicing['slicer']} {slicing['version']}"),
            ("Profile", slicing["profile"]),
            ("Profile SHA-256", slicing["profile_sha256"]),
            ("Estimate", f"{slicing['estimated_time_s']} s, {slicing['filament_g']} g"),
            (
                "Effective config",
                f"{len(slicing.get('effective_config') or {})} settings (appendix)",
            ),
        ],
        mono_keys=("Profile SHA-256",),
    )

    printer = record.get("printer") or {}
    calibration = printer.get("calibration_at_build") or {}
    material = record["material"]
    lot = material.get("lot") or {}
    doc.heading("Printer and material")
    doc.facts(
        [
            (
                "Printer",
                f"{printer.get('name')} (S/N {printer.get('serial')}, {printer.get('connector')})",
            ),
            (
                "Calibration at build",
                f"{calibration.get('state')} (next due {calibration.get('next_due')}, "
                f"from the {calibration.get('source')})",
            ),
            ("Material", material.get("material")),
            (
                "Lot",
                f"{lot.get('lot_number')} ({lot.get('manufacturer')}), expiry {lot.get('expiry')}"
                if lot
                else "no lot recorded",
            ),
            ("Consumed (slicer estimate)", f"{material.get('consumed_g')} g"),
        ]
    )

    pr = record["print"]
    doc.heading("Build")
    doc.facts(
        [
            ("Dispatched", doc.when(pr["dispatched_at"])),
            ("Started", doc.when(pr["started_at"])),
            ("Ended", doc.when(pr["finished_at"])),
            ("Plate clear confirmed by", _who(pr["plate_clear_confirmed_by"])),
            ("Printer file", pr["remote_file"]),
        ]
    )
    doc.table(
        ["Printer event", "Action", "By"],
        [[doc.when(e["at"]), e["action"], e["actor"]] for e in pr["printer_events"]],
        [60, 70, 52],
    )

    doc.heading("Operators")
    doc.facts([(step, ", ".join(names)) for step, names in record["operators"].items()])

    post = record["post_processing"]
    doc.heading("Post-processing")
    doc.table(
        ["Step", "Parameters", "Operator", "Time"],
        [
            [s["title"], _params(s["parameters"]), _who(s["operator"]), doc.when(s["performed_at"])]
            for s in post["steps"]
        ],
        [32, 78, 32, 40],
    )

    qa = record["qa"]
    doc.heading("QA measurements")
    doc.table(
        ["Feature", "Designed", "Measured", "Tolerance", "Result", "By", "Photo"],
        [
            [
                m["feature"],
                f"{m['designed_mm']} mm",
                f"{m['measured_mm']} mm",
                f"± {m['tolerance_mm']} mm",
                "pass" if m["passed"] else "FAIL",
                _who(m["measured_by"]),
                (m["photo_sha256"] or "-")[:12],
            ]
            for m in qa["measurements"]
        ],
        [40, 22, 22, 22, 16, 32, 28],
    )
    if qa.get("disposition"):
        d = qa["disposition"]
        doc.facts(
            [
                (
                    "Failed QA",
                    f"{d['decision']} ({d['reason']}) by {_who(d['decided_by'])}, reprint {d['reprint'] or '-'}",
                )
            ]
        )

    doc.heading("Release and delivery")
    release = record.get("release")
    delivery = record.get("delivery")
    doc.facts(
        [
            (
                "Release",
                f"{release['meaning']} by {release['signer']} at "
                f"{doc.when(release['signed_at'])} ({say(release['state'])})"
                if release
                else "not released",
            ),
            (
                "Delivery",
                f"to {delivery['delivered_to']} at {delivery['location'] or '-'}, "
                f"{doc.when(delivery['delivered_at'])} (recorded by {_who(delivery['recorded_by'])})"
                if delivery
                else "not delivered",
            ),
        ]
    )
    archive = record.get("pacs_archive") or {}
    doc.heading("Archived in the PACS")
    if archive.get("sop_instance_uid"):
        stored = (
            f"stored {doc.when(archive['stored_at'])} in {archive['pacs']}"
            if archive.get("state") == "sent"
            else f"not stored yet ({archive.get('state')}): {archive.get('last_error') or 'queued'}"
        )
        doc.facts(
            [
                ("State", stored),
                ("SOP instance UID", archive["sop_instance_uid"]),
                ("SOP class", f"Encapsulated STL ({archive['sop_class_uid']})"),
                ("Study UID", archive.get("study_uid") or "-"),
                ("Source series UID", archive.get("source_series_uid") or "-"),
            ],
            mono_keys=("SOP instance UID", "Study UID", "Source series UID"),
        )
    else:
        doc.facts([("State", f"not archived: {archive.get('why', 'no PACS study')}")])

    doc.heading("Audit events")
    doc.table(
        ["Time", "Who", "Action", "Hash"],
        [
            [doc.when(e["at"]), e["actor_name"], e["action"], e["hash"][:16]]
            for e in record["events"]
        ],
        [48, 44, 52, 38],
    )

    config = slicing.get("effective_config") or {}
    if config:
        doc.add_page()
        doc.heading("Appendix: effective slicer configuration")
        doc.font(size=6, mono=True)
        for key in sorted(config):  # one line each (the full values are in the JSON export)
            text = doc.text_safe(f"{key} = {config[key]}")
            doc.cell(
                0,
                2.8,
                text if len(text) <= 150 else text[:147] + "...",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    return bytes(doc.output())


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]  # "ICD-10 code", not "Icd-10 code"


def _order_value(value: Any, doc: _Doc | None = None) -> str:
    """A record value in words: people by name, times in the site's zone, stored values
    (e.g. "surgical_planning") as the lab says them."""
    if isinstance(value, dict):
        if {"name", "username"} <= set(value):
            return value["name"]
        if {"region", "subregion"} <= set(value):  # an anatomy part
            bits = [value.get("region"), value.get("subregion"), value.get("structure")]
            side = value.get("laterality")
            text = " / ".join(b for b in bits if b)
            return text + (f" ({say(side)})" if side and side != "not_applicable" else "")
        return "; ".join(f"{k.replace('_', ' ')}: {_order_value(v, doc)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_order_value(v, doc) for v in value)
    if isinstance(value, bool):
        return say(value)
    if value is None or value == "":
        return "-"
    text = str(value)
    if doc is not None and len(text) >= 19 and text[4] == "-" and text[10] == "T":
        return doc.when(text)
    return say(text)


def statement_pdf(record: dict, site: Site, zone: str = "UTC") -> bytes:
    sections = statement_sections(record, site, zone)
    doc = _Doc(
        f"Annex XIII statement {record['device']['serial']}",
        f"from record SHA-256 {record_digest(record)}",
        zone=zone,
        format="A4",
    )
    doc.alias_nb_pages()
    doc.add_page()
    doc.font("B", 13)
    doc.multi_cell(
        0, 7, "Statement concerning devices for special purposes", new_x="LMARGIN", new_y="NEXT"
    )
    doc.font(size=9)
    doc.multi_cell(
        0,
        5,
        "Custom-made device - Regulation (EU) 2017/745, Annex XIII, section 1",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    doc.ln(3)
    doc.facts(sections)
    doc.ln(10)
    doc.font(size=9)
    doc.cell(
        0,
        5,
        doc.text_safe(f"For the manufacturer: {site.compliance_person}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    doc.cell(
        0, 5, "Signature and date: ______________________________", new_x="LMARGIN", new_y="NEXT"
    )
    return bytes(doc.output())
