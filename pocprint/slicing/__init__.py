"""Slicing: validated PrusaSlicer profiles, the PrusaSlicer CLI wrapper and G-code metadata.

PrusaSlicer (AGPL-3) is only ever run as a separate program; nothing here links to it.
"""
