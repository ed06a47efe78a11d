"""`make run` (pocprint demo run): the demo printers get a demo lot so a demo job can be
dispatched; real printers are never stocked behind the lab's back."""

from __future__ import annotations

from sqlmodel import select

from pocprint import cli
from pocprint.services.materials import current_lot
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, MaterialLot, Printer

from conftest import make_settings, write_printer


def test_demo_start_loads_a_marked_demo_lot_once_and_only_on_demo_printers(
    tmp_path, database_url, capsys
):
    printers_dir = tmp_path / "printers"
    demo = write_printer(printers_dir, "demo-x", "http://127.0.0.1:9", key="k")
    demo.write_text(demo.read_text() + "demo = true\n")
    write_printer(printers_dir, "real-y", "http://127.0.0.1:9", key="k", material="PETG")
    lab = cli._prepare(make_settings(tmp_path, database_url, printers_dir))
    try:
        cli._stock_demo_printers(lab)
        cli._stock_demo_printers(lab)  # a restart: nothing more is received or loaded
        with read_session(lab.engine) as s:
            lots = s.exec(select(MaterialLot)).all()
            printers = {p.name: p for p in s.exec(select(Printer)).all()}
            loaded = current_lot(s, printers["demo-x"].id)
            unstocked = current_lot(s, printers["real-y"].id)
            received = s.exec(select(AuditEvent).where(AuditEvent.action == "lot.received")).all()
        assert [(lot.material, lot.manufacturer) for lot in lots] == [
            ("PLA", "demo lot, not for clinical use")
        ]
        assert loaded is not None and loaded.id == lots[0].id
        assert unstocked is None
        assert [e.actor for e in received] == ["demo"]
        assert "loaded demo lot DEMO-PLA-" in capsys.readouterr().out
    finally:
        lab.engine.dispose()
