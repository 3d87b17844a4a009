// The family member's page: joins with the token from its link.
"use strict";

// Every word this page shows, in one place (a Welsh/English catalogue will replace it).
// Every string of the call page comes from the catalogue (/static/i18n/<lang>.json, keys
// "call.*"), in the language the family chose in the app or their browser's.
function callText(t) {
  const codes = (prefix, names) => Object.fromEntries(names.map((n) => [n, t(`${prefix}.${n}`)]));
  return {
    title: (who) => t("call.title", { who }),
    when: (day, from, to) => t("call.when", { day, from, to }),
    tooEarly: (starts, opens) => t("call.too_early", { starts, opens }),
    states: codes("call.state", ["scheduled", "waiting", "live", "paused", "ended"]),
    paused: t("call.paused"),
    pausedBecause: (why) => t("call.paused_because", { why }),
    awaitingStaff: t("call.awaiting_staff"),
    endedBecause: (why) => t("call.ended_because", { why }),
    otherReconnecting: t("call.other_reconnecting"),
    reconnecting: t("call.reconnecting"),
    timeLeftWarning: (left) => t("call.time_left_warning", { left }),
    clock: (left) => t("call.clock", { left }),
    remoteHiddenPaused: t("call.remote_hidden_paused"),
    remoteHiddenWaiting: t("call.remote_hidden_waiting"),
    remoteHiddenReconnecting: t("call.remote_hidden_reconnecting"),
    noticeFrom: t("call.notice_from"),
    noticeOk: t("call.notice_ok"),
    theirVideoStopped: t("call.their_video_stopped"),
    theirSoundStopped: t("call.their_sound_stopped"),
    left: t("call.left"),
    needLink: t("call.need_link"),
    couldNotJoin: (why) => t("call.could_not_join", { why }),
    mute: t("call.mute"),
    unmute: t("call.unmute"),
    cameraOff: t("call.camera_off"),
    cameraOn: t("call.camera_on"),
    identityTitle: t("call.identity.title"),
    identityChecking: t("call.identity.checking"),
    identityOther: t("call.identity.other"),
    identityStaffAsked: t("call.identity.staff_asked"),
    identityNeedsStaff: t("call.identity.needs_staff"),
    identityRemoteHidden: t("call.identity.remote_hidden"),
    identityGuidance: codes("call.identity", [
      "look_at_camera", "come_closer", "more_light", "less_light", "only_booked_people", "main_person_missing",
    ]),
    warningShownS: 10,
    lastWarningS: 60,
    // Why a call ended, by the policy's reason code (its English END_TEXT otherwise).
    endReasons: codes("call.end", [
      "time_limit", "staff", "left", "leg_lost", "shutdown",
      "booking_cancelled", "approval_revoked", "booking_rescheduled", "laptop_revoked",
    ]),
    // Why a call is paused, by the policy's reason code (its English text otherwise).
    pauseReasons: codes("call.pause", ["vision:family", "vision:prison", "identity:family", "identity:prison", "staff"]),
    // Refusals in the family's words (the relay's message is shown for any other code).
    joinErrors: codes("call.error", [
      "token_expired", "token_not_yet_valid", "token_stale", "token_bad_signature", "token_malformed",
      "call_ended", "booking_cancelled", "booking_declined", "booking_not_approved", "approval_revoked",
      "leg_already_connected", "shutting_down", "rate_limited", "NotAllowedError", "NotFoundError",
      "vision_capacity",
    ]),
  };
}

(async function () {
  await I18n.use(I18n.chosen());
  document.title = I18n.t("call.page_title");
  const TEXT = callText(I18n.t);
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("joinToken");
  if (params.get("token")) {
    // keep the token out of the address bar, history and screenshots
    sessionStorage.setItem("joinToken", token);
    history.replaceState(null, "", location.pathname);
  }
  const $ = (id) => document.getElementById(id);

  const screen = new CallScreen(TEXT, {
    banner: $("banner"), clock: $("clock"), remote: $("remote"), local: $("local"),
    remoteNote: $("remote-note"), health: $("health"),
    notice: $("notice"), noticeFrom: $("notice-from"), noticeText: $("notice-text"), noticeOk: $("notice-ok"),
    videos: document.querySelector(".videos"),
    controls: ["mute", "camera", "leave"],
  });
  const call = new RelayCall({
    token,
    onState: (msg) => screen.onState(msg),
    onTrack: (ev) => screen.onTrack(ev),
    onMedia: (msg) => screen.onMedia(msg),
    onNotice: (msg) => screen.onNotice(msg),
    onIdentity: (msg) => screen.onIdentity(msg),
  });
  screen.attach(call);
  window.__call = call;

  $("leave").onclick = () => {
    call.leave();
    screen.finish();
    screen.show("ended", TEXT.left);
  };
  $("mute").onclick = (e) => {
    const on = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(on));
    e.target.textContent = on ? TEXT.unmute : TEXT.mute;
    call.opts.localStream.getAudioTracks().forEach((t) => (t.enabled = !on));
  };
  $("camera").onclick = (e) => {
    const off = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(off));
    e.target.textContent = off ? TEXT.cameraOn : TEXT.cameraOff;
    call.opts.localStream.getVideoTracks().forEach((t) => (t.enabled = !off));
  };

  // Who the call is with and when; too early, say when it opens and wait (camera off).
  // Resolves when it is time to join.
  async function preview() {
    let res;
    try {
      res = await fetch("/api/v1/join/preview", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
      });
    } catch (err) {
      return true; // the relay is not reachable: joining says so (and retries)
    }
    const data = await res.json().catch(() => ({}));
    // refused: joining gets the relay's own answer (the one that counts) and shows it
    if (!res.ok) return true;
    const day = new Date(data.starts_at * 1000).toLocaleDateString(I18n.lang === "cy" ? "cy-GB" : [], { weekday: "long", day: "numeric", month: "long" });
    $("title").textContent = TEXT.title(data.with_name);
    document.title = TEXT.title(data.with_name);
    $("when").textContent = TEXT.when(day, clockTime(data.starts_at), clockTime(data.ends_at));
    const skew = Date.now() / 1000 - data.now; // the page's clock minus the relay's
    const wait = data.opens_at - (Date.now() / 1000 - skew);
    if (wait > 0) {
      // no camera, no controls that would do nothing: only what is coming, and when
      screen.show("waiting", TEXT.tooEarly(clockTime(data.starts_at), clockTime(data.opens_at)), "early");
      document.querySelector(".videos").hidden = true;
      for (const id of ["mute", "camera", "leave"]) $(id).hidden = true;
      await new Promise((resolve) => setTimeout(resolve, wait * 1000 + 500));
      document.querySelector(".videos").hidden = false;
      for (const id of ["mute", "camera", "leave"]) $(id).hidden = false;
    }
    return true;
  }

  async function start() {
    screen.showRemote(false, TEXT.remoteHiddenWaiting);
    if (!token) return screen.show("error", TEXT.needLink);
    await preview();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      call.opts.localStream = stream;
      $("local").srcObject = stream;
      await call.join();
    } catch (err) {
      const code = err.code || err.name;
      screen.show("error", TEXT.couldNotJoin(TEXT.joinErrors[code] || err.message));
      document.body.dataset.error = err.code || "media";
    }
  }
  start();
})();
