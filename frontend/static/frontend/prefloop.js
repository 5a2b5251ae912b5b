// prefloop's one hand-written module: the annotator's keys, voting, prefetch and retry, plus the
// dashboard's "live" indicator. No build step; loaded as <script type="module">.
//
// The voting loop, and why it feels instant:
//   * the next comparison is fetched (server-rendered HTML) while the annotator reads this one;
//   * Enter puts the vote in an outbox (localStorage) and swaps the prefetched comparison in at once;
//   * the outbox sends votes in order, retrying with the SAME idempotency key until the server
//     answers, so a flaky network never loses a vote and a retry never makes two.

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function csrfToken() {
  return $('meta[name="csrf-token"]')?.content ?? "";
}

function newKey() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Outbox: votes wait in localStorage until the server has them.
// ---------------------------------------------------------------------------------------------
class Outbox {
  constructor(storageKey, onResult, onState) {
    this.storageKey = storageKey;
    this.onResult = onResult; // (item, outcome, detail) once per item
    this.onState = onState; // ({pending, retrying, signedOut}) whenever that changes
    this.items = this.load();
    this.running = false;
    this.retrying = false;
    this.signedOut = false;
    this.idleWaiters = [];
  }

  load() {
    try {
      return JSON.parse(localStorage.getItem(this.storageKey) || "[]");
    } catch {
      return [];
    }
  }

  save() {
    try {
      localStorage.setItem(this.storageKey, JSON.stringify(this.items));
    } catch {
      // Private mode or a full quota: the votes still go out from memory.
    }
  }

  has(assignmentId) {
    return this.items.some((item) => item.assignment === assignmentId);
  }

  ids() {
    return this.items.map((item) => item.assignment);
  }

  add(item) {
    if (this.has(item.assignment)) return; // a double press never queues a second vote
    this.items.push(item);
    this.save();
    this.report();
    this.pump();
  }

  whenIdle() {
    return this.items.length ? new Promise((resolve) => this.idleWaiters.push(resolve)) : Promise.resolve();
  }

  report() {
    this.onState({ pending: this.items.length, retrying: this.retrying, signedOut: this.signedOut });
  }

  async pump() {
    if (this.running) return;
    this.running = true;
    let failures = 0;
    while (this.items.length) {
      const item = this.items[0];
      const { outcome, detail } = await this.send(item);
      if (outcome === "retry") {
        failures += 1;
        this.retrying = true;
        this.report();
        // 0.25 s, 0.5 s, 1 s ... at most 8 s between tries; a little jitter spreads a crowd.
        await sleep(Math.min(8000, 250 * 2 ** Math.min(failures - 1, 5)) * (0.85 + Math.random() * 0.3));
        continue;
      }
      failures = 0;
      this.retrying = false;
      this.items.shift();
      this.save();
      this.onResult(item, outcome, detail);
      this.report();
    }
    this.running = false;
    this.idleWaiters.splice(0).forEach((resolve) => resolve());
  }

  async send(item) {
    let response;
    try {
      response = await fetch(item.url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrfToken(),
          "Idempotency-Key": item.key,
        },
        body: JSON.stringify(item.body),
        signal: AbortSignal.timeout(15000),
      });
    } catch {
      return { outcome: "retry" }; // offline, timed out, connection reset
    }
    const wasSignedOut = this.signedOut;
    this.signedOut = response.status === 401 || response.status === 403;
    if (this.signedOut !== wasSignedOut) this.report();
    if (response.ok) {
      const body = await response.json().catch(() => ({}));
      return { outcome: "saved", detail: body };
    }
    if (this.signedOut || response.status === 429 || response.status >= 500) return { outcome: "retry" };
    const body = await response.json().catch(() => ({}));
    if (response.status === 409 && body.error === "already_voted") return { outcome: "already", detail: body };
    if (response.status === 410) return { outcome: "expired", detail: body };
    return { outcome: "rejected", detail: body }; // 400/404: nothing a retry can fix
  }
}

// ---------------------------------------------------------------------------------------------
// Annotator page
// ---------------------------------------------------------------------------------------------
function startAnnotator(config) {
  const queue = $("#queue");
  const votebar = $("#votebar");
  const status = $("#vote-status");
  const rationale = $("#rationale");
  const keysDialog = $("#keys-dialog");
  const rows = $$(".aspect-row", votebar);
  const strengthKeys = "qwert".slice(0, config.strengthScale);
  const choiceKeys = { 1: "a", 2: "b", 3: "tie", 4: "both_bad" };
  const progress = { done: config.progress.done, today: config.progress.today };
  votebar.classList.toggle("multi", rows.length > 1);

  // Latencies (keypress to next comparison painted) for the browser tests and curious people.
  const metrics = (window.prefloop = { latencies: [], votesQueued: 0, nextReady: false, pending: 0 });

  const state = {
    item: null, // {id, key, shownAt, answers: Map(aspect -> {choice, strength}), submitted}
    active: 0, // the aspect row that keys apply to
    next: null, // Promise of the prefetched element
  };

  let statusTimer = 0;
  function say(text, tone = "", sticky = false) {
    clearTimeout(statusTimer);
    status.textContent = text;
    status.dataset.tone = tone;
    // A passing message gives way to the outbox's state (usually nothing) after a moment.
    if (!sticky && text) statusTimer = setTimeout(() => say(outboxText(), "warn", true), 1800);
  }

  function outboxText() {
    if (outbox.signedOut) return "Signed out? Your votes are kept here; sign in again in another tab.";
    if (outbox.retrying) return `Network trouble: ${outbox.items.length} vote${outbox.items.length > 1 ? "s" : ""} waiting, retrying…`;
    return "";
  }

  const outbox = new Outbox(
    `prefloop:outbox:${config.username}`,
    (item, outcome, detail) => {
      if (outcome === "saved" || outcome === "already") {
        if (outcome === "saved") {
          progress.done += 1;
          progress.today += 1;
          $("#my-done").textContent = progress.done;
          $("#my-today").textContent = progress.today;
        }
      } else if (outcome === "expired") {
        say("One comparison expired before your vote arrived; it went to someone else.", "warn");
      } else {
        say(`A vote was refused: ${detail?.detail ?? "unknown error"}`, "warn", true);
      }
    },
    ({ pending }) => {
      metrics.pending = pending;
      const text = outboxText();
      if (text) say(text, "warn", true);
      else if (status.dataset.outbox) say("");
      status.dataset.outbox = text ? "1" : "";
    },
  );

  // --- the comparison on screen ---------------------------------------------------------------
  function show(element) {
    const id = Number(element?.dataset.assignment) || null;
    state.item = id
      ? { id, key: newKey(), shownAt: performance.now(), answers: new Map(), submitted: false }
      : null;
    votebar.hidden = !id;
    setActive(0);
    for (const button of $$(".choice, .strength-option", votebar)) button.setAttribute("aria-pressed", "false");
    for (const button of $$(".strength-option", votebar)) button.disabled = true;
    if (rationale) rationale.value = "";
    $("#submit-vote").disabled = false;
  }

  function setActive(index) {
    state.active = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row, i) => row.classList.toggle("active", i === state.active));
  }

  function answer(row) {
    const aspect = row.dataset.aspect;
    if (!state.item.answers.has(aspect)) state.item.answers.set(aspect, { choice: null, strength: null });
    return state.item.answers.get(aspect);
  }

  function pulse(button) {
    button.classList.remove("pulse");
    void button.offsetWidth; // restart the animation
    button.classList.add("pulse");
  }

  function choose(rowIndex, choice, { advance = true } = {}) {
    if (!state.item || state.item.submitted) return;
    const row = rows[rowIndex];
    const button = $(`.choice[data-choice="${choice}"]`, row);
    if (!button) return; // a choice this project does not allow
    const given = answer(row);
    given.choice = choice;
    const preference = choice === "a" || choice === "b";
    if (!preference) given.strength = null;
    for (const b of $$(".choice", row)) b.setAttribute("aria-pressed", String(b === button));
    for (const b of $$(".strength-option", row)) {
      b.disabled = !preference;
      if (!preference) b.setAttribute("aria-pressed", "false");
    }
    pulse(button);
    markPicked();
    // Several aspects: move on to the next one still without a choice.
    if (advance && rows.length > 1) {
      const open = rows.findIndex((r, i) => i > rowIndex && !answer(r).choice);
      if (open >= 0) setActive(open);
    }
  }

  function markPicked() {
    // With one aspect, outline the preferred response so the choice is visible where the eyes are.
    if (rows.length !== 1) return;
    const choice = answer(rows[0]).choice;
    for (const section of $$(".response", queue)) {
      section.classList.toggle("picked", section.dataset.side === choice);
    }
  }

  function setStrength(rowIndex, value) {
    if (!state.item || state.item.submitted) return;
    const row = rows[rowIndex];
    const given = answer(row);
    if (given.choice !== "a" && given.choice !== "b") {
      say("Pick A or B first; strength says how much better it is.");
      return;
    }
    const button = $(`.strength-option[data-strength="${value}"]`, row);
    if (!button) return;
    given.strength = given.strength === value ? null : value; // pressing again clears it
    for (const b of $$(".strength-option", row)) b.setAttribute("aria-pressed", String(b === button && given.strength !== null));
    pulse(button);
  }

  function problem() {
    const missing = rows.findIndex((row) => !answer(row).choice);
    if (missing >= 0) {
      setActive(missing);
      const name = rows.length > 1 ? ` for ${rows[missing].dataset.aspect}` : "";
      return `Choose ${config.choices.length > 2 ? "an answer" : "A or B"}${name} first (keys 1–${config.choices.length}).`;
    }
    if (config.rationale === "required" && !rationale.value.trim()) {
      rationale.focus();
      return "A short reason is required for this project.";
    }
    return "";
  }

  function submit(event) {
    const item = state.item;
    if (!item || item.submitted) return; // double press, or nothing on screen
    const t0 = event?.timeStamp ?? performance.now();
    const why = problem();
    if (why) {
      say(why, "warn");
      return;
    }
    item.submitted = true;
    $("#submit-vote").disabled = true;
    const reason = rationale ? rationale.value.trim() : "";
    const votes = rows.map((row) => {
      const given = answer(row);
      return { aspect: row.dataset.aspect, choice: given.choice, strength: given.strength, rationale: reason };
    });
    outbox.add({
      assignment: item.id,
      key: item.key,
      url: config.voteUrl.replace("{id}", item.id),
      body: { votes, idempotency_key: item.key, time_spent_ms: Math.round(performance.now() - item.shownAt) },
    });
    metrics.votesQueued += 1;
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
    say(rows.length === 1 ? `Saved: ${labelOf(votes[0].choice)}` : "Saved", "ok");
    advance(t0, item.id);
  }

  function labelOf(choice) {
    return { a: "A is better", b: "B is better", tie: "tie", both_bad: "both bad" }[choice] ?? choice;
  }

  // --- next comparison: prefetch and swap -------------------------------------------------------
  function exclusions() {
    return [...new Set([state.item?.id, ...outbox.ids()].filter(Boolean))].slice(-10);
  }

  async function fetchNext(exclude) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const body = new URLSearchParams();
        exclude.forEach((id) => body.append("exclude", id));
        const response = await fetch(config.nextUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken() },
          body,
          signal: AbortSignal.timeout(15000),
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const template = document.createElement("template");
        template.innerHTML = await response.text(); // inert until inserted; built off-screen now
        const element = template.content.firstElementChild;
        // Leases held by votes still in the outbox: wait for them, then ask again.
        if (element.dataset.reason === "lease_limit" && outbox.items.length) {
          await outbox.whenIdle();
          exclude = exclusions();
          continue;
        }
        return element;
      } catch {
        await sleep(Math.min(8000, 300 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  function prefetch() {
    metrics.nextReady = false;
    state.next = state.item ? fetchNext(exclusions()) : null;
    state.next?.then(() => {
      metrics.nextReady = true;
    });
  }

  async function advance(t0, votedId) {
    let next = state.next;
    let element = next ? await Promise.race([next, sleep(0).then(() => null)]) : null;
    if (!element) {
      queue.classList.add("queue-loading"); // only shown if the prefetch has not landed yet
      element = next ? await next : await fetchNext(exclusions());
      queue.classList.remove("queue-loading");
    }
    if (Number(element.dataset.assignment) === votedId || outbox.has(Number(element.dataset.assignment))) {
      element = await fetchNext(exclusions()); // the server handed back a lease we just voted
    }
    queue.replaceChildren(element);
    window.scrollTo({ top: 0, behavior: "instant" });
    show(element);
    // Painted: the frame after the swap has been rendered.
    requestAnimationFrame(() =>
      setTimeout(() => {
        const ms = performance.now() - t0;
        metrics.latencies.push({ assignment: votedId, ms: Math.round(ms * 10) / 10 });
        queue.dataset.shownAfterMs = ms.toFixed(1);
      }, 0),
    );
    prefetch();
  }

  // --- keys and clicks ----------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (keysDialog?.open) return; // the dialog handles Escape itself
    if (target === rationale) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        submit(event);
      } else if (event.key === "Escape") {
        rationale.blur();
      }
      return;
    }
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) return;
    if (event.key === "?") {
      event.preventDefault();
      keysDialog?.showModal();
      return;
    }
    if (!state.item) return;
    if (event.key === "Enter") {
      // A focused link or unrelated button keeps its own Enter; the vote bar's buttons submit.
      if (target instanceof HTMLElement && target.closest("a, summary, button:not(.choice, .strength-option, .submit)")) return;
      event.preventDefault();
      submit(event);
      return;
    }
    if (event.repeat) return;
    if (choiceKeys[event.key]) {
      event.preventDefault();
      choose(state.active, choiceKeys[event.key]);
    } else if (strengthKeys.includes(event.key.toLowerCase()) && event.key.length === 1) {
      event.preventDefault();
      setStrength(state.active, strengthKeys.indexOf(event.key.toLowerCase()) + 1);
    } else if (event.key === "n" && rationale) {
      event.preventDefault();
      rationale.focus();
    } else if (rows.length > 1 && (event.key === "j" || event.key === "k")) {
      event.preventDefault();
      setActive(state.active + (event.key === "j" ? 1 : -1));
    }
  });

  votebar.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const row = rows.indexOf(button.closest(".aspect-row"));
    if (button.classList.contains("choice")) {
      setActive(row);
      choose(row, button.dataset.choice, { advance: false });
    } else if (button.classList.contains("strength-option")) {
      setActive(row);
      setStrength(row, Number(button.dataset.strength));
    }
  });
  votebar.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event);
  });
  $("#show-keys")?.addEventListener("click", () => keysDialog?.showModal());

  // Instructions stay as the annotator left them (open the first time).
  const instructions = $("#instructions");
  if (instructions) {
    const key = `prefloop:instructions:${config.projectId}`;
    const saved = localStorage.getItem(key);
    // On a phone the instructions would push the texts below the fold: closed unless opened before.
    if (saved === "closed" || (saved === null && matchMedia("(max-width: 820px)").matches)) instructions.open = false;
    // Only the annotator's own clicks are remembered, not the closing above.
    $("summary", instructions).addEventListener("click", () =>
      setTimeout(() => localStorage.setItem(key, instructions.open ? "open" : "closed"), 0),
    );
  }

  // --- start --------------------------------------------------------------------------------------
  const first = $(".comparison, .queue-empty", queue);
  show(first);
  if (state.item && outbox.has(state.item.id)) {
    // Reloaded while this one's vote was still in the outbox: it is answered, move on.
    state.item.submitted = true;
    advance(performance.now(), state.item.id);
  } else {
    prefetch();
  }
  metrics.pending = outbox.items.length;
  if (outbox.items.length) outbox.pump();
  document.documentElement.dataset.ready = "annotate";
}

// ---------------------------------------------------------------------------------------------
// Dashboard: a small live indicator around htmx's websocket extension.
// ---------------------------------------------------------------------------------------------
function startDashboard() {
  const live = $("#live");
  const indicator = $("#live-state");
  const set = (state, label) => {
    indicator.dataset.state = state;
    $(".live-label", indicator).textContent = label;
  };
  live.addEventListener("htmx:ws:after:connection", () => set("live", "Live"));
  live.addEventListener("htmx:ws:close", () => set("offline", "Reconnecting…"));
  live.addEventListener("htmx:ws:after:message:incoming", () => {
    document.documentElement.dataset.liveUpdates = String(Number(document.documentElement.dataset.liveUpdates || 0) + 1);
  });
}

const annotateConfig = $("#annotate-config");
if (annotateConfig) startAnnotator(JSON.parse(annotateConfig.textContent));
if ($("#live")) startDashboard();
