// The prison laptop's page (/laptop), run in Chromium's kiosk mode in the visits room.
// It signs in with the device key the browser keeps (set up once by staff with a one-time
// code), lists today's calls on this laptop, opens the waiting room (camera check) before
// each, joins by itself and shows the call in plain words. See docs/laptop.md.
"use strict";

// Every word this page shows, in one place (a Welsh/English catalogue will replace it).
const TEXT = {
  title: "Video calls",
  starting: "Starting…",
  setupTitle: "Set up this laptop",
  setupText: "This laptop is not set up for video calls yet. A member of staff types the set-up code from the staff console here.",
  setupLabel: "Set-up code",
  setupButton: "Set up this laptop",
  setupWorking: "Setting up…",
  notReady: "This laptop is not ready for video calls yet.",
  setupBad: "That set-up code did not work. Staff can make a new one in the staff console.",
  revoked: "This laptop has been taken out of use by staff. Ask a member of staff.",
  offline: "Cannot reach the video call service. Trying again…",
  todayTitle: "Today's calls",
  noCallNow: "There is no call on this laptop right now.",
  backToList: "Today's calls come back on this screen in a moment.",
  noCalls: "There are no more calls booked on this laptop today.",
  nextCall: (who, at, opens) => `Your next call is with ${who} at ${at}. This screen opens by itself at ${opens}.`,
  callLine: (from, to, who) => `${from} – ${to}: ${who}`,
  status: { approved: "", completed: "(finished)", failed: "(did not work; it does not count)", cancelled: "(cancelled)" },
  callWith: (who, from, to) => `Call with ${who}, ${from} – ${to}`,
  legalCall: "Legal call",
  and: " and ",
  remoteLabel: "Your visitors",
  selfLabel: "You",
  mute: "Mute my microphone",
  unmute: "Turn my microphone back on",
  leave: "End the call",
  leaveConfirm: "End the call now? Your visitors will be told you left.",
  left: "You ended the call.",
  cameraCheck: "The waiting room is open. Check you can see yourself on the right.",
  noCamera: "The camera or microphone is not working. Please tell a member of staff.",
  states: {
    scheduled: "Opening the call…",
    waiting: "Waiting for your visitors to join…",
    live: "You are connected to your visitors",
    paused: "The call is paused",
    ended: "The call has ended",
  },
  beforeStart: (at) => `The waiting room is open. The call starts at ${at}. Check you can see yourself.`,
  paused: "The call is paused.",
  pausedBecause: (why) => `The call is paused: ${why}.`,
  awaitingStaff: "It has cleared; staff will start it again.",
  endedBecause: (why) => `The call has ended: ${why}`,
  otherReconnecting: "Your visitors' connection dropped. Waiting for them to come back…",
  reconnecting: "The connection was lost. Reconnecting… (the call keeps its time)",
  timeLeftWarning: (left) => `${left} left in this call.`,
  clock: (left) => `${left} left`,
  remoteHiddenPaused: "The picture is hidden while the call is paused.",
  remoteHiddenWaiting: "Your visitors' picture appears here when the call starts.",
  remoteHiddenReconnecting: "Reconnecting…",
  noticeFrom: "Message from staff:",
  noticeOk: "OK",
  theirVideoStopped: "Your visitors' video has stopped. Waiting for it to come back…",
  theirSoundStopped: "Your visitors' sound has stopped. Waiting for it to come back…",
  identityTitle: "Checking it's you",
  identityChecking: "Checking it's you before the call starts…",
  identityOther: "Waiting for your visitors…",
  identityStaffAsked: "We could not confirm it's you. A member of staff has been asked to help.",
  identityNeedsStaff: "A member of staff will start the call shortly.",
  identityRemoteHidden: "Your visitors' picture appears once we have checked it's you.",
  identityGuidance: {
    look_at_camera: "Look straight at the camera, with your whole face in view.",
    come_closer: "Sit a little closer to the camera.",
    more_light: "The room is too dark for the camera. Ask staff to turn a light on.",
    less_light: "The light is too bright for the camera.",
    only_booked_people: "Only you may be on camera. Anyone else, please step out of view.",
    main_person_missing: "You must be on camera.",
  },
  warningShownS: 10,
  lastWarningS: 60,
  endReasons: {
    time_limit: "the booked time is over",
    staff: "a member of staff ended the call",
    left: "your visitors left the call",
    leg_lost: "your visitors' connection was lost and did not come back",
    booking_cancelled: "the call was cancelled",
    approval_revoked: "a visitor's approval for this call was withdrawn",
    laptop_revoked: "staff took this laptop out of use",
  },
  kiosk: {
    title: "Ask for a call",
    start: "Request a call",
    numberLabel: "Your prison number",
    pinLabel: "Your PIN",
    signIn: "Sign in",
    cancel: "Cancel",
    signingIn: "Checking…",
    wrong: "That prison number or PIN is not right. Try again.",
    locked: "Too many wrong PINs. Ask a member of staff to unlock your PIN.",
    hello: (name) => `Hello ${name}. Choose who to call, how long, and a time.`,
    contactsTitle: "Who do you want to call?",
    noContacts: "You have no approved contacts yet. Ask a member of staff.",
    lengthTitle: "How long?",
    minutes: (m) => `${m} minutes`,
    find: "Show free times",
    pickFirst: "Choose a person and a length first.",
    noSlots: "There are no free times for that. Try another length, or ask staff.",
    slot: (day, from, to) => `${day} ${from} – ${to}`,
    requested: "Your request was sent. Staff will confirm it.",
    requestsTitle: "Your requests waiting for staff",
    noRequests: "You have no requests waiting.",
    request: (who, day, from, to) => `${who}: ${day} ${from} – ${to}`,
    cancelRequest: "Cancel this request",
    cancelled: "The request was cancelled.",
    signOut: "Sign out",
    signedOut: "You are signed out.",
    failed: (why) => `That did not work: ${why}`,
  },
  joinErrors: {
    token_expired: "This call's time is over.",
    token_not_yet_valid: "It is too early: the waiting room is not open yet.",
    call_ended: "This call has ended.",
    booking_cancelled: "This call was cancelled.",
    prisoner_not_eligible: "Video calls are not allowed at the moment. Ask a member of staff.",
    leg_already_connected: "This call is already open on another screen.",
    shutting_down: "The service is restarting. It will try again in a minute.",
    vision_capacity: "The call cannot start right now: the service is busy. It will try again in a minute.",
  },
};

const KEY_STORE = "laptopDeviceKey";
const REFRESH_S = 30; // how often the list of today's calls is fetched again
const BACK_TO_LIST_S = 20; // after a call ends, the list comes back

(function () {
  const $ = (id) => document.getElementById(id);
  const setText = (id, text) => ($(id).textContent = text);
  for (const [id, key] of [["title", "title"], ["setup-title", "setupTitle"], ["setup-text", "setupText"],
    ["setup-label", "setupLabel"], ["setup-button", "setupButton"], ["today-title", "todayTitle"],
    ["remote-label", "remoteLabel"], ["self-label", "selfLabel"], ["mute", "mute"], ["leave", "leave"]]) {
    setText(id, TEXT[key]);
  }
  document.title = TEXT.title;
  // kiosk: nothing on this page leads anywhere else
  document.addEventListener("contextmenu", (e) => e.preventDefault());

  const banner = (kind, text, state) => {
    $("banner").className = `banner ${kind}`;
    $("banner").textContent = text;
    document.body.dataset.state = state || kind;
  };
  banner("waiting", TEXT.starting, "starting");

  let deviceKey = localStorage.getItem(KEY_STORE);
  let current = null; // {booking, call, screen}
  const finished = new Set(); // bookings whose call ended on this screen
  let refreshTimer = null;
  let today_skew = 0; // the page's clock minus the relay's

  async function api(path, body) {
    const res = await fetch(`/api/v1${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error((data.error || {}).message || res.statusText), { code: (data.error || {}).code, status: res.status });
    return data;
  }

  function names(list) {
    if (list.length <= 1) return list.join("");
    return `${list.slice(0, -1).join(", ")}${TEXT.and}${list[list.length - 1]}`;
  }

  // --- set-up (enrolment) ----------------------------------------------------------------

  function showSetup(message) {
    $("setup").hidden = false;
    $("today").hidden = true;
    $("kiosk").hidden = true;
    $("room").hidden = true;
    banner(message ? "error" : "waiting", message || TEXT.notReady, "setup");
    $("setup-code").focus();
  }

  async function enrol(code) {
    banner("waiting", TEXT.setupWorking, "setup");
    try {
      const got = await api("/laptop/enrol", { code });
      deviceKey = got.device_key;
      localStorage.setItem(KEY_STORE, deviceKey);
      $("setup").hidden = true;
      $("setup-code").value = "";
      await loadToday();
    } catch (err) {
      showSetup(TEXT.setupBad);
    }
  }

  $("setup-form").onsubmit = (e) => {
    e.preventDefault();
    enrol($("setup-code").value);
  };

  // --- today's calls ---------------------------------------------------------------------

  function renderToday(today) {
    const list = $("calls");
    list.replaceChildren();
    const now = Date.now() / 1000;
    let next = null;
    for (const c of today.calls) {
      const li = document.createElement("li");
      li.dataset.booking = c.booking_id;
      const who = c.call_type === "legal" ? TEXT.legalCall : names(c.visitors);
      li.textContent = `${TEXT.callLine(clockTime(c.starts_at), clockTime(c.ends_at), who)} ${TEXT.status[c.status] || ""}`.trim();
      if (c.status !== "approved" || c.ends_at <= now || finished.has(c.booking_id)) li.className = "past";
      else if (!next) next = c;
      list.append(li);
    }
    $("today").hidden = false;
    $("kiosk").hidden = false;
    if (!document.body.dataset.kiosk) kioskShow("start");
    if (!next) {
      setText("next", TEXT.noCalls);
      return null;
    }
    const opens = next.starts_at - today.waiting_room_s;
    setText("next", TEXT.nextCall(names(next.visitors), clockTime(next.starts_at), clockTime(opens)));
    return { next, opens };
  }

  async function loadToday() {
    clearTimeout(refreshTimer);
    if (current) return;
    let today;
    try {
      today = await api("/laptop/today", { device_key: deviceKey });
    } catch (err) {
      if (err.code === "device_revoked" || err.code === "bad_credentials") {
        localStorage.removeItem(KEY_STORE);
        deviceKey = null;
        return showSetup(err.code === "device_revoked" ? TEXT.revoked : null);
      }
      banner("error", TEXT.offline, "offline");
      refreshTimer = setTimeout(loadToday, 5000);
      return;
    }
    // the page's clock follows the relay's (the laptop's own may be wrong)
    const skew = Date.now() / 1000 - today.now;
    today_skew = skew;
    const plan = renderToday(today);
    if (!document.body.dataset.state || ["starting", "setup", "offline", "today"].includes(document.body.dataset.state)) {
      banner("info", TEXT.noCallNow, "today");
    }
    let wait = REFRESH_S;
    if (plan) {
      const untilOpen = plan.opens - (Date.now() / 1000 - skew);
      if (untilOpen <= 0) return enterRoom(plan.next);
      wait = Math.min(wait, untilOpen);
    }
    refreshTimer = setTimeout(loadToday, Math.max(1, wait) * 1000);
  }

  // --- the call --------------------------------------------------------------------------

  async function enterRoom(booking) {
    $("today").hidden = true;
    $("kiosk").hidden = true;
    if (kiosk) kioskSignOut();
    $("room").hidden = false;
    document.querySelector("#room .videos").hidden = false;
    for (const id of ["mute", "leave"]) $(id).hidden = false;
    const who = booking.call_type === "legal" ? TEXT.legalCall : names(booking.visitors);
    setText("with", TEXT.callWith(who, clockTime(booking.starts_at), clockTime(booking.ends_at)));
    const screen = new CallScreen(TEXT, {
      banner: $("banner"), clock: $("clock"), remote: $("remote"), local: $("local"),
      remoteNote: $("remote-note"), health: $("health"),
    notice: $("notice"), noticeFrom: $("notice-from"), noticeText: $("notice-text"), noticeOk: $("notice-ok"),
    videos: document.querySelector("#room .videos"),
      controls: ["mute", "leave"],
    }, { onFinish: () => callOver(booking) });
    screen.showRemote(false, TEXT.remoteHiddenWaiting);
    banner("waiting", TEXT.cameraCheck, "camera-check");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true }, video: { width: 640, height: 480 } });
    } catch (err) {
      banner("error", TEXT.noCamera, "no-camera");
      $("room").hidden = true;
      refreshTimer = setTimeout(() => { current = null; loadToday(); }, REFRESH_S * 1000);
      return;
    }
    $("local").srcObject = stream;
    let grant;
    try {
      grant = await api("/laptop/join-token", { device_key: deviceKey, booking_id: booking.booking_id });
    } catch (err) {
      stream.getTracks().forEach((t) => t.stop());
      banner("error", TEXT.joinErrors[err.code] || err.message, "error");
      current = null;
      if (err.code === "device_revoked") return loadToday();
      refreshTimer = setTimeout(loadToday, REFRESH_S * 1000);
      return;
    }
    const call = new RelayCall({
      token: grant.token,
      localStream: stream,
      onState: (msg) => screen.onState(msg),
      onTrack: (ev) => screen.onTrack(ev),
      onMedia: (msg) => screen.onMedia(msg),
      onNotice: (msg) => screen.onNotice(msg),
      onIdentity: (msg) => screen.onIdentity(msg),
    });
    screen.attach(call);
    current = { booking, call, screen };
    window.__call = call;
    try {
      await call.join();
    } catch (err) {
      screen.show("error", TEXT.joinErrors[err.code] || err.message);
      screen.finish();
    }
  }

  function callOver(booking) {
    finished.add(booking.booking_id);
    setText("with", TEXT.backToList);
    setTimeout(() => {
      current = null;
      $("room").hidden = true;
      loadToday();
    }, BACK_TO_LIST_S * 1000);
  }

  $("mute").onclick = (e) => {
    if (!current) return;
    const on = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(on));
    e.target.textContent = on ? TEXT.unmute : TEXT.mute;
    current.call.opts.localStream.getAudioTracks().forEach((t) => (t.enabled = !on));
  };
  $("leave").onclick = () => {
    if (!current || !confirm(TEXT.leaveConfirm)) return;
    current.call.leave();
    current.screen.finish();
    current.screen.show("ended", TEXT.left);
  };

  // --- the kiosk: request a call (prison number + PIN) ----------------------------------

  const K = TEXT.kiosk;
  for (const [id, text] of [["kiosk-title", K.title], ["kiosk-start", K.start],
    ["kiosk-number-label", K.numberLabel], ["kiosk-pin-label", K.pinLabel],
    ["kiosk-sign-in-button", K.signIn], ["kiosk-cancel-sign-in", K.cancel],
    ["kiosk-contacts-title", K.contactsTitle], ["kiosk-length-title", K.lengthTitle],
    ["kiosk-find", K.find], ["kiosk-requests-title", K.requestsTitle], ["kiosk-sign-out", K.signOut]]) {
    setText(id, text);
  }
  let kiosk = null; // {session, expiresAt, visitor, minutes}
  const day = (ts) => new Date(ts * 1000).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });

  function kioskShow(part) {
    $("kiosk-start").parentElement.hidden = part !== "start";
    $("kiosk-sign-in").hidden = part !== "sign-in";
    $("kiosk-home").hidden = part !== "home";
    document.body.dataset.kiosk = part;
  }

  function kioskSignOut(message) {
    kiosk = null;
    $("kiosk-pin").value = "";
    $("kiosk-number").value = "";
    kioskShow("start");
    if (message) banner("info", message, "today");
  }

  async function kioskCall(path, body) {
    if (!kiosk || Date.now() / 1000 > kiosk.expiresAt) {
      kioskSignOut(K.signedOut);
      throw Object.assign(new Error(K.signedOut), { code: "kiosk_signed_out" });
    }
    try {
      return await api(path, Object.assign({ device_key: deviceKey, session: kiosk.session }, body));
    } catch (err) {
      if (err.code === "kiosk_signed_out") kioskSignOut(K.signedOut);
      throw err;
    }
  }

  function choice(group, text, value, onpick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "big choice";
    b.textContent = text;
    b.dataset.value = value;
    b.setAttribute("aria-pressed", "false");
    b.onclick = () => {
      group.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
      onpick(value);
    };
    group.append(b);
    return b;
  }

  async function kioskHome() {
    const home = await kioskCall("/kiosk/home", {});
    setText("kiosk-hello", K.hello(home.prisoner.name));
    const contacts = $("kiosk-contacts");
    contacts.replaceChildren();
    for (const c of home.contacts) choice(contacts, c.name, c.visitor_id, (v) => { kiosk.visitor = v; });
    if (!home.contacts.length) contacts.textContent = K.noContacts;
    const lengths = $("kiosk-lengths");
    lengths.replaceChildren();
    for (const m of home.call_minutes) choice(lengths, K.minutes(m), m, (v) => { kiosk.minutes = v; });
    $("kiosk-slots").replaceChildren();
    const list = $("kiosk-requests");
    list.replaceChildren();
    for (const r of home.requests) {
      const li = document.createElement("li");
      li.dataset.booking = r.booking_id;
      li.append(K.request(r.visitors.join(", "), day(r.starts_at), clockTime(r.starts_at), clockTime(r.ends_at)), " ");
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "big danger";
      cancel.textContent = K.cancelRequest;
      cancel.onclick = async () => {
        try {
          await kioskCall(`/kiosk/requests/${r.booking_id}/cancel`, {});
          banner("info", K.cancelled, "today");
          await kioskHome();
        } catch (err) { banner("error", K.failed(err.message), "today"); }
      };
      li.append(cancel);
      list.append(li);
    }
    if (!home.requests.length) {
      const li = document.createElement("li");
      li.textContent = K.noRequests;
      list.append(li);
    }
    kioskShow("home");
  }

  $("kiosk-start").onclick = () => {
    kioskShow("sign-in");
    $("kiosk-number").focus();
  };
  $("kiosk-cancel-sign-in").onclick = () => kioskSignOut();
  $("kiosk-sign-out").onclick = () => kioskSignOut(K.signedOut);
  $("kiosk-sign-in").onsubmit = async (e) => {
    e.preventDefault();
    banner("waiting", K.signingIn, "today");
    try {
      const got = await api("/kiosk/sign-in", {
        device_key: deviceKey, prisoner_number: $("kiosk-number").value.trim().toUpperCase(), pin: $("kiosk-pin").value,
      });
      kiosk = { session: got.session, expiresAt: got.expires_at + today_skew, visitor: null, minutes: null };
      $("kiosk-pin").value = "";
      banner("info", TEXT.noCallNow, "today");
      await kioskHome();
    } catch (err) {
      $("kiosk-pin").value = "";
      banner("error", err.code === "kiosk_locked" ? K.locked : K.wrong, "today");
    }
  };
  $("kiosk-find").onclick = async () => {
    const slots = $("kiosk-slots");
    slots.replaceChildren();
    if (!kiosk || !kiosk.visitor || !kiosk.minutes) return banner("error", K.pickFirst, "today");
    try {
      const got = await kioskCall("/kiosk/slots", { minutes: kiosk.minutes });
      if (!got.slots.length) slots.textContent = K.noSlots;
      for (const sl of got.slots) {
        choice(slots, K.slot(day(sl.starts_at), clockTime(sl.starts_at), clockTime(sl.ends_at)), sl.starts_at, async () => {
          try {
            await kioskCall("/kiosk/requests", { visitor_id: kiosk.visitor, starts_at: sl.starts_at, minutes: kiosk.minutes });
            banner("ok", K.requested, "today");
            await kioskHome();
          } catch (err) { banner("error", K.failed(err.message), "today"); }
        });
      }
    } catch (err) { banner("error", K.failed(err.message), "today"); }
  };

  // --- start -----------------------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  const code = params.get("enrol");
  if (code) history.replaceState(null, "", location.pathname); // the code leaves the address bar
  if (code) enrol(code);
  else if (!deviceKey) showSetup();
  else loadToday();
})();
