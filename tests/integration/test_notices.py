"""Member notices (batch/collect/notices.py): one per returned payment and per new or changed coverage flag
at risk, from the shipped templates or a folder of overrides, listed in the manifest CSVs; never two
for the same event, whatever re-runs happen."""
from __future__ import annotations

import csv
from datetime import date

import pytest
from sqlalchemy import select

from batch.collect.coverage import assess_coverage
from batch.store.models import Notice
from batch.collect.notices import MANIFEST_COLUMNS, issue_notices, notice_kind_for_flag

from test_returns import RETURN_DAY, World


@pytest.mark.parametrize("status, grace_month, kind", [
    ("not_started", 0, "coverage_not_started"), ("past_due", 1, "past_due_warning"),
    ("past_due", 2, "termination_warning"), ("termination_pending", 3, "termination_warning"),
    ("termination_pending", 1, "termination_warning"), ("terminated", 4, "coverage_terminated"), ("ok", 0, None),
    ("at_risk", 0, None),  # the returned-payment notice of its return already went out
    ("pending_activation", 0, None),  # coverage not activated yet: nothing missed, no notice
])
def test_notice_kind_for_flag(status, grace_month, kind):
    assert notice_kind_for_flag(status, grace_month) == kind


def _manifest(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_notice_per_event_with_manifest_and_no_duplicates_on_rerun(sessions, keyring, tmp_path):
    w = World(sessions, keyring, tmp_path)
    a = w.member(amount=12345, binder=True)  # January binder, returned R01: retried
    b = w.member(amount=20000, binder=True)  # returned R02: account blocked
    o = w.originate()
    w.process(w.bank.returns([(o[a], "R01"), (o[b], "R02")], RETURN_DAY))
    notices = tmp_path / "notices"
    r = issue_notices(sessions, notices, RETURN_DAY)
    assert r.created == 2 and r.by_kind == {"returned_payment": 2}
    again = issue_notices(sessions, notices, RETURN_DAY)
    assert again.created == 0
    rows = _manifest(notices / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    by_member = {row["member_id"]: row for row in rows}
    assert by_member[a]["notice_kind"] == "returned_payment" and by_member[a]["amount_owed"] == "123.45"
    assert by_member[a]["deadline"] == "2026-12-23"  # the binder's due date is still ahead
    html = (notices / by_member[a]["file"]).read_text()
    assert "Insufficient Funds" in html and "2026-12-07" in html  # when it will be presented again
    assert "$123.45" in html and "Member 1" in html
    html_b = (notices / by_member[b]["file"]).read_text()
    assert "AutoPay is on hold" in html_b
    # no account number in any notice, only its last four digits
    for row in rows:
        text = (notices / row["file"]).read_text()
        number = o[row["member_id"]].entry.dfi_account_number
        assert number not in text and number[-4:] in text
    assert _manifest(notices / RETURN_DAY.isoformat() / "manifest.csv") == rows
    # coverage flags: b's binder was returned, so coverage does not start; a's was re-presented
    # on 2026-12-07, before its due date, so it counts as paid on time
    assess_coverage(sessions, date(2026, 12, 24))
    r = issue_notices(sessions, notices, date(2026, 12, 24))
    assert r.by_kind == {"coverage_not_started": 1}
    assess_coverage(sessions, date(2026, 12, 24))  # unchanged flags: no new notice
    assert issue_notices(sessions, notices, date(2026, 12, 24)).created == 0
    assert len(_manifest(notices / "manifest.csv")) == 3
    (day,) = _manifest(notices / "2026-12-24" / "manifest.csv")
    assert (day["member_id"], day["notice_kind"], day["amount_owed"], day["deadline"]) == \
           (b, "coverage_not_started", "200.00", "")
    with sessions() as s:
        keys = list(s.scalars(select(Notice.event_key)))
    assert len(keys) == len(set(keys)) == 3


def test_templates_can_be_overridden_from_a_folder(sessions, keyring, tmp_path):
    w = World(sessions, keyring, tmp_path)
    a = w.member()
    o = w.originate()
    w.process(w.bank.returns([(o[a], "R01")], RETURN_DAY))
    override = tmp_path / "mytemplates"
    override.mkdir()
    (override / "returned_payment.html.j2").write_text("CUSTOM {{ member_id }} {{ return_code }} {{ amount }}")
    r = issue_notices(sessions, tmp_path / "notices", RETURN_DAY, templates_dir=override)
    (path,) = r.files
    assert path.read_text() == f"CUSTOM {a} R01 $100.00"


def test_notices_for_each_coverage_status(sessions, keyring, tmp_path):
    w = World(sessions, keyring, tmp_path)
    from batch.store.models import Payment

    a = w.member(binder=True, subsidy="aptc", originate_on=date(2026, 12, 18))
    w.member(member_id=a, month=date(2027, 2, 1), originate_on=date(2027, 1, 21))
    with sessions() as s, s.begin():  # February's pull never happens: only January is paid
        for p in s.scalars(select(Payment).where(Payment.coverage_month == date(2027, 2, 1))):
            s.delete(p)
    w.originate(date(2026, 12, 18))
    notices = tmp_path / "notices"
    kinds = []
    for d in (date(2027, 1, 24), date(2027, 2, 24), date(2027, 3, 24), date(2027, 4, 24)):
        assess_coverage(sessions, d)
        kinds += list(issue_notices(sessions, notices, d).by_kind)
    assert kinds == ["past_due_warning", "termination_warning", "termination_warning", "coverage_terminated"]
    rows = _manifest(notices / "manifest.csv")
    assert [r["deadline"] for r in rows] == ["2027-02-23", "2027-03-23", "2027-04-23", ""]
    last = (notices / rows[-1]["file"]).read_text()
    assert "2027-01-31" not in last and "2027-02-28" in last  # coverage ends with grace month 1


def test_flags_at_risk_get_no_notice_and_do_not_hide_the_ones_that_do(sessions, tmp_path, monkeypatch):
    import batch.collect.notices as notices_mod
    from batch.store.models import CoverageFlag

    monkeypatch.setattr(notices_mod, "CHUNK", 2)  # more at_risk flags than one chunk, ahead of a past_due one
    with sessions() as s, s.begin():
        for i, status in enumerate(("at_risk", "at_risk", "at_risk", "past_due")):
            member = f"M9{i:05d}"
            s.add(CoverageFlag(member_id=member, plan_id="HLTH-1", status=status, reason_code="premium_returned",
                               reason="premium for 2027-03 returned (R01 Insufficient Funds)", months_owed=1,
                               amount_owed_cents=10000, deadline=date(2027, 2, 23),
                               grace_month=int(status != "at_risk"), grace_months=3 if status != "at_risk" else 0,
                               subsidy="aptc",
                               assessed_on=date(2027, 2, 19), last_assessed_on=date(2027, 2, 19),
                               current_key=CoverageFlag.key_for(member, "HLTH-1")))
    r = issue_notices(sessions, tmp_path / "notices", date(2027, 2, 19))
    assert (r.created, r.by_kind) == (1, {"past_due_warning": 1})
    assert [row["member_id"] for row in _manifest(tmp_path / "notices" / "manifest.csv")] == ["M900003"]
    assert issue_notices(sessions, tmp_path / "notices", date(2027, 2, 19)).created == 0


def test_manifest_is_machine_read_names_exact_and_quoted(sessions, keyring, tmp_path):
    """The manifest is read by the vendor's system: a name that starts like a formula is stored and
    written exactly as imported (no apostrophe: the vendor prints it), every field quoted."""
    from sqlalchemy import update

    from batch.store.models import Premium

    w = World(sessions, keyring, tmp_path)
    a = w.member(amount=12345, binder=True)
    o = w.originate()
    with sessions() as s, s.begin():
        s.execute(update(Premium).where(Premium.member_id == a).values(member_name="=1+2 Doe"))
    w.process(w.bank.returns([(o[a], "R01")], RETURN_DAY))
    notices = tmp_path / "notices"
    assert issue_notices(sessions, notices, RETURN_DAY).created == 1
    (row,) = _manifest(notices / "manifest.csv")
    assert row["member_name"] == "=1+2 Doe"
    line = (notices / "manifest.csv").read_text().splitlines()[1]
    assert line.startswith(f'"{RETURN_DAY.isoformat()}","{a}","=1+2 Doe","HLTH-1",')
