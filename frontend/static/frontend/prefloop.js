// prefloop's one hand-written module: the annotator's keys, voting, prefetch and retry, plus the
// dashboard's "live" indicator. No build step; loaded as <script type="module">.
//
// The voting loop, and why it feels instant:
//   * the next comparison is fetched (server-rendered HTML) while the annotator reads this one;
//     after a vote it comes with the vote's answer (`next: "html"`, one request per comparison);
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
  constructor(storageKey, onResult, onState, prepare = (item) => item.body) {
    this.storageKey = storageKey;
    this.onResult = onResult; // (item, outcome, detail) once per item
    this.onState = onState; // ({pending, retrying, signedOut}) whenever that changes
    this.prepare = prepare; // item -> the body to send now (the page adds what it holds at that moment)
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
        body: JSON.stringify(this.prepare(item)),
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
  const SIDES = "abcdef"; // K-way comparisons rank up to six responses by their letters
  const progress = { done: config.progress.done, today: config.progress.today };
  votebar.classList.toggle("multi", rows.length > 1);

  // Latencies (keypress to next comparison painted) for the browser tests and curious people.
  const metrics = (window.prefloop = { latencies: [], votesQueued: 0, nextReady: false, pending: 0 });

  const state = {
    item: null, // {id, key, shownAt, answers: Map(aspect -> {choice, strength, ranking}), submitted, sides, editing}
    held: null, // while changing the last vote: {element, item} of the comparison it interrupted
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

  // One request per loop: a vote asks for the next comparison too (`next: "html"`); its answer's
  // fragment becomes the prefetched one. Resolvers by assignment id, for votes sent from this page.
  const following = new Map();
  const outbox = new Outbox(
    `prefloop:outbox:${config.username}`,
    (item, outcome, detail) => {
      const resolve = following.get(item.assignment);
      if (resolve) {
        following.delete(item.assignment);
        resolve(outcome === "saved" && typeof detail?.next_html === "string" ? detail.next_html : null);
      }
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
    // Excluded at sending time: what the page holds then (on screen, prefetched, queued votes).
    (item) => (item.body.next ? { ...item.body, exclude: [...new Set([state.prefetched, ...exclusions()].filter(Boolean))].slice(-10) } : item.body),
  );

  // --- the comparison on screen ---------------------------------------------------------------
  function show(element, { restore = null } = {}) {
    const id = Number(element?.dataset.assignment) || null;
    const sides = id ? $$(".response", element).map((section) => section.dataset.side) : [];
    state.item = restore ?? (id
      ? { id, key: newKey(), shownAt: performance.now(), answers: new Map(), submitted: false, sides,
          editing: element.dataset.edit === "1" }
      : null);
    votebar.hidden = !id;
    votebar.dataset.mode = sides.length > 2 ? "rank" : "pair";
    keysDialog?.setAttribute("data-mode", votebar.dataset.mode);
    setActive(0);
    for (const button of $$(".choice, .strength-option", votebar)) button.setAttribute("aria-pressed", "false");
    for (const button of $$(".strength-option", votebar)) button.disabled = true;
    if (rationale) rationale.value = "";
    $("#submit-vote").disabled = false;
    const editing = Boolean(state.item?.editing);
    $("#edit-last")?.setAttribute("aria-pressed", String(editing));
    $("#skip").disabled = editing;
    $(".submit-label", votebar).textContent = editing ? "Save change" : "Submit";
    if (state.item?.editing && !restore) prefill(JSON.parse(element.dataset.answers || "{}"));
    else if (restore) rows.forEach((row, i) => redraw(i));
    rows.forEach((_, i) => renderRanking(i));
    markPicked();
    showSide(sides[0]);
  }

  function prefill(answers) {
    // The last vote's answers, so the annotator changes only what they meant to.
    rows.forEach((row, i) => {
      const given = answers[row.dataset.aspect];
      if (!given) return;
      if (given.ranking) Object.assign(answer(row), { choice: "ranked", auto: null, ranking: given.ranking.map((g) => (typeof g === "string" ? [g] : [...g])) });
      else choose(i, given.choice, { advance: false });
      if (given.strength) setStrength(i, given.strength);
      if (rationale && given.rationale) rationale.value = given.rationale;
    });
  }

  function redraw(rowIndex) {
    // Buttons of a restored comparison (back from changing the last vote) show its answers again.
    const given = answer(rows[rowIndex]);
    for (const b of $$(".choice", rows[rowIndex])) b.setAttribute("aria-pressed", String(b.dataset.choice === given.choice));
    const preference = ["a", "b", "ranked"].includes(given.choice);
    for (const b of $$(".strength-option", rows[rowIndex])) {
      b.disabled = !preference;
      b.setAttribute("aria-pressed", String(Number(b.dataset.strength) === given.strength));
    }
  }

  // --- K-way: a ranking, best first, built by letters, clicks or drag ---------------------------
  // A ranking is a list of groups of sides, best first: [["c"], ["a", "b"], ["d"]] ties a and b
  // (only where the project allows ties). `auto` is the side that placed itself (the last one).
  function groups(rowIndex) {
    return answer(rows[rowIndex]).ranking;
  }

  function placedSides(rowIndex) {
    return groups(rowIndex).flat();
  }

  function setRanking(rowIndex, order) {
    const given = answer(rows[rowIndex]);
    const sides = state.item.sides;
    order = order.filter((group) => group.length);
    const left = sides.filter((s) => !order.flat().includes(s));
    // The last response places itself: K-1 letters rank K responses.
    given.auto = left.length === 1 ? left[0] : null;
    if (given.auto) order = [...order, [given.auto]];
    given.ranking = order;
    given.choice = left.length <= 1 ? "ranked" : null;
    if (!given.choice) given.strength = null;
    for (const b of $$(".strength-option", rows[rowIndex])) {
      b.disabled = !given.choice;
      if (!given.choice) b.setAttribute("aria-pressed", "false");
    }
    renderRanking(rowIndex);
    markPicked();
    if (given.choice && rows.length > 1) {
      const open = rows.findIndex((r, i) => i > rowIndex && !answer(r).choice);
      if (open >= 0) setActive(open);
    }
  }

  function withoutSide(order, side) {
    return order.map((group) => group.filter((s) => s !== side)).filter((group) => group.length);
  }

  function place(rowIndex, side) {
    if (!state.item || state.item.submitted || !state.item.sides.includes(side)) return false;
    if (placedSides(rowIndex).includes(side)) return false;
    setRanking(rowIndex, [...groups(rowIndex), [side]]);
    return true;
  }

  function tieWithPrevious(rowIndex) {
    // "=": the last placed response ties with the one placed before it.
    if (!state.item || state.item.submitted || !config.allowTies) return;
    const order = groups(rowIndex).map((group) => [...group]);
    if (order.length < 2) return;
    const last = order.pop();
    order[order.length - 1].push(...last);
    const given = answer(rows[rowIndex]);
    const auto = given.auto;
    setRanking(rowIndex, order);
    given.auto = auto; // still the one that placed itself, now tied
  }

  function unplaceLast(rowIndex) {
    if (!state.item || state.item.submitted) return;
    const given = answer(rows[rowIndex]);
    // A complete ranking's last response placed itself: Backspace takes back the last pressed one too.
    let order = given.auto ? withoutSide(groups(rowIndex), given.auto) : groups(rowIndex);
    const last = order.flat().at(-1);
    if (last) order = withoutSide(order, last);
    setRanking(rowIndex, order);
  }

  function move(rowIndex, side, before) {
    // Drag and drop: `side` goes (on its own) before the group of `before`, to the end (null), or out ("pool").
    if (!state.item || state.item.submitted) return;
    let order = withoutSide(groups(rowIndex), side);
    const auto = answer(rows[rowIndex]).auto;
    if (before === "pool") {
      // Back to the pool: the response that had placed itself goes back too, else it would return at once.
      if (auto && auto !== side) order = withoutSide(order, auto);
    } else {
      const at = before ? order.findIndex((group) => group.includes(before)) : -1;
      order = at >= 0 ? [...order.slice(0, at), [side], ...order.slice(at)] : [...order, [side]];
    }
    setRanking(rowIndex, order);
  }

  function rankOf(order, side) {
    // Competition ranking: tied responses share a place, the next one counts them (1, 1, 3).
    let seen = 0;
    for (const group of order) {
      if (group.includes(side)) return { rank: seen + 1, tied: group.length > 1 };
      seen += group.length;
    }
    return { rank: 0, tied: false };
  }

  function chip(side, rank, tied = false) {
    const element = document.createElement("button");
    element.type = "button";
    element.className = tied ? "rank-chip tied" : "rank-chip";
    element.draggable = true;
    element.dataset.side = side;
    element.textContent = rank ? `${rank}. ${side.toUpperCase()}` : side.toUpperCase();
    element.setAttribute("aria-label", rank ? `Rank ${rank}${tied ? " (tie)" : ""}: response ${side.toUpperCase()} (click to take back)` : `Rank response ${side.toUpperCase()} next`);
    return element;
  }

  function renderRanking(rowIndex) {
    const row = rows[rowIndex];
    const box = $(".ranking", row);
    if (!box) return;
    const sides = state.item?.sides ?? [];
    const order = sides.length > 2 ? groups(rowIndex) : [];
    $(".ranked", box).replaceChildren(...order.map((group) => {
      const item = document.createElement("li");
      item.className = group.length > 1 ? "rank-group tied" : "rank-group";
      group.forEach((side, i) => {
        if (i) item.append(Object.assign(document.createElement("span"), { className: "tie-sign", textContent: "=" }));
        item.append(chip(side, rankOf(order, side).rank, group.length > 1));
      });
      return item;
    }));
    $(".pool", box).replaceChildren(...sides.filter((s) => !order.flat().includes(s)).map((side) => chip(side, 0)));
    box.dataset.complete = String(order.flat().length === sides.length && sides.length > 0);
  }

  function setActive(index) {
    state.active = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row, i) => row.classList.toggle("active", i === state.active));
  }

  function answer(row) {
    const aspect = row.dataset.aspect;
    if (!state.item) return { choice: null, strength: null, ranking: [], auto: null };
    if (!state.item.answers.has(aspect)) state.item.answers.set(aspect, { choice: null, strength: null, ranking: [], auto: null });
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
    // Outline the preferred response (one aspect), and badge each ranked one with its place
    // (the active aspect's ranking), so the choice is visible where the eyes are.
    if (!state.item) return;
    const given = answer(rows[rows.length === 1 ? 0 : state.active]);
    for (const section of $$(".response", queue)) {
      const { rank: place, tied } = rankOf(given.ranking ?? [], section.dataset.side);
      section.classList.toggle("picked", rows.length === 1 && (section.dataset.side === given.choice || place === 1));
      section.dataset.rank = place ? String(place) : "";
      const badge = $(".rank-badge", section);
      if (badge) badge.textContent = place ? `ranked ${place} of ${state.item.sides.length}${tied ? " (tie)" : ""}` : "";
      const tab = $(`.side-tab[data-side="${section.dataset.side}"]`, queue);
      if (tab) tab.dataset.rank = place ? String(place) : "";
    }
  }

  function setStrength(rowIndex, value) {
    if (!state.item || state.item.submitted) return;
    const row = rows[rowIndex];
    const given = answer(row);
    if (given.choice !== "a" && given.choice !== "b" && given.choice !== "ranked") {
      say(votebar.dataset.mode === "rank" ? "Rank all responses first; strength says how sure you are." : "Pick A or B first; strength says how much better it is.");
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
      if (votebar.dataset.mode === "rank") return `Rank the responses${name} first: press their letters, best first.`;
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
      const vote = { aspect: row.dataset.aspect, strength: given.strength, rationale: reason };
      const ranking = given.ranking.map((group) => (group.length === 1 ? group[0] : group));
      return given.choice === "ranked" ? { ...vote, ranking } : { ...vote, choice: given.choice };
    });
    if (item.editing) {
      saveEdit(item, votes);
      return;
    }
    const fromVote = new Promise((resolve) => following.set(item.id, resolve));
    outbox.add({
      assignment: item.id,
      key: item.key,
      url: config.voteUrl.replace("{id}", item.id),
      body: { votes, idempotency_key: item.key, time_spent_ms: Math.round(performance.now() - item.shownAt), next: "html" },
    });
    metrics.votesQueued += 1;
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
    say(rows.length === 1 ? `Saved: ${labelOf(votes[0].choice)}` : "Saved", "ok");
    advance(t0, item.id, fromVote);
  }

  // --- skip, and changing the last vote ----------------------------------------------------------
  async function post(url, body) {
    for (let attempt = 0; attempt < 4; attempt += 1) {
      try {
        const response = await fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify(body ?? {}), signal: AbortSignal.timeout(15000),
        });
        if (response.status < 500 && response.status !== 429) return { ok: response.ok, body: await response.json().catch(() => ({})) };
      } catch {
        // offline or reset: try again shortly
      }
      await sleep(300 * 2 ** attempt);
    }
    return { ok: false, body: { detail: "network trouble, please try again" } };
  }

  async function skip() {
    const item = state.item;
    if (!item || item.submitted || item.editing) return;
    item.submitted = true;
    // Answered before the next is asked for: the server must not hand the skipped lease back.
    const { ok, body } = await post(config.skipUrl.replace("{id}", item.id));
    say(ok ? "Skipped: someone else will judge it." : `Could not skip: ${body.detail ?? "error"}`, ok ? "ok" : "warn");
    if (!ok && body.error !== "already_voted") {
      item.submitted = false;
      return;
    }
    advance(performance.now(), item.id);
  }

  async function changeLast() {
    if (state.item?.editing) {
      restoreHeld();
      return;
    }
    if (state.item?.submitted) return;
    await outbox.whenIdle(); // the last vote must have reached the server
    const response = await fetch(config.lastUrl, { credentials: "same-origin", signal: AbortSignal.timeout(15000) }).catch(() => null);
    if (!response?.ok) {
      say("Could not load your last vote; try again.", "warn");
      return;
    }
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    const element = template.content.firstElementChild;
    if (!element?.dataset.assignment) {
      say(element?.dataset.message || "Nothing to change.", "warn");
      return;
    }
    state.held = { element: queue.firstElementChild, item: state.item };
    queue.replaceChildren(element);
    window.scrollTo({ top: 0, behavior: "instant" });
    show(element);
    say("Changing your last vote.", "ok", true);
  }

  function restoreHeld() {
    const held = state.held;
    state.held = null;
    if (!held) return;
    queue.replaceChildren(held.element);
    show(held.element, { restore: held.item });
    say("");
  }

  async function saveEdit(item, votes) {
    const { ok, body } = await post(config.editUrl.replace("{id}", item.id), { votes });
    if (!ok) {
      item.submitted = false;
      $("#submit-vote").disabled = false;
      say(`The change was refused: ${body.detail ?? "error"}`, "warn", true);
      return;
    }
    restoreHeld();
    say("Your last vote was changed.", "ok");
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

  function prefetch(fromVote = null) {
    metrics.nextReady = false;
    // From the vote's answer when it carries the fragment; otherwise (refused, expired, an old
    // item from storage) the page asks for the next one itself, as before.
    state.next = !state.item ? null : fromVote
      ? fromVote.then((html) => {
          const element = html === null ? null : fragment(html);
          // No fragment, or "lease limit" while other votes are still queued: ask as before.
          return element && element.dataset.reason !== "lease_limit" ? element : fetchNext(exclusions());
        })
      : fetchNext(exclusions());
    state.next?.then((element) => {
      state.prefetched = Number(element?.dataset.assignment) || null;
      metrics.nextReady = true;
    });
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html; // inert until inserted, like fetchNext's
    return template.content.firstElementChild;
  }

  async function advance(t0, votedId, fromVote = null) {
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
    prefetch(fromVote);
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
    if (!state.item) {
      if (event.key === "u" && config.editSeconds) changeLast(); // the queue is empty; the last vote may still change
      return;
    }
    if (event.key === "Enter") {
      // A focused link or unrelated button keeps its own Enter; the vote bar's buttons submit.
      if (target instanceof HTMLElement && target.closest("a, summary, button:not(.choice, .strength-option, .submit, .rank-chip)")) return;
      event.preventDefault();
      submit(event);
      return;
    }
    if (event.repeat) return;
    const rankMode = votebar.dataset.mode === "rank";
    if (rankMode && event.key.length === 1 && SIDES.includes(event.key.toLowerCase()) && place(state.active, event.key.toLowerCase())) {
      event.preventDefault();
      return;
    }
    if (rankMode && event.key === "=") {
      event.preventDefault();
      tieWithPrevious(state.active);
      return;
    }
    if (rankMode && event.key === "Backspace") {
      event.preventDefault();
      unplaceLast(state.active);
      return;
    }
    if (event.key === "s") {
      event.preventDefault();
      skip();
      return;
    }
    if (event.key === "u" && config.editSeconds) {
      event.preventDefault();
      changeLast();
      return;
    }
    if (rankMode && choiceKeys[event.key]) return; // no pairwise answers on a K-way comparison
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
    if (button.classList.contains("rank-chip")) {
      setActive(row);
      if (button.closest(".pool")) place(row, button.dataset.side);
      else move(row, button.dataset.side, "pool");
    } else if (button.id === "skip") {
      skip();
    } else if (button.id === "edit-last") {
      changeLast();
    } else if (button.classList.contains("choice")) {
      setActive(row);
      choose(row, button.dataset.choice, { advance: false });
    } else if (button.classList.contains("strength-option")) {
      setActive(row);
      setStrength(row, Number(button.dataset.strength));
    }
  });
  // Drag a chip within the ranking (before another chip, or to the end) or back to the pool.
  let dragged = null;
  votebar.addEventListener("dragstart", (event) => {
    const element = event.target.closest?.(".rank-chip");
    if (!element) return;
    dragged = { side: element.dataset.side, row: rows.indexOf(element.closest(".aspect-row")) };
    event.dataTransfer.setData("text/plain", dragged.side);
    event.dataTransfer.effectAllowed = "move";
  });
  votebar.addEventListener("dragover", (event) => {
    if (dragged && event.target.closest?.(".ranking")) event.preventDefault();
  });
  votebar.addEventListener("drop", (event) => {
    const box = event.target.closest?.(".ranking");
    if (!dragged || !box) return;
    event.preventDefault();
    const row = rows.indexOf(box.closest(".aspect-row"));
    const target = event.target.closest(".rank-chip");
    const before = event.target.closest(".pool") ? "pool" : target && target.closest(".ranked") ? target.dataset.side : null;
    if (row === dragged.row && before !== dragged.side) move(row, dragged.side, before);
    dragged = null;
  });
  votebar.addEventListener("dragend", () => {
    dragged = null;
  });

  // A finger (or pen) never starts an HTML5 drag, so touch drags with pointer events: the chip follows
  // the pointer and drops where it is let go, through the same move() as a mouse drop. A tap is still a click.
  let touchDrag = null;
  let swallowClick = false;
  function dropTarget(x, y) {
    const under = document.elementFromPoint(x, y);
    const box = under?.closest(".ranking");
    if (!box) return null;
    const row = rows.indexOf(box.closest(".aspect-row"));
    const target = under.closest(".rank-chip");
    if (under.closest(".pool")) return { row, before: "pool" };
    if (!target || !target.closest(".ranked")) return { row, before: null };
    // On a chip's left half: before it; on its right half: after its group (a finger hides the gaps).
    const rect = target.getBoundingClientRect();
    if (x < rect.left + rect.width / 2) return { row, before: target.dataset.side };
    const order = groups(row);
    const next = order[order.findIndex((group) => group.includes(target.dataset.side)) + 1];
    return { row, before: next ? next[0] : null };
  }
  function endTouchDrag() {
    if (!touchDrag) return null;
    const drag = touchDrag;
    touchDrag = null;
    drag.element.classList.remove("touch-dragging");
    drag.element.style.transform = "";
    return drag;
  }
  votebar.addEventListener("pointerdown", (event) => {
    swallowClick = false;
    const element = event.target.closest?.(".rank-chip");
    if (event.pointerType === "mouse" || !element || !state.item || state.item.submitted) return;
    touchDrag = { side: element.dataset.side, row: rows.indexOf(element.closest(".aspect-row")), element,
                  x: event.clientX, y: event.clientY, moved: false, id: event.pointerId };
    element.draggable = false; // else the browser's own touch drag-and-drop may take the gesture
    element.setPointerCapture?.(event.pointerId);
  });
  votebar.addEventListener("pointermove", (event) => {
    if (!touchDrag || event.pointerId !== touchDrag.id) return;
    const dx = event.clientX - touchDrag.x;
    const dy = event.clientY - touchDrag.y;
    if (!touchDrag.moved && Math.hypot(dx, dy) < 8) return;
    touchDrag.moved = true;
    touchDrag.element.classList.add("touch-dragging");
    touchDrag.element.style.transform = `translate(${dx}px, ${dy}px)`;
  });
  votebar.addEventListener("pointerup", (event) => {
    if (!touchDrag || event.pointerId !== touchDrag.id) return;
    const drag = endTouchDrag();
    if (!drag.moved) return; // a tap: the click places the chip or takes it back
    swallowClick = true; // the click that ends a drag is not a tap
    const drop = dropTarget(event.clientX, event.clientY);
    if (drop && drop.row === drag.row && drop.before !== drag.side) move(drop.row, drag.side, drop.before);
  });
  votebar.addEventListener("pointercancel", () => endTouchDrag());
  votebar.addEventListener("click", (event) => {
    if (!swallowClick) return;
    swallowClick = false;
    event.stopImmediatePropagation();
    event.preventDefault();
  }, { capture: true });

  // Narrow screens show one response at a time: tabs, or a swipe across the responses.
  function showSide(side) {
    const responses = $(".responses", queue);
    if (!responses || !side) return;
    responses.dataset.showing = side;
    for (const section of $$(".response", responses)) section.classList.toggle("showing", section.dataset.side === side);
    for (const tab of $$(".side-tab", queue)) tab.setAttribute("aria-selected", String(tab.dataset.side === side));
  }
  queue.addEventListener("click", (event) => {
    const tab = event.target.closest(".side-tab");
    if (tab) showSide(tab.dataset.side);
  });
  let swipe = null;
  queue.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".responses")) swipe = { x: event.clientX, y: event.clientY };
  });
  queue.addEventListener("pointerup", (event) => {
    const start = swipe;
    swipe = null;
    const tabs = $(".side-tabs", queue);
    if (!start || !state.item || !tabs || getComputedStyle(tabs).display === "none") return;
    const dx = event.clientX - start.x;
    if (Math.abs(dx) < 50 || Math.abs(dx) < 2 * Math.abs(event.clientY - start.y)) return;
    const sides = state.item.sides;
    const at = sides.indexOf($(".responses", queue).dataset.showing);
    showSide(sides[Math.max(0, Math.min(sides.length - 1, at + (dx < 0 ? 1 : -1)))]);
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
