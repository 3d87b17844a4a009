// The staff console's identity view of a live call (relay/web/identity_control.py): per side,
// its check before the call, the faces last seen and whom they matched (names, distances),
// the last frame before the call (admins; never on legal calls), and "Admit by hand" for a
// side the check holds (admins; audited with that frame). Each view is audited by the relay.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const section = $("identity");
  if (!section) return;
  const C = window.Console;
  const STATUS = {
    checking: "Held: checking identity before the call",
    matched: "Admitted: the face matched",
    admitted: "Admitted by staff",
    not_checked: "Not checked: nobody on this side has an enrolled face",
    needs_staff: "Held: a member of staff must admit this side",
  };
  const FINDING = {
    look_at_camera: "no face matched (told to look at the camera)",
    come_closer: "face too small (told to come closer)",
    more_light: "too dark (told to find more light)",
    less_light: "too bright (told to move from bright light)",
    only_booked_people: "someone not on the booking is in view",
    main_person_missing: "the main visitor is not in view",
  };
  const TEXT = {
    forbidden: "Only an admin may admit a side by hand.",
    not_held: "That side is no longer waiting for its identity check.",
    call_not_live: "Nobody has joined this call.",
    call_ended: "This call has ended.",
  };
  let openId = null;

  function faceLine(f, threshold) {
    const d = f.distance === null ? "–" : f.distance.toFixed(2);
    const text = f.matched
      ? `${f.name}: matched (distance ${d}, threshold ${threshold})`
      : `Unmatched face: closest distance ${d} (threshold ${threshold})`;
    return C.el("li", { class: f.matched ? null : "alert", text });
  }

  function frame(side) {
    const fig = C.el("figure", { class: "evidence", "data-frame": side.role });
    const img = new Image();
    img.alt = `Last frame of the ${side.role} side's check, ${side.faces.length} face(s)`;
    img.src = `data:image/jpeg;base64,${side.evidence_jpeg_base64}`;
    fig.append(img, C.el("figcaption", { text: `The ${side.role} side's last check before the call` }));
    return fig;
  }

  function renderSide(id, side, me) {
    const box = C.el("div", { class: "identity-side", "data-side": side.role });
    const s = side.status;
    box.append(C.el("h3", { text: `${side.role === "family" ? "Family" : "Prison"} side` }));
    if (!s) {
      box.append(C.el("p", { class: "muted", text: "Not joined, or no check on this relay." }));
      return box;
    }
    let line = STATUS[s.status] || s.status;
    if (s.status === "admitted" && side.admitted_by) line += ` (${side.admitted_by})`;
    box.append(C.el("p", { "data-status": s.status, text: line }));
    const held = s.status === "checking" || s.status === "needs_staff";
    if (held) {
      let detail = `${s.checks} check(s), ${s.failures} failed`;
      if (s.finding) detail += `; last: ${FINDING[s.finding] || s.finding}`;
      if (s.alerted) detail += "; staff alerted";
      box.append(C.el("p", { class: s.alerted ? "alert small" : "small", text: detail }));
    }
    const faces = C.el("ul", { class: "faces" });
    if (!side.faces.length) faces.append(C.el("li", { class: "muted", text: "No face seen yet." }));
    side.faces.forEach((f) => faces.append(faceLine(f, side.threshold)));
    box.append(C.el("p", { class: "small", text: "Faces last seen:" }), faces);
    if (side.evidence_jpeg_base64) box.append(frame(side));
    else if (side.evidence_withheld) box.append(C.el("p", { class: "muted small", text: "No frame: legal call." }));
    if (held && me && me.role === "admin") {
      box.append(C.button("Admit by hand…", `Admit the ${side.role} side of call ${id} by hand`,
        () => admit(id, side.role)));
    }
    return box;
  }

  async function open(id) {
    openId = id;
    section.hidden = false;
    $("identity-title").textContent = `Identity checks of call ${id}`;
    let view;
    try {
      view = await C.api("GET", `/api/v1/staff/calls/${id}/identity`);
    } catch (err) {
      return C.failed(`Could not load the identity checks of call ${id}`, err);
    }
    const sides = $("identity-sides");
    sides.textContent = "";
    for (const side of view.sides) sides.append(renderSide(id, side, C.me()));
    section.dataset.loaded = String(Date.now());
    section.scrollIntoView({ block: "nearest" });
  }

  async function admit(id, role) {
    const note = await C.ask({
      title: `Admit the ${role} side of call ${id}?`,
      text: "Their picture and sound reach the other side at once. This is recorded in the audit trail with the last frame of the check.",
      label: "Why (for the audit trail)",
      required: true,
      ok: "Admit",
    });
    if (!note) return;
    try {
      await C.api("POST", `/api/v1/staff/calls/${id}/identity/${role}/admit`, { note });
      C.say(`Admitted the ${role} side of call ${id}.`, "ok");
    } catch (err) {
      C.say(TEXT[err.code] || C.explain(err), "error");
    }
    open(id);
  }

  $("identity-refresh").addEventListener("click", () => openId && open(openId));
  $("identity-close").addEventListener("click", () => { section.hidden = true; openId = null; });
  C.hooks.logout.push(() => { section.hidden = true; openId = null; });
  window.ConsoleIdentity = { open };
})();
