"""Bar charts of the lab metrics, drawn with matplotlib's Agg backend (no display), as PNG
or SVG bytes. Each bar carries its value as a label, so the picture states the CSV's numbers;
SVG keeps text as text (searchable, and checked by the tests)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def bar_chart(
    title: str, labels: list[str], values: list[float], unit: str, fmt: str = "png"
) -> bytes:
    """A horizontal bar chart; an empty one says there is no data in the range."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be png or svg, not {fmt!r}")
    height = max(2.4, 0.55 * len(labels) + 1.4)
    fig = Figure(figsize=(7.5, height), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title)
    if labels:
        bars = ax.barh(range(len(labels)), values, color="#4a7bd0")
        ax.set_yticks(range(len(labels)), labels=labels)
        ax.invert_yaxis()
        ax.bar_label(bars, labels=[f"{v:g} {unit}" for v in values], padding=3)
        top = max(values) if values and max(values) > 0 else 1.0
        ax.set_xlim(0, top * 1.25)
        ax.set_xlabel(unit)
    else:
        ax.text(0.5, 0.5, "no data in this range", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pocprint"}):
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()
