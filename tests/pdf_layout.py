"""Layout checks on rendered PDFs (pypdfium2): text boxes that overlap, and timestamps or
program text that a person should never read in a record."""

from __future__ import annotations

import re

import pypdfium2 as pdfium

# A box may touch its neighbour (kerning, a space between runs); more than this is overlap.
TOLERANCE_PT = 0.6


def text_boxes(pdf: bytes) -> list[list[tuple[float, float, float, float, str]]]:
    """Per page: the rectangles of text runs (left, bottom, right, top) with their text."""
    document = pdfium.PdfDocument(pdf)
    pages = []
    for index in range(len(document)):
        textpage = document[index].get_textpage()
        boxes = []
        for r in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(r)
            text = textpage.get_text_bounded(left, bottom, right, top).strip()
            if text:
                boxes.append((left, bottom, right, top, text))
        pages.append(boxes)
    return pages


def overlaps(pdf: bytes) -> list[str]:
    """Every pair of text boxes on a page that overlap by more than the tolerance."""
    found = []
    for number, boxes in enumerate(text_boxes(pdf), start=1):
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                dx = min(a[2], b[2]) - max(a[0], b[0])
                dy = min(a[3], b[3]) - max(a[1], b[1])
                if dx > TOLERANCE_PT and dy > TOLERANCE_PT:
                    found.append(f"page {number}: {a[4]!r} overlaps {b[4]!r}")
    return found


def page_texts(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    return [document[i].get_textpage().get_text_range() for i in range(len(document))]


WRAPPED_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]?\s*[\r\n]+\s*\d\d:\d\d")
MICROSECONDS = re.compile(r"\d\d:\d\d:\d\d\.\d{3,6}")
ISO_T = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
