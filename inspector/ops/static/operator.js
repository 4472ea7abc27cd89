// Operator page: polls /operator/state.json once a second and renders it (no external libraries).
"use strict";
const $ = (id) => document.getElementById(id);

function text(id, value) { $(id).textContent = value === null || value === undefined || value === "" ? "–" : String(value); }

function fmtScores(scores) {
  return Object.entries(scores || {}).filter(([k]) => !k.startsWith("p.")).slice(0, 6)
    .map(([k, v]) => `${k}=${typeof v === "number" ? +v.toPrecision(4) : v}`).join(" ");
}

function badge(id, label, cls) { const el = $(id); el.textContent = label; el.className = "badge " + cls; }

function renderLast(last) {
  if (!last) return;
  text("last-id", `#${last.frame_id} · ${new Date(last.acquired_at * 1000).toLocaleTimeString()}`);
  const v = $("last-verdict"); v.textContent = last.verdict; v.className = "verdict " + last.verdict;
  if (last.thumbnail && $("last-thumb").getAttribute("src") !== last.thumbnail) $("last-thumb").src = last.thumbnail;
  const body = $("last-results").tBodies[0];
  body.replaceChildren(...last.results.map((r) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td><td></td>";
    tr.cells[0].textContent = r.inspection + (r.model ? ` (v${r.model})` : "");
    tr.cells[1].textContent = r.verdict + (r.identity ? ` [${r.identity}]` : "");
    tr.cells[1].className = "v-" + r.verdict;
    tr.cells[2].textContent = fmtScores(r.scores);
    return tr;
  }));
}

function renderGallery(rejects) {
  const g = $("gallery");
  if (!rejects.length) return;
  const have = Array.from(g.querySelectorAll(".reject")).map((e) => e.dataset.frame).join(",");
  if (have === rejects.map((r) => String(r.frame_id)).join(",")) return;
  g.replaceChildren(...rejects.map((r) => {
    const card = document.createElement("div");
    card.className = "reject"; card.dataset.frame = r.frame_id;
    const imgs = document.createElement("div"); imgs.className = "imgs";
    for (const url of [r.thumbnail, ...r.gradcam.map((x) => x.url)].filter(Boolean)) {
      const img = document.createElement("img"); img.src = url; img.alt = url.includes("gradcam") ? "Grad-CAM overlay" : "frame";
      if (url.includes("gradcam")) img.className = "gradcam";
      imgs.appendChild(img);
    }
    const cap = document.createElement("div"); cap.className = "caption";
    cap.textContent = `#${r.frame_id} ${new Date(r.acquired_at * 1000).toLocaleTimeString()} — ` +
      r.results.filter((x) => x.verdict !== "pass").map((x) =>
        `${x.inspection}: ${x.verdict}${x.identity ? " [" + x.identity + "]" : ""}` +
        (x.reason ? ` (${[].concat(x.reason).join(", ")})` : "") + " " + fmtScores(x.scores)).join("; ");
    card.append(imgs, cap);
    return card;
  }));
}

function render(s) {
  const st = s.state || {};
  badge("machine-state", st.state || "…", { Operational: "ok", Halted: "warn", Error: "bad" }[st.state] || "");
  badge("ready", st.ready ? "ready" : "not ready", st.ready ? "ok" : "bad");
  text("lot", st.lot); text("recipe", st.recipe); text("expected", st.expected_excipient); text("run-id", st.run_id);
  text("reasons", (st.reasons || []).join(", "));
  for (const [k, v] of Object.entries(s.counters)) text("c-" + k, v);
  text("r-frames", s.rates.frames_per_s); text("r-rejects", s.rates.rejects_per_s);
  const rb = $("results").tBodies[0];
  rb.replaceChildren(...Object.entries(s.results).map(([name, v]) => {
    const tr = document.createElement("tr");
    tr.dataset.inspection = name;
    for (const x of [name, v.pass ?? 0, v.reject ?? 0, v.error ?? 0]) { const td = document.createElement("td"); td.textContent = x; tr.appendChild(td); }
    return tr;
  }));
  renderLast(s.last);
  renderGallery(s.rejects);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const r = await fetch("/operator/state.json", { cache: "no-store", credentials: "same-origin" });
    if (r.ok) render(await r.json()); else $("updated").textContent = `error ${r.status}`;
  } catch (e) {
    $("updated").textContent = "daemon unreachable";
  }
  setTimeout(poll, 1000);
}
poll();
