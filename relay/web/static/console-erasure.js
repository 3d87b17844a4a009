// Erasing a visitor's or a prisoner's record from the console (admins; relay/web/erasure_api.py,
// docs/erasure.md): a reason from a fixed list (the audit trail keeps codes, never free text)
// and an explicit tick, then the relay's answer in words. Builds on console.js (window.Console);
// console-admin.js puts the buttons on its visitor cards and prisoner rows.
"use strict";

(function () {
  const C = window.Console;
  const $ = (id) => document.getElementById(id);
  const { api, el, button, say } = C;
  const VISITOR_REASONS = [
    ["vetting_refused", "Vetting refused for good"], ["no_longer_visiting", "No longer visiting"],
    ["person_asked", "The person asked"], ["duplicate_record", "Duplicate record"], ["other", "Other"],
  ];
  const PRISONER_REASONS = [
    ["released", "Released"], ["transferred", "Transferred"],
    ["duplicate_record", "Duplicate record"], ["other", "Other"],
  ];
  const WORDS = {
    already_erased: "This record was erased already.",
    visitor_linked_elsewhere: "This visitor is also linked to another establishment: revoke their approvals here instead.",
  };
  const dialog = $("erase-dialog");

  function confirmErase(title, text, reasons) {
    $("erase-title").textContent = title;
    $("erase-text").textContent = text;
    const select = $("erase-reason");
    select.replaceChildren(el("option", { value: "", text: "Choose a reason" }),
      ...reasons.map(([value, label]) => el("option", { value, text: label })));
    $("erase-confirm").checked = false;
    dialog.returnValue = "";
    dialog.showModal();
    select.focus();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? select.value : null),
        { once: true });
    });
  }
  $("erase-cancel").addEventListener("click", () => dialog.close(""));

  async function erase(path, reason, what) {
    try {
      const r = await api("POST", path, { reason, confirm: true });
      const n = r.bookings_stopped.length;
      say(`Erased ${what}${r.visitor_ids.length > 1 ? ` and ${r.visitor_ids.length - 1} household record${r.visitor_ids.length > 2 ? "s" : ""}` : ""}; ${n} coming booking${n === 1 ? "" : "s"} stopped.`, "ok", true);
      return true;
    } catch (err) {
      if (WORDS[err.code]) {
        say(`Could not erase ${what}: ${WORDS[err.code]}`, "error", true);
        $("status").dataset.code = err.code;
      } else {
        C.failed(`Could not erase ${what}`, err);
      }
      return false;
    }
  }

  function visitorButton(v) {
    return button("Erase record…", `Erase record of ${v.name}`, async () => {
      const reason = await confirmErase(`Erase ${v.name}`,
        `${v.name}'s approvals end now, their coming calls are cancelled (or go on without them) and a call in progress ends for them. Their sign-in, photos, face check and personal details are deleted, with the children in their household if they hold a family account.`,
        VISITOR_REASONS);
      if (!reason) return;
      await erase(`/api/v1/staff/visitors/${v.id}/erase`, reason, v.name);
      C.reloadBookings();
      $("visitor-search").requestSubmit();
    }, "danger");
  }

  function prisonerButton(p) {
    return button("Erase record…", `Erase record of ${p.name}`, async () => {
      const reason = await confirmErase(`Erase ${p.name} (${p.number})`,
        `${p.name}'s coming calls are cancelled now (a call in progress ends), their contacts' approvals are revoked, and their kiosk PIN, face check, name and number are deleted.`,
        PRISONER_REASONS);
      if (!reason) return;
      await erase(`/api/v1/staff/prisoners/${p.id}/erase`, reason, p.name);
      C.reloadBookings();
      C.reloadDirectory();
    }, "danger");
  }

  C.erase = { visitorButton, prisonerButton };
})();
