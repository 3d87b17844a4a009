"""Every record kind's SQL once, on both engines: family accounts and households, vetting,
the outbox, laptop enrolment and kiosk PINs, the directory, contacts, visiting hours, the
recordings index and the call runtime. (The booking rules have their own tests.)"""

from __future__ import annotations

from relay import auth
from relay.records.call_state import CallStateRecords
from relay.records.recordings import RecordingIndex
from relay.records.store.visiting import Blackout, Session, VisitingHours
from tests.test_store_world import DAY, HOUR, NOW, approved, make_world


def test_every_record_kind(db_target):
    w = make_world(db_target)
    s = w.store
    try:
        # family accounts, tokens, sessions, household, consent, export, close
        acc = s.register_account("Ann@Example.org ", "pw-hash", "Ann", "1985-01-01", "en", NOW)
        assert s.register_account("ann@example.org", "h", "Ann", "1985-01-01", "en", NOW) is None
        token = s.issue_account_token(acc, "verify", NOW, 3600)
        assert s.use_account_token(token, "verify", NOW + 1) == acc
        assert s.use_account_token(token, "verify", NOW + 2) is None
        s.mark_email_verified(acc)
        a = s.account(acc)
        assert a.email == "ann@example.org" and a.email_verified
        child = s.add_household_child(acc, "Kit", "2018-02-02", "son", NOW)
        assert s.linked_visitors(acc) == {a.visitor_id, child}
        assert s.account_for_visitor(child).id == acc
        s.consent_to_join(w.vid("dad"), a.visitor_id, NOW)
        s.consent_to_join(w.vid("dad"), a.visitor_id, NOW)  # twice: ON CONFLICT DO NOTHING
        assert [v.id for v in s.companions(a.visitor_id)] == [w.vid("dad")]
        sess = s.create_account_session(acc, NOW)
        assert s.session_account(sess, NOW + 60).id == acc
        s.set_language(acc, "cy")
        exported = s.account_export(acc)
        assert exported["account"]["language"] == "cy" and exported["household"][0]["name"] == "Kit"

        # vetting: a draft with photos, submitted, approved
        app_id = s.create_application(
            account_id=acc,
            visitor_id=a.visitor_id,
            prisoner_id=w.prisoner_a,
            relationship="sister",
            date_of_birth="1985-01-01",
            address="1 Road",
            member_ids=[child],
            now=NOW,
        )
        assert s.put_photo(app_id, "identity", "id.bin", "ab" * 32, 10, NOW) is None
        assert s.put_photo(app_id, "identity", "id2.bin", "cd" * 32, 11, NOW) == "id.bin"
        s.put_photo(app_id, "face", "face.bin", "ef" * 32, 12, NOW)
        assert s.submit_application(app_id, NOW + 1).status == "submitted"
        assert [x.id for x in s.vetting_queue(w.est_a)] == [app_id]
        decided = s.decide_application(app_id, w.admin_a, True, "", NOW + 2)
        assert decided.status == "approved"
        assert s.is_approved_contact(w.prisoner_a, a.visitor_id)
        assert {k for (_, k, _, _) in s.expired_vetting_photos(NOW + DAY)} == {"identity", "face"}
        s.drop_vetting_photo(app_id, "face")
        assert s.photo(app_id, "face") is None

        # outbox and the notification cursor
        assert s.enqueue_message("d1", "ann@example.org", "en", "verify", {"x": 1}, NOW)
        assert not s.enqueue_message("d1", "ann@example.org", "en", "verify", {"x": 1}, NOW)
        (msg,) = s.due_messages(NOW + 1, 10)
        s.message_failed(msg.id, "smtp down", None)
        s.message_failed(msg.id, "smtp down", NOW + 60)
        assert s.due_messages(NOW + 1, 10) == []
        s.message_sent(msg.id, NOW + 61)
        assert s.outbox_counts() == {"sent": 1}
        events = s.booking_events_after(0, 100)
        s.set_notify_cursor(int(events[-1]["id"]) if events else 0)
        assert s.notify_cursor() == (int(events[-1]["id"]) if events else 0)

        # laptops: enrolment code to a device key, revocation; kiosk PINs
        lid = w.laptops_a[0][0]
        code = s.start_enrolment(lid, w.admin_a, NOW, 600).code
        laptop, key = s.redeem_enrolment(code, NOW + 1)
        assert laptop.id == lid and s.check_device_key(key)[0].id == lid
        statuses = {st.laptop.id: st for st in s.laptop_statuses(w.est_a)}
        assert statuses[lid].keys == 1 and statuses[lid].enrolled_at == NOW + 1
        assert s.revoke_laptop_keys(lid, w.admin_a, NOW + 2) == 1
        b = approved(w, NOW + DAY, others=("dad",))
        assert [c.booking_id for c in s.laptop_calls(b.laptop_id, NOW, NOW + 2 * DAY)] == [b.id]
        s.set_kiosk_pin(w.prisoner_a, auth.hash_password("1234"), w.admin_a, NOW)
        for _ in range(3):
            pin = s.kiosk_pin_failed(w.prisoner_a, NOW, tries=3)
        assert pin.failures == 3 and pin.locked
        assert s.unlock_kiosk_pin(w.prisoner_a) and not s.kiosk_pin(w.prisoner_a).locked

        # directory and search (LIKE with its escape), contacts, revocation
        names = {v["name"] for v in s.directory(w.est_a)["visitors"]}
        assert {"Mum", "Dad"} <= names
        assert [v["name"] for v in s.search_visitors(w.est_a, "MU")] == ["Mum"]
        assert s.search_visitors(w.est_a, "%") == []
        dad = next(c for c in s.contacts(w.est_a, w.prisoner_a) if c.visitor_id == w.vid("dad"))
        assert s.contact_establishment(dad.id) == w.est_a
        assert s.revoke_contact(dad.id, w.admin_a, NOW).reduced == [b.id]

        # visiting hours with sessions and a blackout
        hours = VisitingHours(
            timezone="Europe/London",
            booking_window_days=14,
            notice_hours=2,
            sessions=(Session(0, "09:00", "11:00", rooms=1),),
            blackouts=(Blackout("2026-12-25", "Christmas"),),
        )
        got = s.set_visiting_hours(w.est_b, hours)
        assert got == s.visiting_hours(w.est_b) and got.sessions[0].rooms == 1

        # the recordings index and the call runtime on the store's connection
        index = RecordingIndex(s.connection)
        rid = index.add(b.id, w.est_a, "x.webm", "video/webm", NOW, NOW + 90 * DAY)
        index.finish(rid, NOW + HOUR, 1234, "00" * 32, "complete")
        index.set_hold(rid, True, "case", "staff:1", NOW)
        assert index.get(rid).legal_hold and index.get(rid).size == 1234
        assert [r.id for r in index.list(establishment_ids={w.est_a})] == [rid]
        assert index.list(establishment_ids=set()) == []
        runtime = CallStateRecords(s.connection)
        runtime.save(b.id, "live", {"b", "a"}, set(), b.ends_at, NOW, None)
        runtime.save(b.id, "paused", {"a"}, {"staff"}, b.ends_at, NOW + 1, None)
        runtime.heartbeat([b.id], NOW + 5)
        saved = runtime.load(b.id)
        assert saved.pause_reasons == {"a"} and saved.heartbeat_at == NOW + 5
        assert [c.booking_id for c in runtime.open_calls()] == [b.id]
        runtime.mark_ended(b.id, NOW + 6)
        assert runtime.open_calls() == []

        s.stub_visitor(a.visitor_id, NOW + 3)  # an erased holder's account is closed
        assert s.account(acc) is None
    finally:
        s.close()
