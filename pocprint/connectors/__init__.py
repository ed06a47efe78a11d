"""Printer connectors: one small protocol, one adapter per printer host software.

The service talks to printers only through :class:`pocprint.connectors.base.PrinterConnector`,
so dispatch and traceability code never depend on a vendor API.
"""
