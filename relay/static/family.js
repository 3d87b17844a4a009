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

  function show(kind, text) {
    banner.className = `banner ${kind}`;
    banner.textContent = text;
    document.body.dataset.state = kind;
  }

  function onState(msg) {
    if (msg.type === "warning") {
      show("warning", `${formatSeconds(msg.seconds_left)} left in this call`);
      setTimeout(() => call.state && onState(call.lastStatus), 8000);
      return;
    }
    if (msg.type === "reconnecting") return show("waiting", "Connection lost, reconnecting…");
    if (msg.type === "error") return show("error", msg.message);
    if (msg.ends_at) endsAt = msg.ends_at;
    let text = STATE_TEXT[msg.state] || msg.state;
    if (msg.state === "paused" && msg.paused_because && msg.paused_because.length) {
      text = `The call is paused: ${msg.paused_because.join("; ")}.`;
      if (msg.awaiting_staff) text += " Staff will resume it.";
    }
    if (msg.state === "ended") text = `The call has ended: ${msg.message || msg.reason || ""}`;
    show(msg.state, text);
  }

  setInterval(() => {
    if (endsAt && !call.ended) clock.textContent = `${formatSeconds(endsAt - Date.now() / 1000)} left`;
    if (call.ended) clock.textContent = "";
  }, 500);

  const call = new RelayCall({
    token,
    onState,
    onTrack: (ev) => {
      const remote = document.getElementById("remote");
      if (!remote.srcObject) remote.srcObject = new MediaStream();
      remote.srcObject.addTrack(ev.track);
    },
  });
  window.__call = call;

  document.getElementById("leave").onclick = () => { call.leave(); show("ended", "You left the call."); };
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
      show("error", `Could not join: ${err.message}`);
      document.body.dataset.error = err.code || "media";
    }
  }
  start();
})();
