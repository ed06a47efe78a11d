"""Dispatch policy (pure rules): urgent override before earliest deadline, validated
combination per device type, loaded material, reachability, material and maintenance
objections, choice of slice, and predicted finish times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pocprint.domain.combinations import Combination, validated_profiles
from pocprint.domain.dispatch import (
    JobView,
    PrinterView,
    SliceOption,
    plan,
    predict_finish,
    queue_order,
    refusals,
)
from pocprint.domain.placement import BuildVolume, turn_to_fit

TODAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
BIG = BuildVolume(250, 210, 210)
SMALL = BuildVolume(180, 180, 180)
COMBOS = (
    Combination("pla-250", "PLA", frozenset({"anatomical_model"})),
    Combination("petg-250", "PETG", frozenset({"anatomical_model", "surgical_guide"})),
    Combination("pla-180", "PLA", frozenset({"anatomical_model"})),
)


def printer(pid, material="PLA", profiles=("pla-250", "petg-250"), volume=BIG, **kw):
    offered = frozenset(profiles)
    values = dict(
        id=pid,
        name=f"p{pid}",
        idle=True,
        plate_clear=True,
        profiles=offered,
        volume=volume,
        calibration_due=TODAY + timedelta(days=30),
        material=material,
        validated={
            t: validated_profiles(COMBOS, f"p{pid}", "m", offered, t)
            for t in ("anatomical_model", "surgical_guide")
        },
    )
    values.update(kw)
    return PrinterView(**values)


def job(jid, days, device_type="anatomical_model", slices=None, urgent=False, minutes=60):
    slices = slices or (
        SliceOption("pla-250", "PLA", (50, 50, 20)),
        SliceOption("petg-250", "PETG", (50, 50, 20)),
    )
    return JobView(
        jid,
        slices[0].profile_id,
        TODAY + timedelta(days=days),
        NOW - timedelta(hours=jid),
        slices[0].extents,
        device_type=device_type,
        slices=tuple(slices),
        urgent=urgent,
        estimated_time_s=minutes * 60,
    )


def test_urgent_jobs_go_first_then_earliest_deadline():
    order = queue_order([job(1, 5), job(2, 1), job(3, 9, urgent=True), job(4, 3)])
    assert [j.id for j in order] == [3, 2, 4, 1]


def test_a_guide_goes_only_to_a_printer_loaded_with_its_validated_material():
    pla, petg = printer(1, "PLA"), printer(2, "PETG")
    guide = job(1, 1, "surgical_guide")
    assert any(
        "not validated on this printer for surgical guides" in r
        for r in refusals(pla, guide, TODAY)
    )
    chosen = plan([pla, petg], [guide], TODAY)
    assert [(a.job.id, a.printer.id, a.slice.profile_id) for a in chosen] == [(1, 2, "petg-250")]


def test_the_slice_sent_matches_the_printer_material():
    chosen = plan([printer(2, "PETG")], [job(1, 1)], TODAY)
    assert chosen[0].slice == SliceOption("petg-250", "PETG", (50, 50, 20))
    none = plan([printer(3, "TPU")], [job(1, 1)], TODAY)
    assert none == []
    reasons = refusals(printer(3, "TPU"), job(1, 1), TODAY)
    assert "printer is loaded with TPU, the pla-250 slice needs PLA" in reasons


def test_routing_by_build_volume():
    small = printer(2, profiles=("pla-180",), volume=SMALL)
    big_part = job(1, 1, slices=(SliceOption("pla-250", "PLA", (200, 40, 10)),))
    small_part = job(
        2,
        2,
        slices=(
            SliceOption("pla-250", "PLA", (40, 40, 10)),
            SliceOption("pla-180", "PLA", (40, 40, 10)),
        ),
    )
    chosen = plan([small, printer(1)], [big_part, small_part], TODAY)
    assert {(a.job.id, a.printer.id, a.slice.profile_id) for a in chosen} == {
        (1, 1, "pla-250"),
        (2, 2, "pla-180"),
    }


def test_printer_level_refusals_name_the_reason():
    cases = [
        ({"reachable": False}, "does not answer"),
        ({"plate_clear": False}, "plate not confirmed clear"),
        ({"idle": False}, "not idle"),
        ({"calibration_due": TODAY - timedelta(days=1)}, "calibration was due on 2026-11-21"),
        ({"blocks": ("material lot L1 expired on 2026-10-01",)}, "material lot L1 expired"),
    ]
    for change, reason in cases:
        p = printer(1, **change)
        assert any(reason in r for r in refusals(p, job(1, 1), TODAY)), change
        assert plan([p], [job(1, 1)], TODAY) == []


def test_a_job_no_printer_can_take_does_not_block_the_next():
    guide = job(1, 1, "surgical_guide")  # PETG only; only a PLA printer is free
    model = job(2, 5)
    chosen = plan([printer(1, "PLA")], [guide, model], TODAY)
    assert [(a.job.id, a.printer.id) for a in chosen] == [(2, 1)]


def test_predicted_finish_follows_the_queue_over_the_fleet():
    p1, p2 = printer(1), printer(2, profiles=("pla-180",), volume=SMALL)
    busy = {1: NOW + timedelta(minutes=30)}
    a = job(1, 1, minutes=60)  # only p1 (pla-250 / petg-250)
    b = job(2, 2, minutes=120)
    c = job(3, 3, slices=(SliceOption("pla-180", "PLA", (10, 10, 10)),), minutes=10)
    finish = predict_finish([p1, p2], busy, [a, b, c], NOW)
    assert finish[1] == NOW + timedelta(minutes=90)
    assert finish[2] == NOW + timedelta(minutes=210)
    assert finish[3] == NOW + timedelta(minutes=10)
    assert predict_finish([p2], {}, [a], NOW) == {1: None}


def test_quarter_turn_only_when_it_makes_the_part_fit():
    assert turn_to_fit((200, 240, 10), BIG)
    assert not turn_to_fit((100, 100, 10), BIG)
    assert not turn_to_fit((260, 260, 10), BIG)


def test_combination_narrowed_to_named_printers():
    combo = Combination(
        "pla-250", "PLA", frozenset({"anatomical_model"}), printers=frozenset({"p1"})
    )
    offered = frozenset({"pla-250"})
    assert combo.allows("p1", "m", offered, "anatomical_model")
    assert not combo.allows("p2", "m", offered, "anatomical_model")
    assert not combo.allows("p1", "m", frozenset(), "anatomical_model")
    assert not combo.allows("p1", "m", offered, "surgical_guide")


def test_a_slice_in_another_material_than_the_order_names_is_never_dispatched():
    """Material follows the order, not the printer whose plate was cleared first: even a
    slice left over in PETG (say, from before the order was changed) is refused for a PLA
    order, and the PLA printer takes the job with the PLA slice."""
    import dataclasses

    pla, petg = printer(1, "PLA"), printer(2, "PETG")
    ordered_pla = dataclasses.replace(job(1, 1), material="PLA")
    assert plan([petg], [ordered_pla], TODAY) == []
    assert any(
        "the order names PLA; the petg-250 slice is PETG" in r
        for r in refusals(petg, ordered_pla, TODAY)
    )
    (chosen,) = plan([petg, pla], [ordered_pla], TODAY)
    assert chosen.printer.id == 1 and chosen.slice.material == "PLA"
