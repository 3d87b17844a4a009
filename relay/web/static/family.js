// The family member's page: joins with the token from its link.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  let token = params.get("token") || sessionStorage.getItem("joinToken");
  if (params.get("token")) {
    // keep the token out of the address bar, history and screenshots
    sessionStorage.setItem("joinToken", token);
    history.replaceState(null, "", location.pathname);
  }
  const banner = document.getElementById("banner");
  const clock = document.getElementById("clock");
  let endsAt = null;
  let warnUntil = 0; // while the time warning shows (the last one shows until the end)
  const WARNING_SHOWN_S = 10;
  const LAST_WARNING_S = 60;

  // Why a call ended, where the relay sent no text (it sends the policy's END_TEXT).
  const END_REASONS = {
    booking_cancelled: "the booking was cancelled",
    approval_revoked: "a visitor's approval for this call was withdrawn",
    booking_rescheduled: "the booking was moved to another time",
  };
  // Refusals in the family's words (the relay's message is shown for any other code).
  const JOIN_ERRORS = {
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
  };

  function show(kind, text, state) {
    banner.className = `banner ${kind}`;
    banner.textContent = text;
    document.body.dataset.state = state || kind;
  }

  function warningText() {
    return `${formatSeconds(endsAt - Date.now() / 1000)} left in this call.`;
  }

  function stateText(msg) {
    if (msg.state === "paused") {
      const why = (msg.paused_because || []).join("; ");
      let text = why ? `The call is paused: ${why}.` : "The call is paused.";
      if (msg.awaiting_staff) text += " It has cleared; staff will resume it.";
      return text;
    }
    if (msg.state === "ended") {
      return `The call has ended: ${msg.message || END_REASONS[msg.reason] || msg.reason || ""}`;
    }
    if (msg.state === "waiting" && /_reconnecting$/.test(msg.reason || "")) {
      return "The other side's connection dropped. Waiting for them to come back…";
    }
    return STATE_TEXT[msg.state] || msg.state;
  }

  function onState(msg) {
    if (msg.type === "warning") {
      if (msg.ends_at) endsAt = msg.ends_at;
      const shown = msg.seconds_left <= LAST_WARNING_S ? msg.seconds_left : WARNING_SHOWN_S;
      warnUntil = Date.now() / 1000 + shown;
      if (call.state === "live") show("warning", warningText());
      return;
    }
    if (msg.type === "reconnecting") {
      return show("waiting", "Your connection was lost. Reconnecting… (the call keeps its time)", "reconnecting");
    }
    if (msg.type === "error") return show("error", JOIN_ERRORS[msg.code] || msg.message);
    if (msg.ends_at) endsAt = msg.ends_at;
    if (msg.state === "ended") finish();
    if (msg.state === "live" && Date.now() / 1000 < warnUntil) return show("warning", warningText());
    show(msg.state, stateText(msg));
  }

  // The call is over (ended by the relay, or left): let go of the camera and microphone,
  // clear the frozen last picture, and leave no control that does nothing.
  function finish() {
    warnUntil = 0;
    if (call.pc) call.pc.close();
    const stream = call.opts.localStream;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    document.getElementById("remote").srcObject = null;
    document.getElementById("local").srcObject = null;
    for (const id of ["mute", "camera", "leave"]) document.getElementById(id).hidden = true;
    document.querySelector(".videos").hidden = true;
  }

  setInterval(() => {
    if (endsAt && !call.ended && !call.left) clock.textContent = `${formatSeconds(endsAt - Date.now() / 1000)} left`;
    if (call.ended || call.left) clock.textContent = "";
    if (warnUntil && document.body.dataset.state === "warning") {
      // the warning counts down, then gives way to the call's state again
      if (Date.now() / 1000 < warnUntil) banner.textContent = warningText();
      else {
        warnUntil = 0;
        if (call.lastStatus) onState(call.lastStatus);
      }
    }
  }, 500);

  const call = new RelayCall({
    token,
    onState,
    onTrack: (ev) => {
      const remote = document.getElementById("remote");
      if (!remote.srcObject) remote.srcObject = new MediaStream();
      // after a reconnection the new connection's tracks replace the old, ended ones (an
      // ended track left first in the stream would show as a black picture)
      remote.srcObject.getTracks().filter((t) => t.kind === ev.track.kind)
        .forEach((t) => remote.srcObject.removeTrack(t));
      remote.srcObject.addTrack(ev.track);
    },
  });
  window.__call = call;

  document.getElementById("leave").onclick = () => {
    call.leave();
    finish();
    show("ended", "You left the call.");
  };
  document.getElementById("mute").onclick = (e) => {
    const on = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(on));
    e.target.textContent = on ? "Unmute microphone" : "Mute microphone";
    call.opts.localStream.getAudioTracks().forEach((t) => (t.enabled = !on));
  };
  document.getElementById("camera").onclick = (e) => {
    const off = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(off));
    e.target.textContent = off ? "Turn camera on" : "Turn camera off";
    call.opts.localStream.getVideoTracks().forEach((t) => (t.enabled = !off));
  };

  async function start() {
    if (!token) return show("error", "This page needs the join link you were sent.");
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      call.opts.localStream = stream;
      document.getElementById("local").srcObject = stream;
      await call.join();
    } catch (err) {
      const code = err.code || err.name;
      show("error", `Could not join: ${JOIN_ERRORS[code] || err.message}`);
      document.body.dataset.error = err.code || "media";
    }
  }
  start();
})();
