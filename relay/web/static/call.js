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

  wsUrl() {
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
          this.handleStatus(Object.assign({ type: "state" }, msg.status));
          resolve(msg);
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

  leave() {
    this.left = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: 1, type: "leave" }));
      this.ws.close();
    }
    if (this.pc) this.pc.close();
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
