// The family member's page: joins with the token from its link.
"use strict";

// Every word this page shows, in one place (a Welsh/English catalogue will replace it).
const TEXT = {
  title: (who) => `Video call with ${who}`,
  when: (day, from, to) => `${day}, ${from} – ${to}`,
  tooEarly: (starts, opens) => `It is too early: the call starts at ${starts}. This page opens the waiting room by itself at ${opens}, so keep it open. Your camera stays off until then.`,
  states: {
    scheduled: "Waiting for the call to open…",
    waiting: "Waiting for the other side to join…",
    live: "Connected",
    paused: "The call is paused",
    ended: "The call has ended",
  },
  paused: "The call is paused.",
  pausedBecause: (why) => `The call is paused: ${why}.`,
  awaitingStaff: "It has cleared; staff will resume it.",
  endedBecause: (why) => `The call has ended: ${why}`,
  otherReconnecting: "The other side's connection dropped. Waiting for them to come back…",
  reconnecting: "Your connection was lost. Reconnecting… (the call keeps its time)",
  timeLeftWarning: (left) => `${left} left in this call.`,
  clock: (left) => `${left} left`,
  remoteHiddenPaused: "The picture is hidden while the call is paused.",
  remoteHiddenWaiting: "Their picture appears when the call starts.",
  remoteHiddenReconnecting: "Reconnecting…",
  noticeFrom: "Message from staff:",
  noticeOk: "OK",
  theirVideoStopped: "Their video has stopped. Waiting for it to come back…",
  theirSoundStopped: "Their sound has stopped. Waiting for it to come back…",
  left: "You left the call.",
  needLink: "This page needs the join link you were sent.",
  couldNotJoin: (why) => `Could not join: ${why}`,
  mute: "Mute microphone",
  unmute: "Unmute microphone",
  cameraOff: "Turn camera off",
  cameraOn: "Turn camera on",
  warningShownS: 10,
  lastWarningS: 60,
  // Why a call ended, where the relay sent no text (it sends the policy's END_TEXT).
  endReasons: {
    booking_cancelled: "the booking was cancelled",
    approval_revoked: "a visitor's approval for this call was withdrawn",
    booking_rescheduled: "the booking was moved to another time",
    laptop_revoked: "staff withdrew the prison laptop from use",
  },
  // Refusals in the family's words (the relay's message is shown for any other code).
  joinErrors: {
    token_expired: "This call's time is over.",
    token_not_yet_valid: "It is too early: the waiting room opens a few minutes before the call.",
    token_stale: "The call was moved. Use the new link you were sent.",
    token_bad_signature: "This join link is not valid. Use the link you were sent.",
    token_malformed: "This join link is not valid. Use the link you were sent.",
    call_ended: "This call has ended.",
    booking_cancelled: "This call was cancelled.",
    booking_declined: "This call was declined.",
    booking_not_approved: "This call has not been approved yet.",
    approval_revoked: "You are no longer approved for calls with this person.",
    leg_already_connected: "This call is already open in another window or device.",
    shutting_down: "The service is restarting. Try again in a minute.",
    rate_limited: "Too many attempts. Wait a minute, then try again.",
    NotAllowedError: "The browser was not allowed to use your camera and microphone.",
    NotFoundError: "No camera or microphone was found.",
  },
};

(function () {
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
    const day = new Date(data.starts_at * 1000).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });
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
