// Joining a call over the relay's signalling (protocol v1), shared by the family page and
// the staff console. No build step: plain browser JavaScript.
"use strict";

const STATE_TEXT = {
  scheduled: "Waiting for the call to open…",
  waiting: "Waiting for the other side to join…",
  live: "Connected",
  paused: "The call is paused",
  ended: "The call has ended",
};

// Refusals that rejoining cannot cure (the rest, e.g. leg_already_connected while the relay
// has not yet seen the old socket go, or shutting_down, are retried).
const TERMINAL_ERRORS = [
  "call_ended", "token_expired", "token_stale", "token_bad_signature", "token_malformed",
  "booking_cancelled", "booking_declined", "booking_not_found", "approval_revoked",
  "wrong_booking", "prisoner_not_eligible",
];

// How many "moved" answers one join follows (protocol/messages.py MAX_MOVES).
const MAX_MOVES = 3;

// A node's signalling base URL ("https://node2.example.org") as its socket's URL.
function nodeSocketUrl(base) {
  return base.replace(/\/+$/, "").replace(/^http(s?):\/\//, "ws$1://") + "/ws";
}

class RelayCall {
  // opts: {token, watcher, localStream, onState(msg), onTrack(ev, index), onMessage(msg)}
  constructor(opts) {
    this.opts = opts;
    this.state = null;
    this.ended = false;
    this.left = false;
    this.pc = null;
    this.ws = null;
    this.joins = 0;
    this.lastStatus = null;
  }

  // Where this join's socket goes: the page's own relay, or (many nodes) the node that runs
  // the call, which a "moved" answer named. Each join starts again from the page's relay.
  wsUrl() {
    if (this.nodeUrl) return this.nodeUrl;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/ws`;
  }

  // The relay's TURN servers for this token (issue 17): asked on a short socket of its own,
  // since ICE is gathered before the offer goes out. A refusal rejects like a join's.
  iceConfig() {
    return new Promise((resolve, reject) => {
      const fail = (code, message) => reject(Object.assign(new Error(message), { code }));
      const ws = new WebSocket(this.wsUrl());
      ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: "ice", token: this.opts.token }));
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "ice_servers") resolve(msg);
        else if (msg.type === "error") fail(msg.code, msg.message);
        ws.close();
      };
      ws.onclose = () => fail("closed", "the relay closed the connection");
    });
  }

  async join() {
    const ice = await this.iceConfig();
    const pc = new RTCPeerConnection({
      iceServers: ice.ice_servers, iceTransportPolicy: ice.ice_transport_policy, bundlePolicy: "max-bundle",
    });
    this.pc = pc;
    let trackIndex = 0;
    pc.ontrack = (ev) => this.opts.onTrack && this.opts.onTrack(ev, trackIndex++);
    if (this.opts.watcher) {
      for (let i = 0; i < 2; i++) {
        pc.addTransceiver("audio", { direction: "recvonly" });
        pc.addTransceiver("video", { direction: "recvonly" });
      }
    } else {
      const stream = this.opts.localStream;
      const audio = stream.getAudioTracks()[0];
      const video = stream.getVideoTracks()[0];
      pc.addTransceiver(audio || "audio", { direction: "sendrecv", streams: [stream] });
      pc.addTransceiver(video || "video", { direction: "sendrecv", streams: [stream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, 3000);
    });
    this.nodeUrl = null;
    for (let moves = 0; ; moves++) {
      try {
        return await this.signal(pc);
      } catch (err) {
        if (err.code !== "moved" || moves >= MAX_MOVES) throw err;
        this.nodeUrl = err.url;  // the same offer goes to the node that runs the call
      }
    }
  }

  // One signalling socket: send the offer, settle on "joined" (or reject on a refusal, a
  // close before joining, or "moved").
  async signal(pc) {
    const ws = new WebSocket(this.wsUrl());
    this.ws = ws;
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    // "answered" is this socket's own join, not this.joins: a refused rejoin must reject (so
    // the retry loop goes on), and a socket that never joined must not start a reconnection.
    let answered = false;
    const joined = new Promise((resolve, reject) => {
      ws.onmessage = async (ev) => {
        const msg = JSON.parse(ev.data);
        this.opts.onMessage && this.opts.onMessage(msg);
        if (msg.type === "joined") {
          answered = true;
          await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
          this.joins += 1;
          this.callInfo = msg.call;
          this.role = msg.role;
          this.handleStatus(Object.assign({ type: "state" }, msg.status));
          resolve(msg);
        } else if (msg.type === "moved" && !answered) {
          reject(Object.assign(new Error("moved"), { code: "moved", url: nodeSocketUrl(msg.url) }));
        } else if (msg.type === "error") {
          if (!answered) reject(Object.assign(new Error(msg.message), { code: msg.code }));
          else this.opts.onState && this.opts.onState({ type: "error", code: msg.code, message: msg.message });
        } else if (msg.type === "state") {
          this.handleStatus(msg);
        } else if (msg.type === "restarting") {
          // the relay is restarting: the socket closes next and onDrop rejoins
          this.opts.onState && this.opts.onState({ type: "reconnecting", message: msg.message });
        } else if (msg.type === "warning") {
          this.opts.onState && this.opts.onState(msg);
        } else if (msg.type === "media") {
          this.opts.onMedia && this.opts.onMedia(msg);
        } else if (msg.type === "notice") {
          this.opts.onNotice && this.opts.onNotice(msg);
        } else if (msg.type === "identity_check") {
          this.opts.onIdentity && this.opts.onIdentity(msg);
        } else if (msg.type === "quality") {
          showLinkNotice(msg);
        }
      };
      ws.onclose = () => {
        if (!answered) return reject(Object.assign(new Error("the relay closed the connection"), { code: "closed" }));
        if (ws === this.ws) this.onDrop();
      };
    });
    ws.send(JSON.stringify({ v: 1, type: "join", token: this.opts.token, sdp: pc.localDescription.sdp }));
    return joined;
  }

  handleStatus(msg) {
    this.state = msg.state;
    this.lastStatus = msg;
    if (msg.state === "ended") this.ended = true;
    this.opts.onState && this.opts.onState(msg);
  }

  onDrop() {
    if (this.ended || this.left || this.reconnecting) return;
    // Dropped mid-call: rejoin with the same token while the grace window lasts.
    this.reconnecting = true;
    this.opts.onState && this.opts.onState({ type: "reconnecting" });
    const attempt = async (n) => {
      if (this.ended || this.left) return;
      try {
        if (this.pc) this.pc.close();
        await this.join();
        this.reconnecting = false;
      } catch (err) {
        if (TERMINAL_ERRORS.includes(err.code)) {
          this.ended = true;
          this.opts.onState && this.opts.onState({ type: "state", state: "ended", message: err.message });
          return;
        }
        if (n < 60) setTimeout(() => attempt(n + 1), 1000);
      }
    };
    setTimeout(() => attempt(0), 500);
  }

  // Our own camera or microphone stopped sending (the relay said so): open it again and
  // put the new track on the same sender, keeping whether the person had turned it off.
  async restartTrack(kind) {
    const constraints = kind === "video" ? { video: { width: 640, height: 480 } } : { audio: true };
    const fresh = await navigator.mediaDevices.getUserMedia(constraints);
    const track = kind === "video" ? fresh.getVideoTracks()[0] : fresh.getAudioTracks()[0];
    const stream = this.opts.localStream;
    const old = stream.getTracks().filter((t) => t.kind === kind);
    if (old.length) track.enabled = old[0].enabled;
    const transceiver = this.pc.getTransceivers().find((t) => t.receiver.track.kind === kind);
    await transceiver.sender.replaceTrack(track);
    old.forEach((t) => { stream.removeTrack(t); t.stop(); });
    stream.addTrack(track);
  }

  leave() {
    this.left = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: 1, type: "leave" }));
      this.ws.close();
    }
    if (this.pc) this.pc.close();
  }

  // What has arrived from the far side: video frames decoded and audio energy (the tests
  // and the pages' own health checks read it).
  async mediaStats() {
    const out = { framesDecoded: 0, audioEnergy: 0 };
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") out.framesDecoded += s.framesDecoded || 0;
      else if (s.kind === "audio") out.audioEnergy += s.totalAudioEnergy || 0;
    });
    return out;
  }

  async framesDecoded() {
    const out = {};
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp") out[`${s.kind}:${s.mid}`] = s.kind === "video" ? s.framesDecoded || 0 : s.packetsReceived || 0;
    });
    return out;
  }
}

function clockTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

// A gentle notice while the relay finds this participant's own link poor (issue 17).
function showLinkNotice(msg) {
  let notice = document.getElementById("link-notice");
  if (!notice) {
    notice = document.createElement("p");
    notice.id = "link-notice";
    notice.className = "link-notice";
    notice.setAttribute("role", "status");
    notice.textContent = "Your connection is weak, so the picture may freeze or blur. " +
      "Moving closer to your Wi-Fi, or switching between Wi-Fi and mobile data, may help.";
    const banner = document.getElementById("banner"); // under the call's state, in the flow
    if (banner) banner.after(notice);
    else document.body.append(notice);
  }
  notice.hidden = msg.grade !== "poor";
}

function formatSeconds(s) {
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

window.RelayCall = RelayCall;
window.STATE_TEXT = STATE_TEXT;
window.formatSeconds = formatSeconds;
window.clockTime = clockTime;

// The screen of a call, shared by the family page and the laptop page: the banner (every
// state in words), the clock and time warnings, the far side's picture (hidden, never frozen,
// while the call is paused) and the self view. Each page passes its own words (its TEXT).
// els: {banner, clock, remote, local, remoteFigure, remoteNote, videos, controls: [ids]}
class CallScreen {
  constructor(text, els, opts) {
    this.text = text;
    this.els = els;
    this.opts = opts || {};
    this.call = null;
    this.endsAt = null;
    this.warnUntil = 0; // while the time warning shows (the last one shows until the end)
    this.timer = setInterval(() => this.tick(), 500);
  }

  attach(call) {
    this.call = call;
    this.farStalled = new Set(); // the far side's streams that stopped arriving
    this.ownStalled = new Set(); // ours, being restarted
  }

  // Media health (relay/calls/media_health.py): the far side's stream stopped, or ours did.
  onMedia(msg) {
    const call = this.call;
    if (msg.role === call.role) {
      if (!msg.stalled) return this.ownStalled.delete(msg.kind);
      if (this.ownStalled.has(msg.kind)) return;
      this.ownStalled.add(msg.kind);
      const attempt = async () => {
        if (!this.ownStalled.has(msg.kind) || call.ended || call.left) return;
        try { await call.restartTrack(msg.kind); } catch (err) { /* tried again below */ }
        setTimeout(attempt, 3000);
      };
      attempt();
      return;
    }
    if (msg.stalled) this.farStalled.add(msg.kind);
    else this.farStalled.delete(msg.kind);
    this.showHealth();
    if (call.state === "live") this.showRemote(!this.farStalled.has("video"), this.text.theirVideoStopped);
  }

  // The check before the call (relay/calls/identity_gate.py): what stands in the way of a
  // match, in the page's words, under the banner; hidden once the check is done.
  onIdentity(msg) {
    const t = this.text;
    let box = document.getElementById("identity-guide");
    if (!box) {
      box = document.createElement("div");
      box.id = "identity-guide";
      box.className = "identity-guide";
      box.setAttribute("role", "status");
      box.append(document.createElement("strong"), document.createElement("p"));
      this.els.banner.after(box);
    }
    const open = msg.status === "checking" || msg.status === "needs_staff";
    box.hidden = !open;
    document.body.dataset.identity = msg.status;
    if (!open) return;
    const guide = t.identityGuidance || {};
    let text = guide[msg.finding] || guide.look_at_camera || "";
    if (msg.status === "needs_staff") text = t.identityNeedsStaff || text;
    else if (msg.alerted) text = `${text} ${t.identityStaffAsked || ""}`.trim();
    box.dataset.finding = msg.finding || "";
    box.querySelector("strong").textContent = t.identityTitle || "";
    box.querySelector("p").textContent = text;
  }

  // A message from staff (relay/web/call_messages.py): shown at once, until dismissed. The
  // relay gives the latest one again after a rejoin: a number shown already is not shown again.
  onNotice(msg) {
    const { notice, noticeText, noticeOk } = this.els;
    if (!notice || Number(msg.id) <= (this.noticeShown || 0)) return;
    this.noticeShown = Number(msg.id);
    this.els.noticeFrom.textContent = this.text.noticeFrom;
    noticeText.textContent = msg.text;
    noticeOk.textContent = this.text.noticeOk;
    notice.dataset.number = msg.id;
    notice.hidden = false;
    noticeOk.onclick = () => { notice.hidden = true; };
    noticeOk.focus();
  }

  showHealth() {
    const health = this.els.health;
    const lines = [];
    if (this.farStalled.has("video")) lines.push(this.text.theirVideoStopped);
    if (this.farStalled.has("audio")) lines.push(this.text.theirSoundStopped);
    document.body.dataset.media = lines.length ? "stalled" : "ok";
    if (!health) return;
    health.textContent = lines.join(" ");
    health.hidden = lines.length === 0;
  }

  show(kind, text, state) {
    const banner = this.els.banner;
    banner.className = `banner ${kind}`;
    banner.textContent = text;
    document.body.dataset.state = state || kind;
  }

  warningText() {
    return this.text.timeLeftWarning(formatSeconds(this.endsAt - Date.now() / 1000));
  }

  stateText(msg) {
    const t = this.text;
    let reasons = msg.pause_reasons || [];
    // the check before the call (relay/calls/identity_gate.py): our own, or the other side's
    const own = this.call ? `identity_check:${this.call.role}` : "";
    if (reasons.includes(own) && t.identityChecking) return t.identityChecking;
    const checks = reasons.filter((r) => r.startsWith("identity_check:"));
    if (checks.length && t.identityOther) {
      reasons = reasons.filter((r) => !r.startsWith("identity_check:"));
      if (!reasons.length) return t.identityOther;
      msg = Object.assign({}, msg, { pause_reasons: reasons, paused_because: [] });
    }
    if (msg.state === "paused" && reasons.length === 1 && reasons[0] === "before_start" && t.beforeStart) {
      const starts = this.call && this.call.callInfo ? this.call.callInfo.starts_at : null;
      return t.beforeStart(starts ? clockTime(starts) : "");
    }
    if (msg.state === "paused") {
      // the page's own words for each reason code (its language), else the relay's text
      const said = msg.paused_because || [];
      const why = reasons.map((r, i) => (t.pauseReasons || {})[r] || said[i] || r).join("; ");
      let text = why ? t.pausedBecause(why) : t.paused;
      if (msg.awaiting_staff) text += " " + t.awaitingStaff;
      return text;
    }
    if (msg.state === "ended") {
      return t.endedBecause((t.endReasons || {})[msg.reason] || msg.message || msg.reason || "");
    }
    if (msg.state === "waiting" && /_reconnecting$/.test(msg.reason || "")) return t.otherReconnecting;
    return t.states[msg.state] || msg.state;
  }

  // The far side's picture is shown only while media flows: paused or ended, it is hidden
  // (a frozen last frame under "paused" looks like a live picture).
  showRemote(visible, note) {
    const { remote, remoteNote } = this.els;
    remote.hidden = !visible;
    if (remoteNote) {
      remoteNote.hidden = visible;
      remoteNote.textContent = visible ? "" : note || "";
    }
  }

  onState(msg) {
    const t = this.text;
    const call = this.call;
    if (msg.type === "warning") {
      if (msg.ends_at) this.endsAt = msg.ends_at;
      const shown = msg.seconds_left <= t.lastWarningS ? msg.seconds_left : t.warningShownS;
      this.warnUntil = Date.now() / 1000 + shown;
      if (call.state === "live") this.show("warning", this.warningText());
      return;
    }
    if (msg.type === "reconnecting") {
      this.showRemote(false, t.remoteHiddenReconnecting);
      return this.show("waiting", t.reconnecting, "reconnecting");
    }
    if (msg.type === "error") return this.show("error", t.joinErrors[msg.code] || msg.message);
    if (msg.ends_at) this.endsAt = msg.ends_at;
    if (msg.state === "ended") this.finish();
    else if (msg.state === "paused") {
      const checking = call && (msg.pause_reasons || []).includes(`identity_check:${call.role}`);
      this.showRemote(false, (checking && t.identityRemoteHidden) || t.remoteHiddenPaused);
    }
    else if (msg.state === "live") this.showRemote(!this.farStalled.has("video"), this.text.theirVideoStopped);
    else this.showRemote(false, t.remoteHiddenWaiting);
    if (msg.state === "live" && Date.now() / 1000 < this.warnUntil) return this.show("warning", this.warningText());
    this.show(msg.state, this.stateText(msg));
  }

  onTrack(ev) {
    const remote = this.els.remote;
    if (!remote.srcObject) remote.srcObject = new MediaStream();
    // after a reconnection the new connection's tracks replace the old, ended ones (an
    // ended track left first in the stream would show as a black picture)
    remote.srcObject.getTracks().filter((tr) => tr.kind === ev.track.kind)
      .forEach((tr) => remote.srcObject.removeTrack(tr));
    remote.srcObject.addTrack(ev.track);
  }

  // The call is over (ended by the relay, or left): let go of the camera and microphone,
  // clear the last picture, and leave no control that does nothing.
  finish() {
    const call = this.call;
    this.warnUntil = 0;
    this.farStalled.clear();
    this.ownStalled.clear();
    this.showHealth();
    if (call.pc) call.pc.close();
    const stream = call.opts.localStream;
    if (stream) stream.getTracks().forEach((tr) => tr.stop());
    this.els.remote.srcObject = null;
    this.els.local.srcObject = null;
    for (const id of this.els.controls || []) document.getElementById(id).hidden = true;
    this.els.videos.hidden = true;
    if (this.opts.onFinish) this.opts.onFinish();
  }

  tick() {
    const call = this.call;
    if (!call) return;
    const { clock, banner } = this.els;
    if (this.endsAt && !call.ended && !call.left) clock.textContent = this.text.clock(formatSeconds(this.endsAt - Date.now() / 1000));
    if (call.ended || call.left) clock.textContent = "";
    if (this.warnUntil && document.body.dataset.state === "warning") {
      // the warning counts down, then gives way to the call's state again
      if (Date.now() / 1000 < this.warnUntil) banner.textContent = this.warningText();
      else {
        this.warnUntil = 0;
        if (call.lastStatus) this.onState(call.lastStatus);
      }
    }
  }
}

window.CallScreen = CallScreen;
