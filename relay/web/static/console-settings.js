// The establishment's identity setting in the console: whether a side with nobody enrolled
// joins unchecked or waits for staff to admit it (docs/identity.md). Officers read it, admins
// change it; the relay checks the role and audits every change. Builds on console.js.
"use strict";

(function () {
  const C = window.Console;
  const $ = (id) => document.getElementById(id);
  const { api, say } = C;
  const WORDS = {
    true: "waits until a member of staff admits it",
    false: "joins unchecked, shown to staff as not checked",
  };

  const isAdmin = () => (C.me() || {}).role === "admin";
  const path = () => `/api/v1/staff/establishments/${C.me().establishment_id}/identity`;

  function render(s) {
    const choice = s.set_here ? String(s.unenrolled_needs_staff) : "default";
    for (const radio of document.querySelectorAll('input[name="idset-unenrolled"]')) {
      radio.checked = radio.value === choice;
      radio.disabled = !isAdmin();
    }
    $("idset-default-label").textContent = `The relay's default (now: ${WORDS[s.relay_default]})`;
    $("idset-now").textContent = `In force for the next call: a side with nobody enrolled ${WORDS[s.unenrolled_needs_staff]}${s.set_here ? "" : " (the relay's default)"}.`;
    $("idset-save").hidden = !isAdmin();
    $("idset-readonly").hidden = isAdmin();
  }

  async function load() {
    try {
      render(await api("GET", path()));
    } catch (err) {
      if (err.status !== 401) C.failed("Could not load the identity setting", err);
    }
  }

  $("idset-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const picked = document.querySelector('input[name="idset-unenrolled"]:checked');
    if (!picked) return say("Choose what happens to a side with nobody enrolled.", "error", true);
    const value = picked.value === "default" ? null : picked.value === "true";
    try {
      const s = await api("PUT", path(), { unenrolled_needs_staff: value });
      render(s);
      say(`Identity setting saved: a side with nobody enrolled ${WORDS[s.unenrolled_needs_staff]}.`, "ok");
    } catch (err) {
      C.failed("Could not save the identity setting", err);
    }
  });

  C.hooks.login.push(load);
  C.hooks.logout.push(() => { $("idset-now").textContent = ""; });
  if (C.me()) load();
})();
