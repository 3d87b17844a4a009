// Staff administration in the console: book a call for a family from the free slots,
// visitors and their contacts (search, revoke), prisoners (add, eligibility) and the
// establishment's visiting hours. Builds on console.js (window.Console); the relay checks
// every rule and every role, this page only shows what it answers, in words.
"use strict";

(function () {
  const C = window.Console;
  const $ = (id) => document.getElementById(id);
  const { api, el, button, say, ask } = C;
  const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
  // Refusals whose message from the relay already says what and why (with times and numbers).
  const OWN_WORDS = new Set([
    "outside_visiting_hours", "blackout_date", "too_little_notice", "beyond_booking_window",
    "allowance_exceeded", "bad_visiting_hours", "bad_timezone", "prisoner_number_taken",
    "slot_full", "prisoner_busy", "visitor_not_approved", "visitor_not_verified",
    "main_visitor_under_age", "too_many_visitors", "bad_call_length",
  ]);

  function failed(action, err) {
    if (OWN_WORDS.has(err.code) && err.message) {
      say(`${action}: ${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}.`, "error", true);
      $("status").dataset.code = err.code;
    } else {
      C.failed(action, err);
    }
  }

  let hours = null; // the establishment's visiting hours, as the relay last said
  let directory = { prisoners: [], visitors: [], staff: [] };

  const isAdmin = () => (C.me() || {}).role === "admin";

  // --- time zones: the establishment's local time, whatever the browser's is ----------------

  function parts(ms, tz) {
    const fmt = new Intl.DateTimeFormat("en-GB", { timeZone: tz, hourCycle: "h23", year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return Object.fromEntries(fmt.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  }

  function offsetMs(ms, tz) {
    const p = parts(ms, tz);
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - ms;
  }

  // "2026-12-11T03:00" in the zone -> epoch seconds (a time in a spring-forward gap moves on).
  function zonedToEpoch(local, tz) {
    const [d, t] = local.split("T");
    const [y, mo, da] = d.split("-").map(Number);
    const [h, mi] = t.split(":").map(Number);
    const wall = Date.UTC(y, mo - 1, da, h, mi);
    let guess = wall - offsetMs(wall, tz);
    guess = wall - offsetMs(guess, tz);
    return guess / 1000;
  }

  function localText(ts, tz) {
    return new Date(ts * 1000).toLocaleString("en-GB", { timeZone: tz, weekday: "short",
      day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  }

  // --- names -----------------------------------------------------------------------------------

  async function loadDirectory() {
    try {
      directory = await api("GET", "/api/v1/staff/directory");
    } catch (err) {
      if (err.status !== 401) failed("Could not load names", err);
      return;
    }
    for (const p of directory.prisoners) C.names.prisoners.set(p.id, p.name);
    for (const v of directory.visitors) C.names.visitors.set(v.id, v.name);
    for (const s of directory.staff) C.names.staff.set(s.id, s.username);
    C.reloadBookings();
    renderPrisoners();
    fillPrisonerSelect();
  }

  // --- book a call for a family ------------------------------------------------------------------

  function fillPrisonerSelect() {
    const sel = $("book-prisoner");
    const keep = sel.value;
    sel.textContent = "";
    for (const p of directory.prisoners.filter((x) => x.video_call_eligible)) {
      sel.append(el("option", { value: p.id, text: `${p.name} (${p.number})` }));
    }
    if (keep) sel.value = keep;
  }

  function fillMinutes() {
    const sel = $("book-minutes");
    sel.textContent = "";
    for (const m of (hours && hours.allowed_call_minutes) || [30]) {
      sel.append(el("option", { value: m, text: `${m} minutes` }));
    }
  }

  async function partyFor(prisonerId) {
    const { contacts } = await api("GET", `/api/v1/staff/contacts?prisoner_id=${prisonerId}`);
    return contacts.filter((c) => c.status === "approved")
      .map((c) => ({ id: c.visitor_id, name: C.names.visitors.get(c.visitor_id) || `visitor ${c.visitor_id}` }));
  }

  $("book-find").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const prisonerId = Number($("book-prisoner").value);
    const minutes = Number($("book-minutes").value);
    if (!prisonerId) return say("Choose a prisoner first.", "error", true);
    let slots, party;
    try {
      [slots, party] = await Promise.all([
        api("GET", `/api/v1/staff/slots?prisoner_id=${prisonerId}&minutes=${minutes}&limit=60`),
        partyFor(prisonerId),
      ]);
    } catch (err) {
      return failed("Could not find free slots", err);
    }
    const a = slots.allowance;
    const note = $("book-allowance");
    note.hidden = false;
    note.textContent = `This month: ${a.used} of ${a.limit} minutes used, ${a.pending} requested and waiting.`;
    $("book-tz").textContent = slots.timezone;
    const list = $("book-slot-list");
    list.textContent = "";
    slots.slots.forEach((s, i) => {
      const id = `book-slot-${i}`;
      list.append(el("div", { class: "slot" },
        el("input", { type: "radio", name: "book-slot", id, value: s.starts_at, "data-local": s.local_start }),
        el("label", { for: id, text: localText(s.starts_at, slots.timezone) })));
    });
    $("book-no-slots").hidden = slots.slots.length > 0;
    const main = $("book-main");
    main.textContent = "";
    const others = $("book-party-list");
    others.textContent = "";
    for (const v of party) {
      main.append(el("option", { value: v.id, text: v.name }));
      const id = `book-party-${v.id}`;
      others.append(el("div", { class: "slot" },
        el("input", { type: "checkbox", id, value: v.id }), el("label", { for: id, text: v.name })));
    }
    syncParty();
    $("book-form").hidden = false;
    $("book-form").dataset.prisoner = prisonerId;
    $("book-form").dataset.minutes = minutes;
    $("book-form").dataset.tz = slots.timezone;
  });

  // The main visitor is on the call anyway: only the others are offered as "also".
  function syncParty() {
    const main = $("book-main").value;
    for (const row of $("book-party-list").querySelectorAll(".slot")) {
      const box = row.querySelector("input");
      row.hidden = box.value === main;
      if (row.hidden) box.checked = false;
    }
  }
  $("book-main").addEventListener("change", syncParty);

  $("book-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = $("book-form");
    const picked = form.querySelector('input[name="book-slot"]:checked');
    const other = $("book-other").value;
    let startsAt;
    if (other) startsAt = zonedToEpoch(other, form.dataset.tz);
    else if (picked) startsAt = Number(picked.value);
    else return say("Choose a free slot or type another time.", "error", true);
    const prisoner = directory.prisoners.find((p) => p.id === Number(form.dataset.prisoner));
    const main = Number($("book-main").value);
    const party = [...$("book-party-list").querySelectorAll("input:checked")].map((i) => Number(i.value))
      .filter((v) => v !== main);
    const submit = $("book-submit");
    submit.disabled = true;
    try {
      const b = await api("POST", "/api/v1/staff/bookings", {
        prisoner_number: prisoner.number, call_type: $("book-type").value, starts_at: startsAt,
        minutes: Number(form.dataset.minutes), main_visitor_id: main, visitor_ids: party,
      });
      say(`Booked: call ${b.id} with ${prisoner.name}, ${localText(b.starts_at, form.dataset.tz)} (approved).`, "ok", true);
      $("book-other").value = "";
      C.reloadBookings();
      $("book-find").requestSubmit();
    } catch (err) {
      failed("Could not book the call", err);
    } finally {
      submit.disabled = false;
    }
  });

  // --- visitors and contacts ---------------------------------------------------------------------

  async function searchVisitors() {
    const q = $("visitor-q").value.trim();
    if (!q) return;
    let visitors;
    try {
      ({ visitors } = await api("GET", `/api/v1/staff/visitors?q=${encodeURIComponent(q)}`));
    } catch (err) {
      return failed("Could not search visitors", err);
    }
    const list = $("visitor-results");
    list.textContent = "";
    if (!visitors.length) list.append(el("li", { class: "muted", text: `Nobody called “${q}” is linked to your prisoners.` }));
    for (const v of visitors) {
      const contacts = el("ul", { class: "contacts" });
      for (const c of v.contacts) {
        const li = el("li", { "data-contact": c.contact_id, "data-status": c.status },
          el("span", { text: `${c.prisoner_name} (${c.prisoner_number}): ` }),
          el("span", { class: c.status === "approved" ? "" : "muted", text: c.status === "approved" ? "approved contact" : "revoked" }));
        if (c.status === "approved") {
          li.append(" ", button("Revoke…", `Revoke ${v.name} as ${c.prisoner_name}'s contact`,
            () => revoke(v, c), "danger"));
        }
        contacts.append(li);
      }
      const card = el("li", { class: "card", "data-visitor": v.id },
        el("strong", { text: v.name }), " ",
        el("span", { class: "muted small", text: v.date_of_birth ? `born ${v.date_of_birth}, identity ${v.identity_verified ? "verified" : "not verified"}` : "record erased" }),
        contacts);
      if (isAdmin() && C.erase && v.date_of_birth) card.append(el("div", { class: "actions" }, C.erase.visitorButton(v)));
      list.append(card);
    }
  }

  async function revoke(v, c) {
    const ok = await ask({
      title: `Revoke ${v.name}`,
      text: `${v.name} stops being ${c.prisoner_name}'s approved contact now. Their coming calls with ${c.prisoner_name} are cancelled, and a call in progress ends for them at once.`,
      ok: "Revoke approval", danger: true,
    });
    if (ok === null) return;
    try {
      const r = await api("POST", `/api/v1/staff/contacts/${c.contact_id}/revoke`);
      const n = r.cancelled_booking_ids.length;
      say(`${v.name} is no longer ${c.prisoner_name}'s contact${n ? `; ${n} booking${n === 1 ? "" : "s"} stopped` : ""}.`, "ok", true);
    } catch (err) {
      failed(`Could not revoke ${v.name}`, err);
    }
    C.reloadBookings();
    searchVisitors();
  }

  $("visitor-search").addEventListener("submit", (ev) => { ev.preventDefault(); searchVisitors(); });

  // --- prisoners ---------------------------------------------------------------------------------

  function renderPrisoners() {
    const tbody = $("prisoner-table").querySelector("tbody");
    tbody.textContent = "";
    for (const p of directory.prisoners) {
      const actions = el("div", { class: "actions" });
      if (isAdmin() && !p.number.startsWith("ERASED-")) {
        actions.append(button(p.video_call_eligible ? "Stop video calls" : "Allow video calls",
          `${p.video_call_eligible ? "Stop" : "Allow"} video calls for ${p.name}`, () => setEligible(p, !p.video_call_eligible)));
        if (C.erase) actions.append(" ", C.erase.prisonerButton(p));
      }
      tbody.append(el("tr", { "data-prisoner": p.id },
        el("td", { "data-label": "Name", text: p.name }),
        el("td", { "data-label": "Number", text: p.number }),
        el("td", { "data-label": "Video calls", text: p.video_call_eligible ? "allowed" : "stopped" }),
        el("td", { "data-label": "Actions" }, actions)));
    }
  }

  async function setEligible(p, eligible) {
    try {
      await api("POST", `/api/v1/staff/prisoners/${p.id}/eligibility`, { video_call_eligible: eligible });
      say(`${p.name}: video calls ${eligible ? "allowed" : "stopped"}.`, "ok");
    } catch (err) {
      failed(`Could not change ${p.name}'s video calls`, err);
    }
    loadDirectory();
  }

  $("prisoner-add").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await api("POST", "/api/v1/staff/prisoners", {
        number: $("prisoner-number").value.trim(), name: $("prisoner-name").value.trim(),
      });
      say(`Added ${p.name} (${p.number}).`, "ok");
      $("prisoner-number").value = "";
      $("prisoner-name").value = "";
    } catch (err) {
      failed("Could not add the prisoner", err);
    }
    loadDirectory();
  });

  // --- visiting hours ----------------------------------------------------------------------------

  // Text, not type=time: a session may end at 24:00, which a time input cannot hold.
  function timeInput(value, label) {
    return el("input", { value, required: true, "aria-label": label, inputmode: "numeric",
      pattern: "([01][0-9]|2[0-3]):[0-5][0-9]|24:00", placeholder: "HH:MM", maxlength: 5, size: 5 });
  }

  function sessionRow(s) {
    const day = el("select", { "aria-label": "Day" });
    WEEKDAYS.forEach((name, i) => day.append(el("option", { value: i, text: name, selected: i === s.weekday })));
    const row = el("div", { class: "session-row" }, day,
      timeInput(s.starts, "Starts"), el("span", { text: "to" }),
      timeInput(s.ends, "Ends"),
      el("label", { class: "rooms" }, "rooms ",
        el("input", { type: "number", min: 0, max: 1000, value: s.rooms, "aria-label": "Rooms (0 = every laptop)" })));
    row.append(button("Remove", `Remove the ${WEEKDAYS[s.weekday]} session`, () => row.remove()));
    return row;
  }

  function blackoutRow(b) {
    const row = el("div", { class: "session-row" },
      el("input", { type: "date", value: b.date, required: true, "aria-label": "Date" }),
      el("input", { value: b.reason, maxlength: 500, "aria-label": "Reason", placeholder: "reason" }));
    row.append(button("Remove", `Remove the blackout on ${b.date || "this date"}`, () => row.remove()));
    return row;
  }

  function renderHours() {
    $("hours-tz").value = hours.timezone;
    $("hours-window").value = hours.booking_window_days;
    $("hours-notice").value = hours.notice_hours;
    const sessions = $("hours-sessions");
    sessions.textContent = "";
    hours.sessions.forEach((s) => sessions.append(sessionRow(s)));
    if (!hours.sessions.length) sessions.append(el("p", { class: "muted", text: "No sessions: no calls can be booked." }));
    const blackouts = $("hours-blackouts");
    blackouts.textContent = "";
    hours.blackout_dates.forEach((b) => blackouts.append(blackoutRow(b)));
    const admin = isAdmin();
    for (const node of $("hours").querySelectorAll("input, select, #hours-sessions button, #hours-blackouts button")) node.disabled = !admin;
    for (const node of document.querySelectorAll("[data-admin]")) node.hidden = !admin;
    $("hours-readonly").hidden = admin;
    fillMinutes();
  }

  async function loadHours() {
    try {
      hours = await api("GET", "/api/v1/staff/visiting-hours");
    } catch (err) {
      if (err.status !== 401) failed("Could not load visiting hours", err);
      return;
    }
    renderHours();
  }

  $("hours-add-session").addEventListener("click", () => {
    const sessions = $("hours-sessions");
    sessions.querySelectorAll("p.muted").forEach((p) => p.remove());
    const row = sessionRow({ weekday: 0, starts: "09:00", ends: "11:00", rooms: 0 });
    sessions.append(row);
    row.querySelector("select").focus();
  });

  $("hours-add-blackout").addEventListener("click", () => {
    const row = blackoutRow({ date: "", reason: "" });
    $("hours-blackouts").append(row);
    row.querySelector("input").focus();
  });

  $("hours-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const sessions = [...$("hours-sessions").querySelectorAll(".session-row")].map((row) => {
      const [starts, ends, rooms] = row.querySelectorAll("input");
      return { weekday: Number(row.querySelector("select").value), starts: starts.value.trim(),
        ends: ends.value.trim(), rooms: Number(rooms.value || 0) };
    });
    const blackout_dates = [...$("hours-blackouts").querySelectorAll(".session-row")].map((row) => {
      const [date, reason] = row.querySelectorAll("input");
      return { date: date.value, reason: reason.value.trim() };
    });
    try {
      hours = await api("PUT", "/api/v1/staff/visiting-hours", {
        timezone: $("hours-tz").value.trim(),
        booking_window_days: Number($("hours-window").value),
        notice_hours: Number($("hours-notice").value),
        sessions, blackout_dates,
      });
      renderHours();
      say(`Visiting hours saved: ${hours.sessions.length} weekly session${hours.sessions.length === 1 ? "" : "s"}.`, "ok");
    } catch (err) {
      failed("Could not save visiting hours", err);
    }
  });

  // --- with the session ---------------------------------------------------------------------------

  C.reloadDirectory = loadDirectory; // after an erasure (console-erasure.js)
  C.hooks.login.push(() => {
    loadHours();
    loadDirectory();
  });
  C.hooks.logout.push(() => {
    hours = null;
    directory = { prisoners: [], visitors: [], staff: [] };
    $("book-form").hidden = true;
    $("visitor-results").textContent = "";
  });
  if (C.me()) { loadHours(); loadDirectory(); }
})();
