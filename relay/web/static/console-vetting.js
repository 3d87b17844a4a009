// The staff console's vetting queue: applications to be a prisoner's contact, with the
// applicant's details, their two photos (each view audited by the relay), the people the
// prisoner already has as contacts; approve, or decline with a reason the applicant sees.
// Its own module: console.html only hosts its section and loads this file.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const section = $("vetting");
  if (!section) return;
  const TEXT = {
    unauthenticated: "Your session has ended. Log in again.",
    forbidden: "Only an admin may approve or decline applications.",
    reason_required: "Give a reason: the applicant sees it.",
    application_not_found: "No such application in your establishment.",
    application_not_pending: "This application was already decided.",
  };
  const shownPhotos = [];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function say(text, kind) {
    const s = $("vetting-status");
    s.textContent = text;
    s.className = `banner ${kind}`;
    s.hidden = !text;
  }

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (body) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const res = await fetch(path, opts);
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      const code = (data.error && data.error.code) || "error";
      throw new Error(TEXT[code] || (data.error && data.error.message) || "The relay refused.");
    }
    return res;
  }

  async function photo(appId, kind, label) {
    const res = await api("GET", `/api/v1/staff/vetting/${appId}/photo?kind=${kind}`);
    const url = URL.createObjectURL(await res.blob());
    shownPhotos.push(url);
    return el("figure", {}, el("img", { src: url, alt: label }), el("figcaption", {}, label));
  }

  const people = (list) => list.map((p) => `${p.name} (born ${p.date_of_birth})`).join(", ") || "none";

  async function item(a) {
    const reasonId = `vetting-reason-${a.id}`;
    const box = el("article", { class: "vetting-item", "data-application": String(a.id) },
      el("h3", {}, `${a.applicant.name}, to call ${a.prisoner_name} (${a.prisoner_number})`),
      el("dl", {},
        el("dt", {}, "Relationship"), el("dd", {}, a.relationship),
        el("dt", {}, "Date of birth"), el("dd", {}, a.date_of_birth),
        el("dt", {}, "Address"), el("dd", {}, a.address),
        el("dt", {}, "Children included"), el("dd", {}, people(a.members)),
        el("dt", {}, "Existing contacts"), el("dd", {}, people(a.existing_contacts)),
        el("dt", {}, "Sent"), el("dd", {}, new Date(a.submitted_at * 1000).toLocaleString())));
    const photos = el("div", { class: "vetting-photos" });
    box.append(photos);
    photos.append(await photo(a.id, "identity", `Identity document of ${a.applicant.name}`));
    photos.append(await photo(a.id, "face", `Face photo of ${a.applicant.name}`));
    const input = el("input", { id: reasonId, maxlength: "500" });
    box.append(el("label", { for: reasonId }, "Reason (required to decline; the applicant sees it)"), input,
      el("p", { class: "controls" },
        el("button", { type: "button", class: "approve", "aria-label": `Approve application ${a.id}`, onclick: () => decide(a, "approve", input.value) }, "Approve"),
        el("button", { type: "button", class: "danger decline", "aria-label": `Decline application ${a.id}`, onclick: () => decide(a, "decline", input.value) }, "Decline")));
    return box;
  }

  async function decide(a, decision, reason) {
    try {
      const res = await api("POST", `/api/v1/staff/vetting/${a.id}/decide`, { decision, reason });
      const done = await res.json();
      let text = `${a.applicant.name}: ${decision === "approve" ? "approved" : "declined"}.`;
      if (done.face_enrolment === "enrolled") text += " Face photo enrolled for identity checks.";
      else if (done.face_enrolment) text += ` Face photo not usable for identity checks: ${done.face_enrolment}`;
      say(text, "ok");
      await load();
    } catch (e) {
      say(e.message, "error");
    }
  }

  async function load() {
    try {
      const res = await api("GET", "/api/v1/staff/vetting");
      const data = await res.json();
      while (shownPhotos.length) URL.revokeObjectURL(shownPhotos.pop());
      const items = [];
      for (const a of data.applications) items.push(await item(a));
      $("vetting-list").replaceChildren(...items);
      $("vetting-empty").hidden = items.length > 0;
    } catch (e) {
      say(e.message, "error");
    }
  }

  $("vetting-refresh").addEventListener("click", load);
  const app = $("app");
  new MutationObserver(() => { if (!app.hidden) load(); }).observe(app, { attributes: true, attributeFilter: ["hidden"] });
  if (!app.hidden) load();
})();
