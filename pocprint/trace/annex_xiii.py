"""EU MDR 2017/745 Annex XIII section 1 statement for a custom-made device, from its record.

Items follow the national lists that paraphrase Annex XIII 1 (DOMAIN.md section 4; the
exact lettering of the regulation is to be checked against EUR-Lex): manufacturer and all
manufacturing sites; authorised representative; device identification; exclusive use by one
patient (coded); prescriber and institution; the characteristics from the prescription;
conformity with Annex I or the requirements not met and why; medicinal substances or tissues.
Keep the statement at least 10 years (15 for implantable devices).
"""

from __future__ import annotations

from pocprint.domain.times import local_text
from pocprint.trace.site import Site

CUSTOM_MADE = "custom_made"


class NotCustomMade(ValueError):
    pass


def statement_sections(record: dict, site: Site, zone: str = "UTC") -> list[tuple[str, str]]:
    order = record.get("order") or {}
    route = order.get("regulatory_route")
    if route != CUSTOM_MADE:
        raise NotCustomMade(
            f"device {record['device']['serial']} is not a custom-made device "
            f"(regulatory route: {route or 'not recorded'}); Annex XIII applies to custom-made "
            "devices only"
        )
    device = record["device"]
    sites = "; ".join(site.sites) or site.address
    exceptions = site.gspr_exceptions.strip()
    material = record.get("material") or {}
    lot = material.get("lot") or {}
    release = record.get("release") or {}
    return [
        ("Manufacturer", f"{site.name}, {site.address}".strip(", ")),
        ("Manufacturing sites", sites),
        (
            "Authorised representative",
            site.authorised_representative or "Not applicable (manufacturer established in the EU)",
        ),
        (
            "Device",
            f"{device['device_type'].replace('_', ' ').capitalize()}, serial {device['serial']}, "
            f"design version {device['design_version']}, case {device['case']}; "
            f"material {material.get('material') or '-'}"
            + (f", lot {lot.get('lot_number')}" if lot else ""),
        ),
        (
            "Patient",
            f"Intended exclusively for the use of the patient coded {device['patient_code']}.",
        ),
        (
            "Prescriber",
            f"{order.get('prescriber_name') or '-'} ({order.get('prescriber_qualification') or '-'}), "
            f"ordered by {order.get('ordering_clinician') or '-'}",
        ),
        (
            "Characteristics specified in the prescription",
            order.get("design_characteristics") or "-",
        ),
        (
            "Indication",
            f"{order.get('indication') or '-'} (ICD-10 {order.get('icd10_code') or '-'})",
        ),
        (
            "General safety and performance requirements",
            site.gspr_statement
            + (
                f" Requirements not fully met, with the grounds: {exceptions}" if exceptions else ""
            ),
        ),
        (
            "Medicinal substances, tissues or cells",
            "The device does not incorporate a medicinal substance, nor tissues or cells of "
            "human or animal origin or their derivatives.",
        ),
        (
            "Release",
            (
                f"Released by {release.get('signer')} on "
                f"{local_text(release.get('signed_at'), zone)}"
                + ("" if release.get("state") == "valid" else " (signature void: sign again)")
            )
            if release
            else "Not released yet.",
        ),
        (
            "Retention",
            "This statement is kept for at least 10 years after the device was placed on the "
            "market (15 years for implantable devices).",
        ),
    ]


def statement_text(record: dict, site: Site, zone: str = "UTC") -> str:
    lines = [
        "STATEMENT CONCERNING DEVICES FOR SPECIAL PURPOSES",
        "Custom-made device - Regulation (EU) 2017/745, Annex XIII, section 1",
        "",
    ]
    for heading, text in statement_sections(record, site, zone):
        lines.append(f"{heading}: {text}")
    lines += [
        "",
        f"Generated from device history record {record['schema']} at "
        f"{local_text(record['generated_at'], zone)}.",
    ]
    return "\n".join(lines) + "\n"
