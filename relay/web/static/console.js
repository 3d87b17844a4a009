// The staff console: live calls of my establishment (watch, pause, resume, end, audit
// timeline with evidence), requested bookings (approve, decline) and recordings (play, legal
// hold). Plain browser JavaScript, no build step; the page's CSP allows no inline script.
// The relay is the one authority on a call's state: this page only asks it and shows what
// it says (the call list is polled; a watched call also gets the relay's state messages).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const BOOKINGS_MS = 15000;
  const ENDED_KEEP_MS = 30000;
  const endedAt = new Map(); // booking id -> when this page first saw its call ended

  // Every error code the API, the recordings API and signalling send, in staff's words.
  const ERROR_TEXT = {
    unauthenticated: "Your session has ended. Log in again.",
    bad_credentials: "Wrong username or password.",
    rate_limited: "Too many refused attempts from this address. Wait a minute, then try again.",
    forbidden: "Your role may not do this. Ask an admin.",
    not_found: "Not found: it may have been removed.",
    method_not_allowed: "The relay does not allow that here. Reload the page.",
    http_error: "The relay refused the request.",
    internal_error: "The relay hit an internal error (it has been logged). Try again.",
    invalid_request: "The relay refused the request as malformed. Reload the page.",
    bad_json: "The relay refused the request as malformed. Reload the page.",
    body_too_large: "That is too long: shorten the note or reason.",
    unsupported_media_type: "The relay refused the request's format. Reload the page.",
    booking_not_found: "No such booking in your establishment.",
    contact_not_found: "No such contact approval in your establishment.",
    prisoner_not_found: "No such prisoner in your establishment.",
    visitor_not_found: "No such visitor.",
    establishment_not_found: "No such establishment.",
    evidence_not_found: "That evidence frame is not available.",
    call_not_live: "Nobody has joined this call yet: there is nothing to watch, pause, resume or end.",
    call_ended: "This call has already ended.",
    token_expired: "This call's slot is over.",
    token_not_yet_valid: "The waiting room for this call is not open yet.",
    token_stale: "The call was moved: press Watch again for a new watch link.",
    token_bad_signature: "The relay did not accept the watch link: press Watch again.",
    token_malformed: "The relay did not accept the watch link: press Watch again.",
    wrong_booking: "That call is not in your establishment.",
    booking_cancelled: "This booking was cancelled.",
    booking_declined: "This booking was declined.",
    booking_not_approved: "This booking is not approved yet.",
    booking_not_pending: "Only requested bookings can be approved or declined; this one was already decided.",
    booking_not_active: "This booking is no longer active.",
    booking_started: "This call has started and cannot be moved.",
    allowance_exceeded: "Approving would go over the prisoner's monthly call allowance.",
    slot_full: "Every call room is booked at that time.",
    prisoner_busy: "The prisoner has another call booked at that time.",
    laptop_unavailable: "No call laptop is free at that time.",
    laptop_disabled: "The laptop for this call is disabled.",
    slot_in_past: "That slot has already ended.",
    prisoner_not_eligible: "This prisoner may not have video calls at the moment.",
    visitor_not_verified: "A visitor on this booking has not had their identity verified.",
    approval_revoked: "A visitor on this booking is no longer an approved contact.",
    main_visitor_not_in_party: "The main visitor is not on the booking.",
    bad_call_length: "That call length is not allowed here.",
    bad_call_type: "That call type is not allowed.",
    bad_requester: "That booking has an unknown requester.",
    bad_role: "Unknown staff role.",
    username_taken: "That username is taken.",
    // signalling (watching)
    leg_already_connected: "That side of the call is already connected.",
    already_joined: "Already watching this call.",
    session_ended: "Your staff session has ended: log in again to watch.",
    shutting_down: "The relay is restarting. Try again in a moment.",
    bad_sdp: "This browser could not set up video with the relay.",
    closed: "The relay closed the connection.",
    // recordings API (plain-text errors, known by their HTTP status)
    recording_gone: "This recording was deleted at the end of its retention period.",
    recording_forbidden: "This recording belongs to another establishment.",
    hold_reason_required: "A legal hold needs a reason.",
    recording_damaged: "The recording failed its integrity check. Report it; do not rely on it.",
    network: "Cannot reach the relay. Check the network connection.",
  };

  const PAUSE_TEXT = {
    "vision:family": "an unapproved person on the family camera",
    "vision:prison": "an unapproved person on the prison camera",
    staff: "paused by staff",
    before_start: "slot not started yet",
    "identity:family": "someone not on the booking on the family camera",
    "identity:prison": "someone not on the booking on the prison camera",
    "identity_check:family": "family side's identity check before the call",
    "identity_check:prison": "prison side's identity check before the call",
  };
  const END_TEXT = {
    time_limit: "the booked time is over",
    staff: "ended by staff",
    left: "a side left the call",
    leg_lost: "a side's connection was lost (technical: the allowance is given back)",
    shutdown: "the relay restarted",
    booking_cancelled: "the booking was cancelled",
  };
  const STATE_LABEL = {
    scheduled: "Scheduled", waiting: "Waiting", live: "Live", paused: "Paused", ended: "Ended",
  };

  class ApiProblem extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function plainCode(status, path, text) {
    if (status === 401) return "unauthenticated";
    if (path.startsWith("/api/recordings")) {
      if (status === 403) return "recording_forbidden";
      if (status === 404) return "not_found";
      if (status === 410) return "recording_gone";
      if (status === 400 && /reason/.test(text)) return "hold_reason_required";
      if (status === 500 && /verification/.test(text)) return "recording_damaged";
    }
    if (status === 403) return "forbidden";
    if (status === 404) return "not_found";
    if (status === 429) return "rate_limited";
    if (status >= 500) return "internal_error";
    return "http_error";
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (err) {
      throw new ApiProblem(0, "network", err.message);
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
    if (!res.ok) {
      const e = data && data.error;
      const code = e && e.code ? e.code : plainCode(res.status, path, text);
      const problem = new ApiProblem(res.status, code, (e && e.message) || text.replace(/^\d+: /, ""));
      if (res.status === 401 && !path.endsWith("/staff/login")) loggedOut(problem);
      throw problem;
    }
    return data;
  }

  function explain(err) {
    const code = err.code || "";
    const known = ERROR_TEXT[code];
    const detail = err.message && !known ? err.message : "";
    const text = known || detail || "Something went wrong.";
    return code ? `${text} (${code})` : text;
  }

  // --- status line -------------------------------------------------------------------------

  const statusEl = $("status");
  let statusTimer = null;

  function say(text, kind = "info", sticky = false) {
    statusEl.hidden = false;
    statusEl.className = `banner ${kind}`;
    statusEl.textContent = text;
    statusEl.dataset.kind = kind;
    clearTimeout(statusTimer);
    if (!sticky && kind !== "error") statusTimer = setTimeout(() => { statusEl.hidden = true; }, 6000);
  }

  function failed(action, err) {
    say(`${action}: ${explain(err)}`, "error", true);
    statusEl.dataset.code = err.code || "";
  }

  // --- small DOM helpers ----------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function button(text, label, onclick, cls) {
    return el("button", { type: "button", "aria-label": label, class: cls, onclick, text });
  }

  function when(ts) {
    return new Date(ts * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }

  function clockTime(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // --- the confirm / note dialog -------------------------------------------------------------

  const dialog = $("dialog");

  function ask({ title, text, label, required, ok, danger }) {
    $("dialog-title").textContent = title;
    $("dialog-text").textContent = text || "";
    $("dialog-field").hidden = !label;
    $("dialog-label").textContent = label || "";
    const input = $("dialog-input");
    input.value = "";
    input.required = Boolean(required);
    const okButton = $("dialog-ok");
    okButton.textContent = ok;
    okButton.className = danger ? "danger" : "";
    dialog.returnValue = "";
    dialog.showModal();
    (label ? input : okButton).focus();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" ? input.value.trim() : null);
      }, { once: true });
    });
  }
  $("dialog-cancel").addEventListener("click", () => dialog.close(""));

  // --- session -------------------------------------------------------------------------------

  let me = null;
  // Sections in modules of their own (console-admin.js) hook in here; names fill in ids.
  const hooks = { login: [], logout: [], bookings: [] };
  const names = { prisoners: new Map(), visitors: new Map(), staff: new Map() };
  window.Console = { api, say, failed, explain, el, button, ask, when, hooks, names,
    me: () => me, reloadBookings: () => { bookingsKey = ""; loadBookings(); } };
  function actorName(actor) {
    const [kind, id] = String(actor).split(":");
    if (kind === "staff" && names.staff.has(Number(id))) return names.staff.get(Number(id));
    if (kind === "visitor" && names.visitors.has(Number(id))) return names.visitors.get(Number(id));
    return actor;
  }
  let pollTimer = null;
  let bookingsTimer = null;

  function showLogin() {
    $("app").hidden = true;
    $("who").hidden = true;
    $("login").hidden = false;
    document.body.dataset.view = "login";
    $("username").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("who").hidden = false;
    $("who-name").textContent = `${me.username} (${me.role})`;
    document.body.dataset.view = "console";
    hooks.login.forEach((fn) => fn(me));
    pollCalls();
    loadBookings();
    // recordings are listed on request only: every listing is an audited access
    clearInterval(pollTimer);
    clearInterval(bookingsTimer);
    pollTimer = setInterval(pollCalls, POLL_MS);
    bookingsTimer = setInterval(loadBookings, BOOKINGS_MS);
  }

  function loggedOut(problem) {
    if (!me) return;
    me = null;
    hooks.logout.forEach((fn) => fn());
    clearInterval(pollTimer);
    clearInterval(bookingsTimer);
    stopWatching();
    showLogin();
    if (problem) failed("Logged out", problem);
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const submit = $("login-button");
    submit.disabled = true;
    try {
      me = await api("POST", "/api/v1/staff/login", {
        username: $("username").value.trim(),
        password: $("password").value,
      });
      $("password").value = "";
      say(`Logged in as ${me.username}.`, "ok");
      showApp();
    } catch (err) {
      failed("Could not log in", err);
      $("password").select();
    } finally {
      submit.disabled = false;
    }
  });

  $("logout").addEventListener("click", async () => {
    try {
      await api("POST", "/api/v1/staff/logout");
    } catch (err) {
      // the session is gone either way
    }
    loggedOut(null);
    say("Logged out.", "ok");
  });

  // --- live calls ----------------------------------------------------------------------------

  const rows = new Map(); // booking id -> {tr, cells, buttons, deadline, data}
  let polling = false;
  let pollFailed = false;

  async function pollCalls() {
    if (polling || !me) return;
    polling = true;
    try {
      const { calls, vision_refusing: refusing } = await api("GET", "/api/v1/staff/calls");
      visionBanner(calls, refusing || "");
      // an ended call shows as ended for a short while, then leaves the list
      const nowMs = Date.now();
      for (const c of calls) if (c.state === "ended" && !endedAt.has(c.booking_id)) endedAt.set(c.booking_id, nowMs);
      renderCalls(calls.filter((c) => c.state !== "ended" || nowMs - endedAt.get(c.booking_id) < ENDED_KEEP_MS));
      $("calls-updated").textContent = `updated ${clockTime(Date.now() / 1000)}`;
      if (pollFailed) say("Connected to the relay again.", "ok");
      pollFailed = false;
    } catch (err) {
      if (err.status !== 401 && !pollFailed) failed("Could not load live calls", err);
      pollFailed = true;
    } finally {
      polling = false;
    }
  }

  // What the state is waiting on or paused for, in staff's words ("" when nothing to add).
  function stateDetail(c) {
    if (c.state === "ended") return END_TEXT[c.reason] || c.reason;
    if (c.state === "paused") {
      let text = c.pause_reasons.map((r) => PAUSE_TEXT[r] || r).join("; ");
      if (c.awaiting_staff) text += " (cleared: waiting for staff to resume)";
      return text;
    }
    if (c.state === "waiting" || c.state === "scheduled") {
      if (/_reconnecting$/.test(c.reason)) return `the ${c.reason.split("_")[0]} side is reconnecting`;
      const missing = ["family", "prison"].filter((r) => !c.legs.includes(r));
      return `for the ${missing.join(" and ")} side`;
    }
    return "";
  }

  function stateText(c) {
    const label = STATE_LABEL[c.state] || c.state;
    const detail = stateDetail(c);
    if (!detail) return label;
    return c.state === "waiting" || c.state === "scheduled" ? `${label} ${detail}` : `${label}: ${detail}`;
  }

  // One line a side: faces vision counts / faces approved; an over-limit side is marked.
  function facesLines(c) {
    if (c.state === "ended") return [el("span", { text: "–" })];
    return ["family", "prison"].map((role) => {
      const seen = c.faces[role];
      const approved = c.approved_faces[role];
      if (approved === undefined && seen === undefined) return el("span", { text: `${role}: not joined` });
      const over = seen !== undefined && approved !== undefined && seen > approved;
      return el("span", { class: over ? "alert" : null, "data-side": role,
        text: `${role}: ${seen === undefined ? "–" : seen} / ${approved === undefined ? "–" : approved}${over ? " (too many)" : ""}` });
    });
  }

  // Each side's check before the call (relay/calls/identity_gate.py), while it matters.
  const IDENTITY_TEXT = {
    checking: "checking identity", matched: "identity matched", admitted: "admitted by staff",
    not_checked: "not checked (no enrolled face)", needs_staff: "needs staff to admit",
  };
  function identityLines(c) {
    if (c.state === "ended" || !c.identity) return [];
    return Object.entries(c.identity).map(([role, s]) => {
      const held = s.status === "checking" || s.status === "needs_staff";
      let text = `${role}: ${IDENTITY_TEXT[s.status] || s.status}`;
      if (held && s.failures) text += ` (${s.failures} failed)`;
      if (s.alerted) text += " – staff alerted";
      return el("span", { class: `small identity-line${s.alerted && held ? " alert" : ""}`,
        "data-identity": role, "data-status": s.status, text });
    });
  }

  // Each side's link (issue 17): grade, worst loss, round trip, downlink estimate.
  function linkLines(c) {
    if (c.state === "ended" || !c.quality) return [];
    return Object.entries(c.quality).map(([role, q]) => {
      const loss = Math.round(100 * Math.max(q.loss_up, q.loss_down));
      const parts = [`${role} link ${q.grade}`, `${loss}% loss`];
      if (q.rtt_ms !== null) parts.push(`${q.rtt_ms} ms`);
      if (q.bandwidth_kbps !== null) parts.push(`${q.bandwidth_kbps} kbit/s`);
      return el("span", { class: `small link ${q.grade}`, "data-link": role, text: parts.join(" · ") });
    });
  }

  function makeRow(id) {
    const cells = {
      call: el("td", { "data-label": "Call" }),
      state: el("td", { "data-label": "State" }),
      left: el("td", { "data-label": "Time left", class: "clock" }),
      faces: el("td", { "data-label": "Faces" }),
      alerts: el("td", { "data-label": "Alerts" }),
      actions: el("td", { "data-label": "Actions" }),
    };
    const buttons = {
      watch: button("Watch", `Watch call ${id}`, () => watch(id)),
      pause: button("Pause…", `Pause call ${id}`, () => pauseCall(id)),
      resume: button("Resume", `Resume call ${id}`, () => control(id, "resume")),
      message: button("Message…", `Send a message into call ${id}`, () => messageCall(id)),
      end: button("End…", `End call ${id}`, () => endCall(id), "danger"),
      timeline: button("Timeline", `Audit timeline of call ${id}`, () => openTimeline(id)),
      identity: button("Identity", `Identity checks of call ${id}`, () => window.ConsoleIdentity.open(id)),
    };
    cells.actions.append(el("div", { class: "actions" }, ...Object.values(buttons)));
    const tr = el("tr", { "data-booking": id }, ...Object.values(cells));
    return { tr, cells, buttons, deadline: null, data: null };
  }

  // Vision health (issue 20): one banner when any call's face checks fall behind, or when the
  // relay refuses new calls because the detector cannot take more.
  function visionBanner(calls, refusing) {
    const behind = calls.filter((c) => c.state !== "ended" && (c.vision_behind || []).length);
    const lines = [];
    if (behind.length) {
      lines.push(`Face checks are falling behind on ${behind.length === 1 ? "call" : "calls"} ` +
        `${behind.map((c) => "#" + c.booking_id).join(", ")}: someone not approved may be seen late. ` +
        "Watch these calls.");
    }
    if (refusing) lines.push(`New calls are refused for now: ${refusing}.`);
    const banner = $("vision-banner");
    banner.textContent = lines.join(" ");
    banner.hidden = lines.length === 0;
  }

  function renderCalls(calls) {
    const tbody = $("calls").querySelector("tbody");
    const seen = new Set();
    const now = performance.now() / 1000;
    for (const c of calls) {
      const id = c.booking_id;
      seen.add(id);
      let row = rows.get(id);
      if (!row) {
        row = makeRow(id);
        rows.set(id, row);
      }
      tbody.append(row.tr); // keeps the server's order; moving a row keeps its focus
      row.data = c;
      row.deadline = c.state === "ended" ? null : now + c.seconds_left;
      row.tr.dataset.state = c.state;
      row.cells.call.textContent = `#${id} ${c.call_type}`;
      row.cells.call.append(el("br"), el("span", { class: "muted small", text:
        `${c.legs.length ? c.legs.join(" + ") : "nobody"} joined${c.watchers ? `, ${c.watchers} watching` : ""}` }));
      linkLines(c).forEach((line) => row.cells.call.append(el("br"), line));
      row.cells.state.textContent = "";
      row.cells.state.append(el("span", { class: `pill ${c.state}`, text: STATE_LABEL[c.state] || c.state }), " ",
        el("span", { class: "small", text: stateDetail(c) }));
      for (const stream of c.media_stalled || []) { // media health (relay/calls/media_health.py)
        const [side, kind] = stream.split(":");
        row.cells.state.append(el("br"), el("span", { class: "alert small", "data-stalled": stream,
          text: `${side} side's ${kind === "audio" ? "sound" : "video"} has stopped` }));
      }
      row.cells.faces.textContent = "";
      facesLines(c).forEach((line, i) => row.cells.faces.append(...(i ? [el("br"), line] : [line])));
      identityLines(c).forEach((line) => row.cells.faces.append(el("br"), line));
      for (const side of c.vision_behind || []) {
        row.cells.faces.append(el("br"), el("span", { class: "alert small", "data-vision-behind": side,
          text: `${side} side's face checks are behind: watch this call` }));
      }
      row.cells.alerts.textContent = String(c.alerts);
      row.cells.alerts.classList.toggle("alert", c.alerts > 0);
      const ended = c.state === "ended";
      const staffPaused = c.pause_reasons.includes("staff");
      row.buttons.watch.disabled = ended;
      row.buttons.pause.disabled = ended || staffPaused;
      row.buttons.resume.disabled = ended || !(staffPaused || c.awaiting_staff);
      row.buttons.end.disabled = ended;
      row.buttons.message.disabled = ended;
      tickRow(row);
      if (watching && watching.id === id) updateWatchBanner(c);
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    $("calls-empty").hidden = calls.length > 0;
    $("calls").hidden = calls.length === 0;
  }

  function tickRow(row) {
    if (row.deadline === null) {
      row.cells.left.textContent = "–";
      return;
    }
    row.cells.left.textContent = formatSeconds(row.deadline - performance.now() / 1000);
  }

  setInterval(() => rows.forEach(tickRow), 1000);

  async function control(id, action, body) {
    const verbs = { pause: "Paused", resume: "Resumed", end: "Ended", message: "Sent the message to" };
    try {
      const c = await api("POST", `/api/v1/staff/calls/${id}/${action}`, body);
      say(`${verbs[action]} call ${id}. Now: ${stateText(c)}.`, "ok");
      pollCalls();
      if (timelineId === id) openTimeline(id);
    } catch (err) {
      failed(`Could not ${action} call ${id}`, err);
    }
  }

  async function pauseCall(id) {
    const note = await ask({
      title: `Pause call ${id}`,
      text: "Neither side will see or hear the other until the call is resumed. Both sides are told a member of staff paused it. You can still watch.",
      label: "Note for the audit trail (optional)",
      ok: "Pause call",
    });
    if (note === null) return;
    await control(id, "pause", note ? { note } : undefined);
  }

  async function messageCall(id) {
    const text = await ask({
      title: `Message into call ${id}`,
      text: "Both sides see it on their screen at once, until they close it. It is kept in the call's audit trail.",
      label: "Message (e.g. please keep the child in view)",
      required: true,
      ok: "Send message",
    });
    if (!text) return;
    await control(id, "message", { text });
  }

  async function endCall(id) {
    const ok = await ask({
      title: `End call ${id}?`,
      text: "The call ends now for both sides; they are told a member of staff ended it. It cannot be restarted.",
      ok: "End call",
      danger: true,
    });
    if (ok === null) return;
    await control(id, "end");
  }

  // --- watching -------------------------------------------------------------------------------

  let watching = null; // {id, call, callType, streams}

  function stopWatching() {
    if (!watching) return;
    watching.call.leave();
    watching = null;
    window.__watch = null;
    $("watch-family").srcObject = null;
    $("watch-prison").srcObject = null;
    $("watch").hidden = true;
  }

  function updateWatchBanner(c) {
    const banner = $("watch-state");
    banner.className = `banner ${c.state}`;
    banner.textContent = `Call ${c.booking_id}: ${stateText(c)}`;
    if (c.state === "paused") banner.textContent += ". The two sides are cut off from each other; you still see both.";
    $("watch").dataset.state = c.state;
  }

  async function watch(id) {
    stopWatching();
    const row = rows.get(id);
    const callType = row && row.data ? row.data.call_type : "social";
    let grant;
    try {
      grant = await api("POST", `/api/v1/staff/bookings/${id}/watch-token`);
    } catch (err) {
      return failed(`Could not watch call ${id}`, err);
    }
    const legal = callType === "legal";
    const streams = { family: new MediaStream(), prison: new MediaStream() };
    const videos = { family: $("watch-family"), prison: $("watch-prison") };
    videos.family.srcObject = streams.family;
    videos.prison.srcObject = streams.prison;
    for (const v of Object.values(videos)) v.muted = legal;
    $("watch-title").textContent = `Watching call ${id} (${callType})`;
    $("watch-audio").textContent = legal
      ? "Legal call: video only. Staff never hear a legal call; the relay sends you no audio for it."
      : "Social call: you see and hear both sides. Neither side sees or hears you.";
    $("watch-audio").className = legal ? "note legal" : "note";
    $("watch").hidden = false;
    $("watch").dataset.callType = callType;
    const call = new RelayCall({
      token: grant.token,
      watcher: true,
      onTrack: (ev) => {
        // transceivers: audio, video (family side), audio, video (prison side)
        const index = call.pc.getTransceivers().indexOf(ev.transceiver);
        const side = index < 2 ? "family" : "prison";
        if (legal && ev.track.kind === "audio") return; // never played, and none is sent
        // a reconnection's new tracks replace the old, ended ones
        streams[side].getTracks().filter((t) => t.kind === ev.track.kind)
          .forEach((t) => streams[side].removeTrack(t));
        streams[side].addTrack(ev.track);
        videos[side].play().catch(() => { videos[side].muted = true; videos[side].play().catch(() => {}); });
      },
      onState: (msg) => {
        if (!watching || watching.call !== call) return;
        if (msg.type === "reconnecting") {
          $("watch-state").textContent = "Connection to the relay lost: reconnecting…";
          return;
        }
        if (msg.type === "error") return failed(`Watching call ${id}`, msg);
        if (msg.type === "warning") return;
        if (msg.state === "ended") {
          const banner = $("watch-state");
          banner.className = "banner ended";
          banner.textContent = `Call ${id} has ended: ${msg.message || END_TEXT[msg.reason] || msg.reason || ""}`;
          $("watch").dataset.state = "ended";
          pollCalls();
        } else if (row && row.data) {
          updateWatchBanner(Object.assign({}, row.data, msg, { booking_id: id }));
        }
      },
    });
    watching = { id, call, callType };
    window.__watch = call;
    $("watch-state").className = "banner waiting";
    $("watch-state").textContent = `Connecting to call ${id}…`;
    try {
      await call.join();
      say(`Watching call ${id}.`, "ok");
      $("watch").scrollIntoView({ block: "nearest" });
    } catch (err) {
      if (watching && watching.call === call) stopWatching();
      failed(`Could not watch call ${id}`, err);
    }
  }

  $("watch-stop").addEventListener("click", () => {
    const id = watching && watching.id;
    stopWatching();
    if (id) say(`Stopped watching call ${id}.`, "ok");
  });

  // --- audit timeline -------------------------------------------------------------------------

  let timelineId = null;

  const KIND_TEXT = {
    join: "joined", rejoin: "rejoined after a drop", leave: "left", drop: "connection dropped",
    state: "state changed", warning: "time warning sent", staff_pause: "paused by staff",
    staff_resume: "resumed by staff", staff_end: "ended by staff",
    vision_over_limit: "unapproved person detected", vision_cleared: "detection cleared",
    recording_started: "recording started", recording_off: "not recorded",
    recording_list: "recordings listed", recording_view: "recording viewed",
    recording_download: "recording played or downloaded", recording_hold_placed: "legal hold placed",
    recording_hold_released: "legal hold released", recording_access_refused: "recording access refused",
  };

  function describe(r) {
    const d = r.detail || {};
    switch (r.kind) {
      case "state": return `${d.from} → ${d.to} (${d.reason})`;
      case "join": case "rejoin": case "leave": case "drop": return `${d.role} side`;
      case "staff_pause": return d.note ? `note: “${d.note}”` : "no note";
      case "warning": return `${formatSeconds(d.seconds_left)} left`;
      case "vision_over_limit": return `${d.role} side: ${d.count} faces, ${d.approved} approved`;
      case "vision_cleared": return `${d.role} side: ${d.count} face${d.count === 1 ? "" : "s"}`;
      default: {
        const parts = Object.entries(d).filter(([k]) => k !== "staff")
          .map(([k, v]) => `${k.replace(/_/g, " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
        return parts.join(", ");
      }
    }
  }

  async function openTimeline(id) {
    timelineId = id;
    const section = $("timeline");
    const list = $("timeline-list");
    section.hidden = false;
    $("timeline-title").textContent = `Audit timeline of call ${id}`;
    let records;
    try {
      ({ records } = await api("GET", `/api/v1/staff/calls/${id}/audit`));
    } catch (err) {
      return failed(`Could not load the timeline of call ${id}`, err);
    }
    list.textContent = "";
    if (!records.length) list.append(el("li", { class: "muted", text: "Nothing recorded yet." }));
    for (const r of records) {
      const li = el("li", { "data-kind": r.kind },
        el("time", { datetime: new Date(r.at * 1000).toISOString(), text: clockTime(r.at) }), " ",
        el("strong", { text: KIND_TEXT[r.kind] || r.kind.replace(/_/g, " ") }), " ",
        el("span", { text: describe(r) }), " ",
        el("span", { class: "muted small", text: `by ${actorName(r.actor)}` }));
      if (r.evidence_id) {
        const fig = el("figure", { class: "evidence", "data-evidence": r.evidence_id });
        li.append(fig);
        loadEvidence(r.evidence_id, fig);
      }
      list.append(li);
    }
    section.scrollIntoView({ block: "nearest" });
  }

  async function loadEvidence(evidenceId, fig) {
    let ev;
    try {
      ev = await api("GET", `/api/v1/staff/evidence/${evidenceId}`);
    } catch (err) {
      fig.append(el("figcaption", { text: `Evidence frame ${evidenceId}: ${explain(err)}` }));
      return;
    }
    const frame = el("div", { class: "frame" });
    const img = new Image();
    img.alt = `Evidence frame ${evidenceId}: ${ev.boxes.length} face(s) marked`;
    img.addEventListener("load", () => {
      const NS = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(NS, "svg");
      svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("aria-hidden", "true");
      ev.boxes.forEach(([x1, y1, x2, y2], i) => {
        const rect = document.createElementNS(NS, "rect");
        rect.setAttribute("x", x1);
        rect.setAttribute("y", y1);
        rect.setAttribute("width", Math.max(0, x2 - x1));
        rect.setAttribute("height", Math.max(0, y2 - y1));
        rect.setAttribute("class", "box");
        const label = document.createElementNS(NS, "text");
        label.setAttribute("x", x1 + 3);
        label.setAttribute("y", Math.max(14, y1 - 4));
        label.textContent = String(i + 1);
        svg.append(rect, label);
      });
      frame.append(svg);
      fig.dataset.loaded = "true";
    });
    img.src = `data:image/jpeg;base64,${ev.jpeg_base64}`;
    frame.append(img);
    fig.append(frame, el("figcaption", { text:
      `Evidence frame ${evidenceId}: ${ev.boxes.length} face(s) marked` }));
  }

  $("timeline-refresh").addEventListener("click", () => timelineId && openTimeline(timelineId));
  $("timeline-close").addEventListener("click", () => { $("timeline").hidden = true; timelineId = null; });

  // --- bookings ---------------------------------------------------------------------------------

  let bookingsKey = "";

  async function loadBookings() {
    if (!me) return;
    const now = Date.now() / 1000;
    let requested, upcoming;
    try {
      [requested, upcoming] = await Promise.all([
        api("GET", "/api/v1/staff/bookings?status=requested"),
        api("GET", `/api/v1/staff/bookings?status=approved&from=${Math.floor(now - 3600)}&to=${Math.ceil(now + 14 * 86400)}`),
      ]);
    } catch (err) {
      if (err.status !== 401) failed("Could not load bookings", err);
      return;
    }
    const all = [...requested.bookings, ...upcoming.bookings.filter((b) => b.ends_at > now)]
      .sort((a, b) => a.starts_at - b.starts_at);
    const key = JSON.stringify(all);
    if (key === bookingsKey) return; // unchanged: keep the rows (and keyboard focus) as they are
    bookingsKey = key;
    const tbody = $("bookings").querySelector("tbody");
    tbody.textContent = "";
    for (const b of all) {
      const actions = el("div", { class: "actions" });
      if (b.status === "requested") {
        actions.append(
          button("Approve", `Approve booking ${b.id}`, () => decide(b.id, "approve")),
          button("Decline…", `Decline booking ${b.id}`, () => decline(b.id), "danger"));
      }
      tbody.append(el("tr", { "data-booking": b.id, "data-status": b.status },
        el("td", { "data-label": "Booking", text: `#${b.id}` }),
        el("td", { "data-label": "Prisoner", text: names.prisoners.has(b.prisoner_id)
          ? `${names.prisoners.get(b.prisoner_id)} (${b.prisoner_number})` : b.prisoner_number },
          el("br"), el("span", { class: "muted small", text: `with ${b.visitor_ids
            .map((v) => names.visitors.get(v) || `visitor ${v}`).join(", ")}` })),
        el("td", { "data-label": "Type", text: b.call_type }),
        el("td", { "data-label": "When", text: `${when(b.starts_at)}, ${b.minutes} min` }),
        el("td", { "data-label": "Status", text: `${b.status}${b.requested_by ? ` (requested by ${b.requested_by})` : ""}` }),
        el("td", { "data-label": "Actions" }, actions)));
    }
    $("bookings-empty").hidden = all.length > 0;
    $("bookings").hidden = all.length === 0;
  }

  async function decide(id, action, body) {
    try {
      const b = await api("POST", `/api/v1/staff/bookings/${id}/${action}`, body);
      say(`Booking ${id} ${b.status}.`, "ok");
    } catch (err) {
      failed(`Could not ${action} booking ${id}`, err);
    }
    bookingsKey = "";
    loadBookings();
  }

  async function decline(id) {
    const reason = await ask({
      title: `Decline booking ${id}`,
      text: "The booking is declined. The reason is kept with it, and the family's booking app shows it.",
      label: "Reason (optional; the family sees it)",
      ok: "Decline booking",
      danger: true,
    });
    if (reason === null) return;
    await decide(id, "decline", reason ? { reason } : undefined);
  }

  // --- recordings -------------------------------------------------------------------------------

  async function loadRecordings() {
    if (!me) return;
    const booking = $("recordings-booking").value.trim();
    if (booking && !/^\d+$/.test(booking)) {
      say("A booking number is digits only.", "error", true);
      return;
    }
    let recordings;
    try {
      ({ recordings } = await api("GET", `/api/recordings${booking ? `?booking_id=${booking}` : ""}`));
    } catch (err) {
      if (err.status !== 401) failed("Could not list recordings", err);
      return;
    }
    const tbody = $("recordings").querySelector("tbody");
    tbody.textContent = "";
    for (const r of recordings) {
      const length = r.ended_at ? formatSeconds(r.ended_at - r.started_at) : "recording…";
      const actions = el("div", { class: "actions" });
      if (r.status !== "recording" && r.status !== "deleted") {
        actions.append(button("Play", `Play recording ${r.id}`, () => play(r)),
          el("a", { href: `/api/recordings/${r.id}/media`, download: true, class: "button",
            "aria-label": `Download recording ${r.id}`, text: "Download" }));
      }
      actions.append(r.legal_hold
        ? button("Release hold", `Release the legal hold on recording ${r.id}`, () => releaseHold(r.id))
        : button("Place hold…", `Place a legal hold on recording ${r.id}`, () => placeHold(r.id)));
      tbody.append(el("tr", { "data-recording": r.id, "data-booking": r.booking_id, "data-hold": String(r.legal_hold) },
        el("td", { "data-label": "Recording", text: `#${r.id}` }),
        el("td", { "data-label": "Booking", text: `#${r.booking_id}` }),
        el("td", { "data-label": "Started", text: when(r.started_at) }),
        el("td", { "data-label": "Length", text: length }),
        el("td", { "data-label": "Status", text: r.status }),
        el("td", { "data-label": "Legal hold", text: r.legal_hold
          ? `held: ${r.hold_reason} (by staff ${r.hold_by})`
          : `no; kept until ${when(r.retention_until)}` }),
        el("td", { "data-label": "Actions" }, actions)));
    }
    $("recordings-empty").textContent = "No recordings found.";
    $("recordings-empty").hidden = recordings.length > 0;
    $("recordings").hidden = recordings.length === 0;
  }

  function play(r) {
    const video = $("player-video");
    $("player").hidden = false;
    $("player-caption").textContent = `Recording ${r.id} of call ${r.booking_id} (${when(r.started_at)}). `
      + "A browser plays the family side's picture; download it to see both sides (VLC, mpv). Every viewing is audited.";
    video.onerror = () => say(`Recording ${r.id} could not be played: it may have been deleted, or failed its integrity check.`, "error", true);
    video.src = `/api/recordings/${r.id}/media`;
    video.play().catch(() => {});
    video.focus();
  }

  async function placeHold(id) {
    const reason = await ask({
      title: `Legal hold on recording ${id}`,
      text: "A held recording is kept past its retention period until the hold is released.",
      label: "Reason (required)",
      required: true,
      ok: "Place hold",
    });
    if (reason === null) return;
    try {
      await api("POST", `/api/recordings/${id}/hold`, { reason });
      say(`Legal hold placed on recording ${id}.`, "ok");
    } catch (err) {
      failed(`Could not place a hold on recording ${id}`, err);
    }
    loadRecordings();
  }

  async function releaseHold(id) {
    const ok = await ask({
      title: `Release the legal hold on recording ${id}?`,
      text: "It will be deleted at the end of its retention period (at once if that has passed).",
      ok: "Release hold",
      danger: true,
    });
    if (ok === null) return;
    try {
      await api("DELETE", `/api/recordings/${id}/hold`);
      say(`Legal hold released on recording ${id}.`, "ok");
    } catch (err) {
      failed(`Could not release the hold on recording ${id}`, err);
    }
    loadRecordings();
  }

  $("recordings-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadRecordings();
  });

  // --- start ----------------------------------------------------------------------------------

  window.addEventListener("pagehide", () => stopWatching());

  (async () => {
    try {
      me = await api("GET", "/api/v1/staff/me");
      showApp();
    } catch (err) {
      me = null;
      showLogin();
      if (err.code !== "unauthenticated") failed("Could not reach the relay", err);
    }
  })();
})();
