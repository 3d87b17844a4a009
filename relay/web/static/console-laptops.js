// Console section: laptops (set-up codes for the laptop page, taking one out of use) and
// prisoners' kiosk PINs (set, unlock). Its own module; console.html only hosts the section.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const TEXT = {
    load: "Show laptops and PINs",
    noLaptops: "This establishment has no laptops.",
    keys: (n) => (n ? `set up (${n} key${n > 1 ? "s" : ""})` : "not set up"),
    enrol: "Make set-up code",
    code: (code, until) => `Set-up code ${code}: type it on the laptop page before ${until}. It works once.`,
    revoke: "Take out of use",
    revokeConfirm: (label) => `Take ${label} out of use? Its key stops at once and a call on it ends now.`,
    revoked: (label, n, calls) => `${label} taken out of use: ${n} key(s) stopped${calls.length ? `, call ${calls.join(", ")} ended` : ""}.`,
    pinSet: (number) => `New kiosk PIN set for ${number}.`,
    unlocked: (number) => `Kiosk PIN unlocked for ${number}.`,
    failed: (what, why) => `Could not ${what}: ${why}`,
  };

  async function call(method, path, body) {
    const res = await fetch(path, {
      method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((data.error || {}).message || res.statusText);
    return data;
  }

  function say(text, kind) {
    const out = $("laptops-status");
    out.textContent = text;
    out.className = `banner ${kind || "info"}`;
    out.hidden = false;
  }

  function cell(label, text) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function btn(text, label, onclick, cls) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    if (cls) b.className = cls;
    b.onclick = onclick;
    return b;
  }

  async function load() {
    let laptops, prisoners;
    try {
      [{ laptops }, { prisoners }] = await Promise.all([
        call("GET", "/api/v1/staff/laptops"), call("GET", "/api/v1/staff/prisoners"),
      ]);
    } catch (err) {
      return say(TEXT.failed("load laptops", err.message), "error");
    }
    const tbody = $("laptops").querySelector("tbody");
    tbody.replaceChildren();
    for (const l of laptops) {
      const actions = document.createElement("div");
      actions.className = "actions";
      actions.append(
        btn(TEXT.enrol, `Make a set-up code for ${l.label}`, async () => {
          try {
            const e = await call("POST", `/api/v1/staff/laptops/${l.id}/enrol`);
            say(TEXT.code(e.code, new Date(e.expires_at * 1000).toLocaleTimeString()), "ok");
          } catch (err) { say(TEXT.failed("make a set-up code", err.message), "error"); }
        }),
        btn(TEXT.revoke, `Take ${l.label} out of use`, async () => {
          if (!confirm(TEXT.revokeConfirm(l.label))) return;
          try {
            const r = await call("POST", `/api/v1/staff/laptops/${l.id}/revoke`);
            say(TEXT.revoked(l.label, r.revoked_keys, r.ended_booking_ids), "ok");
            load();
          } catch (err) { say(TEXT.failed("take it out of use", err.message), "error"); }
        }, "danger"),
      );
      const tr = document.createElement("tr");
      tr.dataset.laptop = l.id;
      const actionsCell = cell("Actions");
      actionsCell.append(actions);
      tr.append(cell("Laptop", `${l.label}${l.room ? ` (${l.room})` : ""}`), cell("Laptop page", TEXT.keys(l.device_keys)), actionsCell);
      tbody.append(tr);
    }
    $("laptops-empty").hidden = laptops.length > 0;
    const select = $("pin-prisoner");
    select.replaceChildren();
    for (const p of prisoners) {
      const o = document.createElement("option");
      o.value = p.id;
      o.textContent = `${p.number} ${p.name}`;
      select.append(o);
    }
    $("laptops-body").hidden = false;
  }

  function chosen() {
    const s = $("pin-prisoner");
    return { id: s.value, number: s.selectedOptions[0] ? s.selectedOptions[0].textContent : "" };
  }

  $("laptops-load").textContent = TEXT.load;
  $("laptops-load").onclick = load;
  $("pin-form").onsubmit = async (e) => {
    e.preventDefault();
    const p = chosen();
    try {
      await call("POST", `/api/v1/staff/prisoners/${p.id}/pin`, { pin: $("pin-value").value });
      $("pin-value").value = "";
      say(TEXT.pinSet(p.number), "ok");
    } catch (err) { say(TEXT.failed("set the PIN", err.message), "error"); }
  };
  $("pin-unlock").onclick = async () => {
    const p = chosen();
    try {
      await call("POST", `/api/v1/staff/prisoners/${p.id}/pin/unlock`);
      say(TEXT.unlocked(p.number), "ok");
    } catch (err) { say(TEXT.failed("unlock the PIN", err.message), "error"); }
  };
})();
