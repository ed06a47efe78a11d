"""The warnings a design approver must see before signing: they never refuse a design, but
they are shown on the repair page and in the approval form and are part of what the design
signature covers, so nobody signs a mesh whose warnings they were not shown."""

from __future__ import annotations


def design_warnings(repair_report: dict | None, analysis_after: dict | None) -> list[str]:
    """The repair's own warnings (self-intersections, thin walls over a share of the surface,
    implausible size), and a thin-wall note whenever any wall measured thinner than the device
    type's minimum feature size, even on a share too small for the repair's warning."""
    warnings = [w for w in (repair_report or {}).get("warnings") or [] if w]
    walls = (analysis_after or {}).get("thin_walls") or {}
    thinnest = walls.get("min_thickness_mm")
    limit = walls.get("min_feature_mm")
    if (
        thinnest is not None
        and limit
        and thinnest < limit
        and not walls.get("warning")  # the repair's own thin-wall warning is already listed
    ):
        warnings.append(
            f"Walls down to {thinnest:.2f} mm, thinner than the minimum feature size of "
            f"{limit:g} mm, on a small part of the surface (about "
            f"{float(walls.get('thin_share') or 0):.1%}). Check them in the 3D view: they may "
            "not print or may break."
        )
    return warnings
