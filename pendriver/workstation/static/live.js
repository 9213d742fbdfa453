// The pen page, kept live from the server's event stream (/live): the newest state, at most
// 20 times a second. No framework and nothing from the internet: the workstation runs where
// a treatment room has no network. Every action answers on the page in one sentence.
"use strict";

const byId = (id) => document.getElementById(id);
// This page's own token: the workstation counts the live streams open per page, and a pass
// started from this page stops if it has none open for two seconds (the tab closed).
const PAGE = (crypto.randomUUID && crypto.randomUUID()) || String(Math.random()).slice(2);
const fixed = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "—");
const text = (id, value) => {
  const el = byId(id);
  if (el && el.textContent !== String(value)) el.textContent = String(value);
};

function show(snapshot) {
  const pill = byId("connection");
  pill.textContent = snapshot.connected ? "pen connected" : "no pen";
  pill.className = "pill " + (snapshot.connected ? "ok" : "down");
  const sample = snapshot.sample;
  const status = snapshot.status;
  if (sample) {
    text("depth-measured", fixed(sample.depth_measured_mm, 2));
    text("depth-set", fixed(sample.depth_setpoint_mm, 2));
    text("rate", fixed(sample.stroke_rate_hz, 0));
    text("strokes", sample.stroke_count);
    text("current", sample.motor_current_ma);
    text("state", sample.state);
    text("faults", sample.faults || "no faults");
    document.body.dataset.sampleTime = String(sample.time_s);
    // When the host received this sample (its wall clock): what tools/bench_serve.py
    // measures the page's lag from.
    document.body.dataset.receivedAt = String(sample.received_at);
  }
  if (status) {
    text("rate-set", fixed(status.rate_setpoint_hz, 0));
    text("battery", status.battery_percent);
    text("battery-v", fixed(status.battery_v, 2));
    text("cartridge", status.cartridge);
    text("telemetry-rate", status.telemetry_rate_hz);
  }
  if (snapshot.link) {
    for (const [key, value] of Object.entries(snapshot.link)) {
      const cell = document.querySelector(`#link [data-field="${key}"]`);
      if (cell) cell.textContent = key === "rtt_ms_p50" ? fixed(value, 1) : String(value ?? "—");
    }
  }
  const events = byId("events");
  if (events && snapshot.events) {
    const items = snapshot.events.map((e) => {
      const li = document.createElement("li");
      li.className = "event-" + e.kind;
      li.textContent = e.text;
      return li;
    });
    if (items.length) events.replaceChildren(...items);
  }
  if (!snapshot.connected && snapshot.error) text("message", snapshot.error);
  showPass(snapshot.pass);
}

function showPass(pass) {
  const start = byId("start");
  if (!start) return;
  const running = Boolean(pass && pass.running);
  start.disabled = running || start.dataset.ended === "yes";
  if (!pass) return;
  if (running && !pass.mine) {
    text("pass-status", `watching the ${pass.zone} pass started from another page (STOP still stops it)`);
  } else if (running) {
    text("pass-status", `running the ${pass.zone} pass: ${pass.depth_mm} mm, ${pass.rate_hz} Hz for ${pass.seconds} s`);
  } else if (pass.outcome) {
    text("pass-status", pass.outcome);
  }
}

function say(sentence) {
  text("message", sentence);
}

async function act(path, body) {
  try {
    const init = { method: "POST" };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const answer = await response.json().catch(() => ({}));
    say(answer.message || `the workstation answered ${response.status}`);
  } catch (error) {
    say("the workstation did not answer: is pen serve still running?");
  }
}

function listen() {
  const source = new EventSource("/live?page=" + encodeURIComponent(PAGE));
  source.onmessage = (event) => show(JSON.parse(event.data));
  source.onerror = () => {
    const pill = byId("connection");
    pill.textContent = "workstation unreachable";
    pill.className = "pill down";
  };
}

byId("stop").addEventListener("click", () => act("/pen/stop"));
byId("reconnect")?.addEventListener("click", () => act("/pen/reconnect"));
// The depth field keeps to the chosen zone's range (the logbook checks it again on START).
function zoneLimits() {
  const zone = byId("zone");
  const depth = byId("depth");
  if (!zone || !depth) return;
  const option = zone.selectedOptions[0];
  if (!option) return;
  const low = Number(option.dataset.min);
  const high = Number(option.dataset.max);
  if (Number.isFinite(low) && Number.isFinite(high) && high > 0) {
    depth.min = String(low);
    depth.max = String(high);
    const now = Number(depth.value);
    if (!(now >= low && now <= high)) depth.value = String(low);
  }
}
byId("zone")?.addEventListener("change", zoneLimits);
zoneLimits();

byId("start")?.addEventListener("click", () => {
  const form = byId("pass-form");
  const data = Object.fromEntries(new FormData(form).entries());
  say("asking the logbook and the pen…");
  act(location.pathname + "/pass", { page: PAGE, ...data });
});
listen();
