// The family app (/app): register, confirm the email, sign in, reset a password; my calls
// (join, cancel, move), who I can call and my applications, my household; apply to call
// someone; book a call. Plain browser JavaScript, no build step, no inline script (CSP).
// Every word shown comes from the catalogue (i18n.js); every refusal from the relay is
// shown by its error code in the person's language.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const t = (k, p) => window.I18n.t(k, p);
  let me = null;
  let contacts = [];
  let moving = null; // the booking being moved (reschedule), or null

  // ---------------------------------------------------------------- plumbing

  function show(message, kind) {
    const el = $("status");
    el.textContent = message;
    el.className = `banner ${kind || "info"}`;
    el.hidden = !message;
    if (message) el.focus?.();
  }

  function errorText(code) {
    const key = `error.${code}`;
    const text = t(key);
    return text === key ? t("error.generic") : text;
  }

  async function api(method, path, body, raw) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (raw) {
      opts.body = raw;
      opts.headers["Content-Type"] = raw.type === "image/png" ? "image/png" : "image/jpeg";
    } else if (body !== undefined) {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw Object.assign(new Error(t("error.offline")), { code: "offline" });
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const code = (data.error && data.error.code) || "generic";
      throw Object.assign(new Error(errorText(code)), { code, status: res.status });
    }
    return data;
  }

  async function guarded(fn) {
    try {
      await fn();
    } catch (e) {
      show(e.message, "error");
      if (e.status === 401 && me) { me = null; go("signin"); }
    }
  }

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

  // a time in words; in the prison's zone where the relay names it (the slots it offers)
  const when = (ts, timeZone) => new Date(ts * 1000).toLocaleString(window.I18n.lang === "cy" ? "cy-GB" : "en-GB",
    { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", ...(timeZone ? { timeZone } : {}) });

  // ---------------------------------------------------------------- screens

  const SCREENS = ["signin", "register", "forgot", "reset", "home", "apply", "book", "delete", "deleted"];
  const SIGNED_IN = ["home", "apply", "book", "delete"];

  function go(name) {
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    route();
  }

  async function route() {
    const hash = location.hash.slice(1);
    const [name, token] = hash.split("=");
    if (name === "verify" && token) return verify(token);
    let screen = SCREENS.includes(name) ? name : (me ? "home" : "signin");
    if (SIGNED_IN.includes(screen) && !me) screen = "signin";
    if (!SIGNED_IN.includes(screen) && screen !== "reset" && me) screen = "home";
    for (const s of SCREENS) $(`screen-${s}`).hidden = s !== screen;
    $("signout").hidden = !me;
    if (screen === "home") await guarded(loadHome);
    if (screen === "apply") fillApply();
    if (screen === "book") await guarded(fillBook);
    const heading = $(`screen-${screen}`).querySelector("h2");
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }

  async function verify(token) {
    history.replaceState(null, "", "#signin");
    await guarded(async () => {
      await api("POST", "/api/v1/family/verify", { token });
      show(t("verify.done"), "ok");
    });
    route();
  }

  // ---------------------------------------------------------------- accounts

  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      me = await api("POST", "/api/v1/family/login",
        { email: $("signin-email").value, password: $("signin-password").value });
      $("signin-password").value = "";
      if (me.language !== window.I18n.lang) await window.I18n.use(me.language, true);
      $("lang").value = window.I18n.lang;
      show("", "");
      go("home");
    });
  });

  $("register-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      if (!$("register-form").reportValidity()) return;
      await api("POST", "/api/v1/family/register", {
        name: $("register-name").value, date_of_birth: $("register-dob").value,
        email: $("register-email").value, password: $("register-password").value,
        language: window.I18n.lang,
      });
      $("register-password").value = "";
      show(t("register.sent"), "ok");
      go("signin");
    });
  });

  $("forgot-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      await api("POST", "/api/v1/family/password-reset", { email: $("forgot-email").value });
      show(t("forgot.sent"), "ok");
    });
  });

  $("reset-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = sessionStorage.getItem("relay.reset") || "";
    guarded(async () => {
      await api("POST", "/api/v1/family/password-reset/confirm",
        { token, password: $("reset-password").value });
      sessionStorage.removeItem("relay.reset");
      show(t("reset.done"), "ok");
      go("signin");
    });
  });

  $("signout").addEventListener("click", () => guarded(async () => {
    await api("POST", "/api/v1/family/logout");
    me = null;
    show(t("signout.done"), "ok");
    go("signin");
  }));

  $("lang").addEventListener("change", async () => {
    await window.I18n.use($("lang").value, true);
    if (me) await guarded(async () => { me = await api("POST", "/api/v1/family/language", { language: window.I18n.lang }); });
    route();
  });

  // ---------------------------------------------------------------- home

  async function loadHome() {
    me = await api("GET", "/api/v1/family/me");
    $("home-name").textContent = me.name;
    $("home-unverified").hidden = me.identity_verified;
    const [c, apps, bookings] = await Promise.all([
      api("GET", "/api/v1/family/contacts"), api("GET", "/api/v1/family/applications"),
      api("GET", "/api/v1/bookings"),
    ]);
    contacts = c.contacts;
    renderContacts(apps.applications);
    renderHousehold();
    renderBookings(bookings.bookings);
  }

  function personName(vid) {
    if (vid === me.visitor_id) return t("people.you");
    const m = me.household.find((h) => h.visitor_id === vid);
    return m ? m.name : t("people.other");
  }

  function renderContacts(applications) {
    const approved = contacts.filter((c) => c.status === "approved" && c.visitor_id === me.visitor_id);
    $("contacts-list").replaceChildren(...approved.map((c) => el("li", {},
      el("strong", {}, c.prisoner_name), ` (${c.prisoner_number}) `,
      el("span", { class: "pill ok" }, t("contacts.approved")))));
    $("contacts-empty").hidden = approved.length > 0;
    $("book-link").hidden = approved.length === 0;
    const open = applications.filter((a) => a.status !== "approved");
    $("applications-list").replaceChildren(...open.map((a) => el("li", {},
      `${t("apply.for")} ${a.prisoner_name}: `,
      el("span", { class: `pill ${a.status}` }, t(`application.${a.status}`)),
      a.reason ? el("span", { class: "reason" }, ` ${t("app.reason")}: ${a.reason}`) : "")));
  }

  function renderHousehold() {
    $("household-list").replaceChildren(...me.household.map((h) => el("li", {},
      `${h.name} (${h.relationship}) `,
      el("span", { class: `pill ${h.identity_verified ? "ok" : ""}` },
        t(h.identity_verified ? "household.approved" : "household.waiting")))));
  }

  function renderBookings(bookings) {
    const now = Date.now() / 1000;
    const items = bookings.filter((b) => b.ends_at > now - 86400 * 30)
      .sort((a, b) => a.starts_at - b.starts_at);
    $("bookings-empty").hidden = items.length > 0;
    $("bookings-list").replaceChildren(...items.map((b) => bookingItem(b, now)));
  }

  function bookingItem(b, now) {
    const contact = contacts.find((c) => c.prisoner_id === b.prisoner_id);
    const who = contact ? contact.prisoner_name : b.prisoner_number;
    const li = el("li", { class: "booking", "data-booking": String(b.id) },
      el("strong", {}, when(b.starts_at)), ` · ${b.minutes} ${t("book.min")} · ${who} `,
      el("span", { class: `pill ${b.status}` }, t(`booking.${b.status}`)));
    if (b.reason && ["declined", "cancelled"].includes(b.status)) {
      li.append(el("p", { class: "reason" }, `${t("app.reason")}: ${b.reason}`));
    }
    li.append(el("p", { class: "muted small" }, b.visitor_ids.map(personName).join(", ")));
    const live = ["requested", "approved"].includes(b.status) && b.ends_at > now;
    const mine = b.main_visitor_id === me.visitor_id;
    const actions = el("p", { class: "controls" });
    if (b.status === "approved" && b.ends_at > now) {
      const opens = b.starts_at - me.join_opens_before_s;
      if (now >= opens) {
        actions.append(el("button", { type: "button", class: "primary join", onclick: () => join(b) }, t("bookings.join")));
      } else {
        actions.append(el("span", { class: "muted" }, t("bookings.join_at", { time: when(opens) })));
      }
    }
    if (live && mine && b.starts_at > now) {
      actions.append(el("button", { type: "button", onclick: () => { moving = b; go("book"); } }, t("bookings.move")));
      actions.append(el("button", { type: "button", class: "danger", onclick: () => cancel(b) }, t("bookings.cancel")));
    }
    if (actions.childNodes.length) li.append(actions);
    return li;
  }

  async function join(b) {
    await guarded(async () => {
      const j = await api("POST", `/api/v1/bookings/${b.id}/join-token`);
      const url = new URL(j.join_url, location.href);
      location.assign(url.pathname + url.search);
    });
  }

  function confirmDialog(title, okText, withPassword) {
    const d = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-ok").textContent = okText;
    $("confirm-field").hidden = !withPassword;
    $("confirm-label").textContent = t("field.password");
    $("confirm-input").value = "";
    return new Promise((resolve) => {
      d.addEventListener("close", () => resolve(d.returnValue === "ok" ? $("confirm-input").value || true : false), { once: true });
      d.showModal();
    });
  }

  async function cancel(b) {
    if (!(await confirmDialog(t("bookings.cancel_q", { when: when(b.starts_at) }), t("bookings.cancel")))) return;
    await guarded(async () => {
      await api("POST", `/api/v1/bookings/${b.id}/cancel`, {});
      show(t("bookings.cancelled"), "ok");
      await loadHome();
    });
  }

  $("child-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      await api("POST", "/api/v1/family/household", {
        name: $("child-name").value, date_of_birth: $("child-dob").value,
        relationship: $("child-rel").value,
      });
      $("child-form").reset();
      show(t("household.added"), "ok");
      await loadHome();
    });
  });

  // Deleting the account (relay/web/erasure_api.py): the explanation, a tick and the
  // password again; afterwards the person is signed out and told so.
  $("delete-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const password = $("delete-password").value;
    if (!$("delete-understand").checked || !password) {
      show(t("delete.must_confirm"), "error");
      return;
    }
    guarded(async () => {
      try {
        await api("POST", "/api/v1/family/delete-account", { password, confirm: true });
      } catch (e) {
        if (e.code !== "bad_credentials") throw e;
        show(t("delete.wrong_password"), "error"); // still signed in: nothing was deleted
        return;
      }
      $("delete-form").reset();
      me = null;
      contacts = [];
      show("", "");
      go("deleted");
    });
  });

  // ---------------------------------------------------------------- apply

  function checkboxes(box, list, people, prefix) {
    list.replaceChildren(...people.map((p) => el("div", { class: "check" },
      el("input", { type: "checkbox", id: `${prefix}-${p.visitor_id}`, value: String(p.visitor_id) }),
      el("label", { for: `${prefix}-${p.visitor_id}` }, p.name))));
    box.hidden = people.length === 0;
  }

  function fillApply() {
    checkboxes($("apply-members"), $("apply-members-list"), me.household, "member");
    if (!$("apply-dob").value) $("apply-dob").value = me.date_of_birth;
  }

  $("apply-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      const idPhoto = $("apply-id-photo").files[0];
      const face = $("apply-face-photo").files[0];
      if (!idPhoto || !face) throw new Error(t("error.photos_missing"));
      const members = [...$("apply-members-list").querySelectorAll("input:checked")].map((i) => Number(i.value));
      const a = await api("POST", "/api/v1/family/applications", {
        prisoner_number: $("apply-number").value.trim().toUpperCase(),
        prisoner_name: $("apply-pname").value, relationship: $("apply-rel").value,
        date_of_birth: $("apply-dob").value, address: $("apply-address").value,
        member_ids: members,
      });
      await api("PUT", `/api/v1/family/applications/${a.id}/photo?kind=identity`, undefined, idPhoto);
      await api("PUT", `/api/v1/family/applications/${a.id}/photo?kind=face`, undefined, face);
      await api("POST", `/api/v1/family/applications/${a.id}/submit`);
      $("apply-form").reset();
      show(t("apply.sent"), "ok");
      go("home");
    });
  });

  // ---------------------------------------------------------------- book

  async function fillBook() {
    const people = new Map();
    for (const c of contacts.filter((x) => x.status === "approved")) {
      if (!people.has(c.prisoner_id)) people.set(c.prisoner_id, { c, visitors: [] });
      people.get(c.prisoner_id).visitors.push(c.visitor_id);
    }
    const options = [...people.values()].filter((p) => p.visitors.includes(me.visitor_id));
    $("book-prisoner").replaceChildren(...options.map((p) =>
      el("option", { value: String(p.c.prisoner_id), "data-number": p.c.prisoner_number }, p.c.prisoner_name)));
    if (moving) $("book-prisoner").value = String(moving.prisoner_id);
    $("book-prisoner").disabled = !!moving;
    $("book-title").textContent = t(moving ? "book.move_title" : "book.title");
    $("book-submit").textContent = t(moving ? "book.move_submit" : "book.submit");
    const others = (people.get(Number($("book-prisoner").value))?.visitors || [])
      .filter((v) => v !== me.visitor_id)
      .map((v) => ({ visitor_id: v, name: personName(v) }));
    checkboxes($("book-visitors"), $("book-visitors-list"), moving ? [] : others, "visitor");
    await loadSlots();
  }

  async function loadSlots() {
    const pid = $("book-prisoner").value;
    if (!pid) return;
    let slots = null;
    try {
      const res = await fetch(`/api/v1/family/slots?prisoner_id=${pid}&minutes=${$("book-minutes").value}`,
        { credentials: "same-origin" });
      if (res.ok) slots = await res.json();
    } catch (e) { slots = null; }
    $("book-slots-box").hidden = !slots;
    $("book-time-box").hidden = !!slots;
    $("book-time").required = !slots;
    if (!slots) return;
    $("book-slot").replaceChildren(...slots.slots.map((s) =>
      el("option", { value: String(s.starts_at) }, when(s.starts_at, slots.timezone))));
    const a = slots.allowance;
    $("book-allowance").textContent = t("book.allowance", { used: a.used + a.pending, limit: a.limit });
    if (!slots.slots.length) show(t("book.no_slots"), "warning");
  }

  $("book-prisoner").addEventListener("change", () => guarded(fillBook));
  $("book-minutes").addEventListener("change", () => guarded(loadSlots));

  $("book-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      const startsAt = !$("book-slots-box").hidden
        ? Number($("book-slot").value)
        : new Date($("book-time").value).getTime() / 1000;
      if (!startsAt) throw new Error(t("error.no_time"));
      const minutes = Number($("book-minutes").value);
      if (moving) {
        await api("POST", `/api/v1/bookings/${moving.id}/reschedule`, { starts_at: startsAt, minutes });
        moving = null;
        show(t("book.moved"), "ok");
      } else {
        const opt = $("book-prisoner").selectedOptions[0];
        const visitors = [...$("book-visitors-list").querySelectorAll("input:checked")].map((i) => Number(i.value));
        await api("POST", "/api/v1/bookings", {
          prisoner_number: opt.dataset.number, starts_at: startsAt, minutes, visitor_ids: visitors,
        });
        show(t("book.requested"), "ok");
      }
      go("home");
    });
  });

  // ---------------------------------------------------------------- start

  window.addEventListener("hashchange", () => {
    if (location.hash.startsWith("#reset=")) {
      sessionStorage.setItem("relay.reset", location.hash.slice(7));
      history.replaceState(null, "", "#reset");
    }
    if (location.hash === "#home" || location.hash === "#signin") moving = null;
    show("", "");  // a message belongs to the screen it was said on
    route();
  });

  async function start() {
    if (location.hash.startsWith("#reset=")) {
      sessionStorage.setItem("relay.reset", location.hash.slice(7));
      history.replaceState(null, "", "#reset");
    }
    await window.I18n.use(window.I18n.chosen(), false);
    $("lang").value = window.I18n.lang;
    try { me = await api("GET", "/api/v1/family/me"); } catch (e) { me = null; }
    if (me && me.language !== window.I18n.lang && !localStorage.getItem("relay.lang")) {
      await window.I18n.use(me.language, false);
      $("lang").value = window.I18n.lang;
    }
    await route();
    if ("serviceWorker" in navigator) navigator.serviceWorker.register("/app-sw.js").catch(() => {});
  }

  start();
})();
