// posegen web app: the pages' behaviour. Plain JavaScript, no library.
//
// Every action goes to the JSON API (/api/apps/pose-generator/...) with the session cookie and
// the page's CSRF token; completions arrive on the API's event stream (Server-Sent Events), so
// nothing here polls. Error messages are the API's own, shown next to the control that caused
// them.
"use strict";

const API = "/api/apps/pose-generator";
const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const viewer = readJson("viewer-data") ?? {};
const pageData = readJson("page-data") ?? {};

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

// A stored image's URL that the browser will not answer from its cache (same key, new pixels).
function fresh(url) {
  // A presigned S3 URL is new each time and signs its whole query: leave it as it is.
  if (/[?&]X-Amz-Signature=/i.test(url)) return url;
  return `${url}${url.includes("?") ? "&" : "?"}v=${Date.now()}`;
}

function sentence(text) {
  return String(text ?? "").trim().replace(/[.!]*$/, ".");
}

function $(selector, root = document) {
  return root.querySelector(selector);
}

function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

// ---- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `The server answered ${status}.`);
    this.status = status;
    this.body = body ?? {};
  }
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrfToken, Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`${API}${path}`, init);
  } catch {
    throw new ApiError(0, { message: "Could not reach posegen. Check your connection and try again." });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// One file as multipart field `file`, with upload progress (fetch cannot report it).
function uploadFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}${path}`);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response));
    };
    xhr.onerror = () =>
      reject(new ApiError(0, { message: "The upload was interrupted. Try again." }));
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  });
}

// ---- header, toasts, live events ------------------------------------------------------------

function showBalance(credits, unlimited) {
  viewer.credits = credits;
  for (const node of $$("[data-credit-balance]")) {
    node.textContent = unlimited ? "Unlimited" : String(credits);
  }
  document.dispatchEvent(new CustomEvent("posegen:balance"));
}

async function refreshBalance() {
  try {
    const me = await api("GET", "/me");
    showBalance(me.credits, me.enterpriseUnlimited);
  } catch {
    // The header keeps the last known balance; the next event tries again.
  }
}

function toast(message, kind = "info") {
  const region = $("[data-toasts]");
  if (!region) return;
  const item = document.createElement("div");
  item.className = `toast${kind === "error" ? " toast-error" : ""}`;
  item.textContent = message;
  region.append(item);
  setTimeout(() => item.remove(), 6000);
}

// One EventSource per page; the browser reconnects by itself and resumes with Last-Event-ID.
const liveHandlers = new Map();

function onLive(name, handler) {
  if (!liveHandlers.has(name)) liveHandlers.set(name, []);
  liveHandlers.get(name).push(handler);
}

function startLiveEvents() {
  if (!csrfToken || typeof EventSource === "undefined") return;
  const source = new EventSource(`${API}/events`, { withCredentials: true });
  const names = [
    "background-change.completed",
    "background-change.failed",
    "export.progress",
    "export.completed",
    "export.failed",
    "pose-request.status-changed",
  ];
  for (const name of names) {
    source.addEventListener(name, (message) => {
      const data = JSON.parse(message.data);
      for (const handler of liveHandlers.get(name) ?? []) handler(data.payload ?? {}, data);
      document.body.dataset.lastEvent = name;
    });
  }
  source.addEventListener("open", () => {
    document.body.dataset.live = "open";
  });
}

onLive("background-change.completed", () => refreshBalance());
onLive("background-change.failed", () => refreshBalance());

// ---- uploader: new generation, or more photos for one ---------------------------------------

const MAX_PARALLEL_UPLOADS = 3;

function setUpDropzone(zone, input, onFiles) {
  const over = (event) => {
    event.preventDefault();
    zone.classList.add("is-over");
  };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    const files = Array.from(event.dataTransfer?.files ?? []);
    if (files.length) onFiles(files);
  });
  input.addEventListener("change", () => {
    const files = Array.from(input.files ?? []);
    input.value = "";
    if (files.length) onFiles(files);
  });
}

function setUpUploader(section) {
  const list = $("[data-upload-list]", section);
  const done = $("[data-upload-done]", section);

  setUpDropzone($("[data-dropzone]", section), $("[data-file-input]", section), async (files) => {
    // On the generations page every drop starts a new generation.
    let generationId = section.dataset.generationId ?? null;
    done.hidden = true;
    const rows = files.map((file) => uploadRow(list, file));
    try {
      if (!generationId) generationId = (await api("POST", "/generations")).id;
    } catch (error) {
      for (const row of rows) row.fail(error.message);
      return;
    }
    const queue = files.map((file, index) => [file, rows[index]]);
    let added = 0;
    const worker = async () => {
      while (queue.length) {
        const [file, row] = queue.shift();
        try {
          await uploadFile(`/generations/${generationId}/poses`, file, row.progress);
          row.succeed();
          added += 1;
        } catch (error) {
          row.fail(error.message);
        }
      }
    };
    await Promise.all(Array.from({ length: MAX_PARALLEL_UPLOADS }, worker));
    const refused = files.length - added;
    const summary = `${added} of ${files.length} photo${files.length === 1 ? "" : "s"} added` +
      (refused ? `; ${refused} refused (see above).` : ".");
    done.replaceChildren(document.createTextNode(`${summary} `));
    if (added) {
      const link = document.createElement("a");
      link.href = `/app/generations/${generationId}`;
      link.className = "btn btn-primary btn-small";
      link.textContent = section.dataset.generationId ? "Show the new poses" : "Open the generation";
      link.dataset.openGeneration = "";
      done.append(link);
    }
    done.hidden = false;
    if (added && !section.dataset.generationId) await refreshGenerationList();
  });
}

// The list on the generations page, re-read from the server once a new generation has photos.
async function refreshGenerationList() {
  const current = $("[data-generation-list]");
  if (!current) return;
  const response = await fetch(window.location.href, { credentials: "same-origin" }).catch(() => null);
  if (!response?.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = $("[data-generation-list]", page);
  if (fresh) current.replaceWith(fresh);
}

function uploadRow(list, file) {
  const item = document.createElement("li");
  item.className = "upload-item";
  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = file.name;
  const state = document.createElement("span");
  state.className = "upload-state";
  state.textContent = "Waiting…";
  const bar = document.createElement("div");
  bar.className = "progress";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-label", `Upload of ${file.name}`);
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", "0");
  const fill = document.createElement("span");
  bar.append(fill);
  item.append(name, state, bar);
  list.append(item);
  return {
    progress(fraction) {
      const percent = Math.round(fraction * 100);
      fill.style.width = `${percent}%`;
      bar.setAttribute("aria-valuenow", String(percent));
      state.textContent = percent < 100 ? `${percent}%` : "Processing…";
    },
    succeed() {
      item.classList.add("is-done");
      fill.style.width = "100%";
      bar.setAttribute("aria-valuenow", "100");
      state.textContent = "Added";
    },
    fail(message) {
      item.classList.add("is-failed");
      bar.hidden = true;
      state.textContent = message;
    },
  };
}

// ---- background changer ---------------------------------------------------------------------

function setUpChanger(root) {
  const pose = pageData.pose;
  const form = $("[data-change-form]", root);
  const submit = $("[data-change-submit]", root);
  const costLabel = $("[data-cost-label]", root);
  const message = $("[data-change-message]", root);
  const retry = $("[data-retry]", root);
  const working = $("[data-working]", root);
  const result = $("[data-result]", root);
  const placeholder = $("[data-result-placeholder]", root);
  const status = $("[data-pose-status]");
  const prompt = $("#prompt", root);
  const counter = $("[data-counter]", root);
  const picker = $("[data-colour-picker]", root);
  const hex = $("[data-colour-hex]", root);
  let running = pose.status === "processing";
  let lastBody = null;

  const mode = () => form.elements.backgroundMode.value;

  function showPanels() {
    for (const panel of $$("[data-panel]", root)) panel.hidden = panel.dataset.panel !== mode();
  }

  function showCost() {
    const cost = pageData.cost;
    if (pageData.unlimited) {
      costLabel.textContent = "Free on your plan";
    } else {
      const left = viewer.credits - cost;
      costLabel.textContent =
        left >= 0 ? `${cost} credits · ${left} left` : `${cost} credits · you have ${viewer.credits}`;
    }
    submit.disabled = running;
  }

  function clearErrors() {
    message.hidden = true;
    retry.hidden = true;
    for (const node of $$("[data-field-error]", root)) node.hidden = true;
    for (const node of $$("[aria-invalid]", root)) node.removeAttribute("aria-invalid");
  }

  function showError(text, field) {
    const slot = field ? $(`[data-field-error="${field}"]`, root) : null;
    const target = slot && !slot.parentElement.closest("[hidden]") ? slot : message;
    target.textContent = text;
    target.className = target === message ? "notice notice-error" : "field-error";
    target.hidden = false;
    const input = field ? form.elements[field] : null;
    if (input && input.type !== "hidden") input.setAttribute("aria-invalid", "true");
  }

  function setWorking(on, text = "Changing the background…") {
    running = on;
    working.hidden = !on;
    $("[data-working-text]", root).textContent = text;
    submit.setAttribute("aria-busy", on ? "true" : "false");
    submit.firstElementChild.textContent = on ? "Changing background…" : "Change background";
    status.textContent = on ? "Processing" : status.textContent;
    if (on) status.className = "badge badge-processing";
    showCost();
  }

  function showResult(url) {
    const src = fresh(url);
    result.src = src;
    result.hidden = false;
    placeholder.hidden = true;
    $("[data-ba-after]").src = src;
    $("[data-before-after]").hidden = false;
  }

  function body() {
    const chosen = mode();
    if (chosen === "ai_generate") {
      return { backgroundMode: chosen, backgroundPrompt: prompt.value.trim() };
    }
    if (chosen === "solid_color") return { backgroundMode: chosen, backgroundColor: hex.value.trim() };
    return { backgroundMode: chosen, backgroundImageUrl: form.elements.backgroundImageUrl.value };
  }

  function checkBody(sent) {
    if (sent.backgroundMode === "ai_generate" && !sent.backgroundPrompt) {
      return ["Describe the background you want.", "backgroundPrompt"];
    }
    if (sent.backgroundMode === "solid_color" && !/^#[0-9a-fA-F]{6}$/.test(sent.backgroundColor)) {
      return ["Enter a colour as #RRGGBB, for example #1E90FF.", "backgroundColor"];
    }
    if (sent.backgroundMode === "upload" && !sent.backgroundImageUrl) {
      return ["Choose a background image first.", "backgroundImageUrl"];
    }
    return null;
  }

  async function start(sent) {
    clearErrors();
    const problem = checkBody(sent);
    if (problem) {
      showError(...problem);
      return;
    }
    lastBody = sent;
    setWorking(true);
    try {
      const accepted = await api("POST", `/poses/${pose.id}/background`, sent);
      showBalance(accepted.creditBalance, pageData.unlimited);
      root.dataset.flowRunId = accepted.flowRunId;
    } catch (error) {
      setWorking(false);
      status.textContent = "Ready";
      status.className = "badge badge-ready";
      if (error.status === 403 && error.body.required !== undefined) {
        showError(
          `Not enough credits: this change needs ${error.body.required} and you have ${error.body.balance}.`,
        );
      } else {
        // A refused field's message goes under that field; anything else under the button.
        const detail = error.status === 400 ? error.body.details?.[0] : null;
        if (detail?.field) showError(detail.message, detail.field);
        else showError(error.message);
      }
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "backgroundMode") {
      clearErrors();
      showPanels();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!running) start(body());
  });
  retry.addEventListener("click", () => {
    if (lastBody && !running) start(lastBody);
  });

  // Prompt: counter and suggestions.
  const count = () => {
    counter.textContent = `${prompt.value.length}/300`;
    counter.classList.toggle("is-near", prompt.value.length > 270);
  };
  prompt.addEventListener("input", count);
  for (const chip of $$("[data-suggestion]", root)) {
    chip.addEventListener("click", () => {
      prompt.value = chip.textContent.trim();
      count();
      prompt.focus();
    });
  }

  // Colour: the picker and the hex field stay in step.
  picker.addEventListener("input", () => {
    hex.value = picker.value.toUpperCase();
    hex.removeAttribute("aria-invalid");
  });
  hex.addEventListener("input", () => {
    const value = hex.value.trim();
    if (/^#[0-9a-fA-F]{6}$/.test(value)) picker.value = value.toLowerCase();
  });
  for (const swatch of $$("[data-swatch]", root)) {
    swatch.style.background = swatch.dataset.swatch;
    swatch.addEventListener("click", () => {
      hex.value = swatch.dataset.swatch;
      picker.value = swatch.dataset.swatch.toLowerCase();
    });
  }

  // Upload mode: the background image goes to POST /uploads first; its key is what we send.
  const bgBar = $("[data-bg-progress]", root);
  const bgPreview = $("[data-bg-preview]", root);
  setUpDropzone($("[data-bg-dropzone]", root), $("[data-bg-input]", root), async ([file]) => {
    clearErrors();
    bgBar.hidden = false;
    bgPreview.hidden = true;
    form.elements.backgroundImageUrl.value = "";
    try {
      const uploaded = await uploadFile("/uploads", file, (fraction) => {
        bgBar.firstElementChild.style.width = `${Math.round(fraction * 100)}%`;
        bgBar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
      });
      form.elements.backgroundImageUrl.value = uploaded.key;
      bgPreview.src = uploaded.url;
      bgPreview.hidden = false;
    } catch (error) {
      showError(error.message, "backgroundImageUrl");
    } finally {
      bgBar.hidden = true;
    }
  });

  // Completion and failure, pushed by the event stream.
  onLive("background-change.completed", (payload) => {
    if (payload.poseId !== pose.id) return;
    setWorking(false);
    status.textContent = "Ready";
    status.className = "badge badge-ready";
    showResult(payload.imageUrl);
    message.textContent = "Done: your new background is ready.";
    message.className = "notice notice-ok";
    message.hidden = false;
  });
  onLive("background-change.failed", (payload) => {
    if (payload.poseId !== pose.id) return;
    setWorking(false);
    status.textContent = "Failed";
    status.className = "badge badge-failed";
    const refunded = payload.creditRefunded
      ? ` Your ${payload.creditRefunded} credits were refunded.`
      : " No credits were taken.";
    showError(`The change failed: ${sentence(payload.errorMessage)}${refunded}`);
    retry.hidden = !lastBody;
  });

  // Before / after: the result is clipped to the slider's position.
  const range = $("[data-ba-range]", root);
  const clip = $("[data-ba-clip]", root);
  const handle = $("[data-ba-handle]", root);
  const slide = () => {
    clip.style.clipPath = `inset(0 0 0 ${range.value}%)`;
    handle.style.left = `${range.value}%`;
  };
  range.addEventListener("input", slide);
  slide();

  // Frames take the photo's own shape, so nothing is letterboxed.
  const [width, height] = pageData.size;
  for (const frame of $$(".thumb-tall, [data-ba-frame]", root)) {
    frame.style.aspectRatio = `${width} / ${height}`;
  }

  document.addEventListener("posegen:balance", showCost);
  showPanels();
  count();
  if (running) setWorking(true, "A change for this pose is running…");
  showCost();
}

// ---- export selector and downloader ---------------------------------------------------------

function setUpExports(selector) {
  const generation = pageData.generation;
  const catalog = new Map(pageData.formats.map((fmt) => [fmt.name, fmt]));
  const poses = new Map(generation.poses.map((pose) => [pose.id, pose]));
  const startButton = $("[data-export-start]", selector);
  const summary = $("[data-export-summary]", selector);
  const progress = $("[data-export-progress]", selector);
  const progressText = $("[data-export-progress-text]", selector);
  const progressBar = $("[role=progressbar]", progress);
  const exportMessage = $("[data-export-message]", selector);
  const customList = $("[data-custom-list]", selector);
  const customForm = $("[data-custom-form]", selector);
  const customError = $("[data-custom-error]", selector);
  const custom = new Set();
  let pendingRun = null;

  // Thumbnails framed at each format's aspect, with its safe area drawn in.
  for (const frame of $$(".frame", selector)) {
    const img = $("img", frame);
    if (frame.dataset.aspect === "source") {
      const apply = () => {
        if (img.naturalWidth) frame.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
      };
      img.complete ? apply() : img.addEventListener("load", apply);
    } else {
      frame.style.aspectRatio = frame.dataset.aspect.replace("/", " / ");
    }
    const [top, right, bottom, left] = frame.dataset.safe.split(",").map(Number);
    const height = Number(frame.dataset.height);
    const width = Number(frame.dataset.width);
    if (height && width && top + right + bottom + left > 0) {
      const safe = $(".safe-area", frame);
      safe.style.top = `${(top / height) * 100}%`;
      safe.style.right = `${(right / width) * 100}%`;
      safe.style.bottom = `${(bottom / height) * 100}%`;
      safe.style.left = `${(left / width) * 100}%`;
      safe.classList.add("is-set");
    }
  }

  const chosenFill = () => $("[data-fill]:checked", selector)?.value ?? "reframe";
  const chosenPoses = () => $$("[data-export-pose]:checked", selector).map((box) => box.value);
  const chosenFormats = () => [
    ...$$("[data-format]:checked", selector).map((box) => box.value),
    ...custom,
  ];

  function showSummary() {
    const formats = chosenFormats().length;
    const count = chosenPoses().length;
    const files = formats * count;
    const cost = pageData.aiFill.costPerFile;
    const paid = chosenFill() === pageData.aiFill.fill
      ? ` · AI expand: up to ${files * cost} credits (${cost} per file AI fills)`
      : "";
    summary.textContent = formats && count
      ? `${formats} format${formats === 1 ? "" : "s"} × ${count} pose${count === 1 ? "" : "s"} = ${files} file${files === 1 ? "" : "s"}${paid}`
      : count ? "Choose formats to export." : "Choose at least one pose.";
    startButton.disabled = !(formats && count) || pendingRun !== null;
    for (const all of $$("[data-select-all]", selector)) {
      const boxes = $$(`[data-format][data-group="${all.dataset.selectAll}"]`, selector);
      const on = boxes.filter((box) => box.checked).length;
      all.checked = on === boxes.length;
      all.indeterminate = on > 0 && on < boxes.length;
    }
  }

  selector.addEventListener("change", (event) => {
    const group = event.target.dataset.selectAll;
    if (group) {
      for (const box of $$(`[data-format][data-group="${group}"]`, selector)) {
        box.checked = event.target.checked;
      }
    }
    showSummary();
  });

  customForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const { minSide, maxSide } = pageData.custom;
    const width = Number(customForm.elements.width.value);
    const height = Number(customForm.elements.height.value);
    const ok = (side) => Number.isInteger(side) && side >= minSide && side <= maxSide;
    customError.hidden = true;
    if (!ok(width) || !ok(height)) {
      customError.textContent = `Width and height must be whole numbers from ${minSide} to ${maxSide} px.`;
      customError.hidden = false;
      return;
    }
    const name = `custom:${width}x${height}`;
    if (!custom.has(name)) {
      custom.add(name);
      const chip = document.createElement("span");
      chip.className = "file-chip";
      chip.append(document.createTextNode(`${width}×${height}`));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-ghost";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove custom size ${width}×${height}`);
      remove.addEventListener("click", () => {
        custom.delete(name);
        chip.remove();
        showSummary();
      });
      chip.append(remove);
      customList.append(chip);
    }
    customForm.reset();
    showSummary();
  });

  // The progress panel shows from the click, not from the 202: on a busy server submitting the
  // run can take seconds, and the seller should see that something is under way.
  const STARTING = "starting";

  async function startExport(formats, poseIds, fill) {
    exportMessage.hidden = true;
    pendingRun = STARTING;
    progress.hidden = false;
    progressBar.classList.add("indeterminate");
    progressBar.removeAttribute("aria-valuenow");
    progressBar.firstElementChild.style.width = "";
    progressText.textContent = "Starting the export…";
    showSummary();
    try {
      const accepted = await api("POST", `/generations/${generation.id}/exports`, {
        formats,
        poseIds,
        fill,
      });
      // A fast run can finish before its 202 arrives; its completion has then been shown.
      if (pendingRun !== STARTING) return;
      pendingRun = accepted.flowRunId;
      const files = accepted.formats.length * accepted.poseIds.length;
      const charged = accepted.aiFiles
        ? ` ${accepted.creditCharged} credits for ${accepted.aiFiles} AI-filled file${accepted.aiFiles === 1 ? "" : "s"} (refunded if it fails).`
        : "";
      progressText.textContent = `Rendering ${files} file${files === 1 ? "" : "s"}… you can keep working; they appear below when ready.${charged}`;
    } catch (error) {
      pendingRun = null;
      progress.hidden = true;
      exportMessage.textContent = error.message;
      exportMessage.className = "notice notice-error";
      exportMessage.hidden = false;
    }
    showSummary();
  }

  startButton.addEventListener("click", () =>
    startExport(chosenFormats(), chosenPoses(), chosenFill()),
  );

  function finishExport(payload, failed) {
    if (payload.generationId !== generation.id) return;
    for (const [poseId, files] of Object.entries(payload.exports ?? {})) {
      const pose = poses.get(poseId);
      if (pose) pose.exportFormats = { ...pose.exportFormats, ...files };
    }
    pendingRun = null;
    progress.hidden = true;
    renderDownloads();
    showSummary();
    if (failed) {
      const names = (payload.failures ?? []).map((f) => `${f.format}: ${f.errorMessage}`).join("; ");
      exportMessage.textContent = `Some files could not be rendered (${names}). The others are ready below.`;
      exportMessage.className = "notice notice-error";
    } else {
      exportMessage.textContent = "Export finished: your files are ready below.";
      exportMessage.className = "notice notice-ok";
    }
    exportMessage.hidden = false;
    toast(failed ? "Export finished with errors." : "Export ready.", failed ? "error" : "info");
  }

  onLive("export.progress", (payload) => {
    if (payload.generationId !== generation.id || payload.flowRunId !== pendingRun) return;
    const percent = Math.round((payload.posesDone / payload.posesTotal) * 100);
    progressBar.classList.remove("indeterminate");
    progressBar.setAttribute("aria-valuenow", String(percent));
    progressBar.firstElementChild.style.width = `${percent}%`;
    progressText.textContent = `${payload.posesDone} of ${payload.posesTotal} poses rendered…`;
    selector.dataset.posesRendered = `${payload.posesDone}/${payload.posesTotal}`;
  });
  onLive("export.completed", (payload) => finishExport(payload, false));
  onLive("export.failed", (payload) => finishExport(payload, true));

  // Downloads: every rendered file, previewed, downloaded or rendered again.
  const table = $("[data-download-table]");
  const dialog = $("[data-preview]");
  const zipMessage = $("[data-zip-message]");

  function label(name) {
    if (catalog.has(name)) return catalog.get(name).displayName;
    return name.startsWith("custom:") ? name.slice(7).replace("x", "×") : name;
  }

  function renderDownloads() {
    table.replaceChildren();
    let any = false;
    let index = 0;
    for (const pose of poses.values()) {
      index += 1;
      const files = Object.entries(pose.exportFormats ?? {});
      if (!files.length) continue;
      any = true;
      const row = document.createElement("div");
      row.className = "download-pose";
      row.dataset.downloadPose = pose.id;
      const head = document.createElement("div");
      head.className = "download-pose-head";
      const img = document.createElement("img");
      img.src = pose.imageUrl;
      img.alt = "";
      const caption = document.createElement("span");
      caption.textContent = `Pose ${index}`;
      head.append(img, caption);
      const chips = document.createElement("div");
      chips.className = "download-files";
      for (const [name, url] of files.sort(([a], [b]) => a.localeCompare(b))) {
        chips.append(fileChip(pose, index, name, url));
      }
      row.append(head, chips);
      table.append(row);
    }
    if (!any) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "Nothing exported yet. Choose formats above and press Export.";
      table.append(empty);
    }
  }

  function fileChip(pose, index, name, url) {
    const chip = document.createElement("span");
    chip.className = "file-chip";
    chip.dataset.file = name;
    const title = document.createElement("span");
    title.className = "file-name";
    title.textContent = label(name);
    chip.append(title);
    const preview = document.createElement("button");
    preview.type = "button";
    preview.className = "btn btn-ghost";
    preview.textContent = "Preview";
    preview.setAttribute("aria-label", `Preview ${label(name)} of pose ${index}`);
    preview.addEventListener("click", () => {
      $("[data-preview-title]").textContent = `Pose ${index} · ${label(name)}`;
      $("[data-preview-image]").src = url;
      $("[data-preview-image]").alt = `Pose ${index} as ${label(name)}`;
      $("[data-preview-download]").href = url;
      $("[data-preview-download]").setAttribute("download", `pose-${pose.id}-${name.replace(":", "-")}`);
      dialog.showModal();
    });
    const download = document.createElement("a");
    download.className = "btn btn-ghost";
    download.href = url;
    download.setAttribute("download", `pose-${pose.id}-${name.replace(":", "-")}`);
    download.textContent = "Download";
    download.setAttribute("aria-label", `Download ${label(name)} of pose ${index}`);
    const again = document.createElement("button");
    again.type = "button";
    again.className = "btn btn-ghost";
    again.textContent = "Regenerate";
    again.setAttribute("aria-label", `Regenerate ${label(name)} of pose ${index}`);
    again.addEventListener("click", async () => {
      chip.classList.add("is-busy");
      again.disabled = true;
      again.textContent = "Rendering…";
      try {
        const done = await api("POST", `/poses/${pose.id}/regenerate-export`, { format: name });
        pose.exportFormats[name] = fresh(done.exportUrl);
        renderDownloads();
        toast(`${label(name)} of pose ${index} rendered again.`);
      } catch (error) {
        chip.classList.remove("is-busy");
        again.disabled = false;
        again.textContent = "Regenerate";
        toast(error.message, "error");
      }
    });
    chip.append(preview, download, again);
    return chip;
  }

  // The ZIP of the chosen formats; formats not rendered yet come back as 409 `missing`.
  $("[data-zip-download]").addEventListener("click", async () => {
    zipMessage.hidden = true;
    const formats = chosenFormats();
    const query = formats.length ? `?formats=${encodeURIComponent(formats.join(","))}` : "";
    const response = await fetch(`${API}/generations/${generation.id}/export-zip${query}`, {
      credentials: "same-origin",
    }).catch(() => null);
    if (response?.ok) {
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `poses-${generation.id}.zip`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      return;
    }
    const body = response ? await response.json().catch(() => ({})) : {};
    zipMessage.replaceChildren();
    zipMessage.className = "notice notice-error";
    const text = document.createElement("p");
    text.textContent = body.message ?? "The ZIP could not be built. Try again.";
    zipMessage.append(text);
    const missing = body.missing ?? [];
    if (missing.length) {
      const wanted = [...new Set(missing.flatMap((m) => m.formats))];
      const poseIds = missing.map((m) => m.poseId);
      const detail = document.createElement("p");
      detail.textContent = `Not rendered yet: ${wanted.map(label).join(", ")} for ${poseIds.length} pose${poseIds.length === 1 ? "" : "s"}.`;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-primary";
      button.textContent = "Export the missing files";
      button.dataset.exportMissing = "";
      button.addEventListener("click", () => {
        zipMessage.hidden = true;
        startExport(wanted, poseIds);
      });
      zipMessage.append(detail, button);
    }
    zipMessage.hidden = false;
  });

  renderDownloads();
  showSummary();
}

// ---- generation page: pose statuses stay current ---------------------------------------------

function setUpPoseGrid(grid) {
  const update = (payload, status, error) => {
    const card = $(`[data-pose-card="${payload.poseId}"]`, grid);
    if (!card) return;
    const badge = $("[data-pose-status]", card);
    badge.textContent = status[0].toUpperCase() + status.slice(1);
    badge.className = `badge badge-${status}`;
    const errorNode = $("[data-pose-error]", card);
    errorNode.textContent = error ?? "";
    errorNode.hidden = !error;
    if (payload.imageUrl) $("[data-pose-image]", card).src = fresh(payload.imageUrl);
  };
  onLive("background-change.completed", (payload) => update(payload, "ready"));
  onLive("background-change.failed", (payload) => update(payload, "failed", payload.errorMessage));
}

// ---- pose requests: the form, the lists, the cards ------------------------------------------

// A list rendered by the server ([data-request-list], [data-queue-list]) swapped for the one at
// `url` without a reload; skeleton cards stand in while it loads.
async function swapList(selector, url, { push = true, skeleton = true } = {}) {
  const current = $(selector);
  if (!current) return false;
  const body = $("[data-list-body]", current);
  if (skeleton && body) {
    body.setAttribute("aria-busy", "true");
    const grid = document.createElement("ul");
    grid.className = "request-grid";
    grid.dataset.skeleton = "";
    for (let i = 0; i < 3; i += 1) {
      const item = document.createElement("li");
      item.className = "request-card card skeleton";
      item.setAttribute("aria-hidden", "true");
      for (const size of ["wide", "full", "half"]) {
        const line = document.createElement("span");
        line.className = `skeleton-line skeleton-${size}`;
        item.append(line);
      }
      grid.append(item);
    }
    body.replaceChildren(grid);
  }
  const response = await fetch(url, { credentials: "same-origin" }).catch(() => null);
  if (!response?.ok) {
    if (body) body.removeAttribute("aria-busy");
    toast("Could not load the list. Check your connection and try again.", "error");
    return false;
  }
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const next = $(selector, page);
  if (!next) return false;
  current.replaceWith(next);
  if (push) history.replaceState(null, "", url);
  return true;
}

function setUpRequestLists() {
  const reload = () => swapList("[data-request-list]", window.location.href, { skeleton: false });

  document.addEventListener("click", async (event) => {
    const link = event.target.closest("[data-request-list] a[data-list-link]");
    if (link) {
      event.preventDefault();
      await swapList("[data-request-list]", link.href);
      return;
    }
    const voteButton = event.target.closest("[data-vote]");
    if (voteButton) {
      await toggleVote(voteButton);
      return;
    }
    const details = event.target.closest("[data-details]");
    if (details) {
      details.closest("details").open = false;
      showRequestDetails(details.closest("[data-request-card]"));
      return;
    }
    const remove = event.target.closest("[data-delete]");
    if (remove) {
      const card = remove.closest("[data-request-card]");
      const name = $(".request-name", card).textContent;
      if (!window.confirm(`Delete your request “${name}”?`)) return;
      try {
        await api("DELETE", `/requests/${remove.dataset.delete}`);
        toast(`Request “${name}” deleted.`);
        await reload();
      } catch (error) {
        toast(error.message, "error");
      }
    }
  });

  document.addEventListener("submit", async (event) => {
    const filters = event.target.closest("[data-list-filters]");
    if (!filters) return;
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(filters)) if (value) query.set(key, value);
    await swapList("[data-request-list]", `${filters.action}?${query}`);
  });
  document.addEventListener("change", (event) => {
    const filters = event.target.closest("[data-list-filters]");
    if (filters && event.target.tagName === "SELECT") filters.requestSubmit();
  });

  // A status change of one of my requests: a toast, and the card redrawn where it is shown.
  onLive("pose-request.status-changed", async (payload) => {
    const label = pageData.statusLabels?.[payload.to] ?? payload.to;
    let name = $(`[data-request-card="${payload.requestId}"] .request-name`)?.textContent;
    if (!name) {
      try {
        name = (await api("GET", `/requests/${payload.requestId}`)).poseName;
      } catch {
        name = "One of your requests";
      }
    }
    toast(`“${name}” is now ${label.toLowerCase()}.${payload.notes ? ` Note: ${payload.notes}` : ""}`);
    await refreshCard(payload.requestId);
  });
}

async function refreshCard(requestId) {
  const card = $(`[data-request-card="${requestId}"]`);
  if (!card) return;
  const response = await fetch(window.location.href, { credentials: "same-origin" }).catch(() => null);
  if (!response?.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = $(`[data-request-card="${requestId}"]`, page);
  if (fresh) card.replaceWith(fresh);
}

async function toggleVote(button) {
  const card = button.closest("[data-request-card]");
  const voted = button.getAttribute("aria-pressed") === "true";
  button.disabled = true;
  try {
    const state = await api(voted ? "DELETE" : "POST", `/requests/${button.dataset.vote}/vote`);
    showVote(card, state.votesCount, state.hasVoted);
  } catch (error) {
    toast(error.message, "error");
  } finally {
    button.disabled = false;
  }
}

function showVote(card, count, hasVoted) {
  const button = $("[data-vote]", card);
  button.setAttribute("aria-pressed", hasVoted ? "true" : "false");
  $("[data-vote-label]", card).textContent = hasVoted ? "Voted" : "Vote";
  const counter = $("[data-vote-count]", card);
  counter.textContent = String(count);
  counter.nextSibling.textContent = count === 1 ? " vote" : " votes";
  card.dataset.votes = String(count);
}

function showRequestDetails(card) {
  const dialog = $("[data-request-dialog]");
  const request = JSON.parse($("[data-request-json]", card).textContent);
  $("[data-dialog-title]", dialog).textContent = request.poseName;
  const rows = [
    ["Status", pageData.statusLabels?.[request.status] ?? request.status],
    ["Description", request.description],
    ["Category", request.categoryName],
    ["Use case", request.useCase],
    ["Votes", String(request.votesCount)],
    ["Submitted", new Date(request.createdAt).toLocaleString()],
    ["Last change", new Date(request.updatedAt).toLocaleString()],
    ["Note from the team", request.adminNotes],
  ];
  fillDetails($("[data-dialog-body]", dialog), rows);
  dialog.showModal();
}

function fillDetails(list, rows) {
  list.replaceChildren();
  for (const [term, value] of rows) {
    if (!value) continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
}

function setUpDialogClose() {
  for (const button of $$("[data-dialog-close], [data-review-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}

// PoseRequestForm: counters, a reference picture through POST /uploads, checks, the API's say.
function setUpRequestForm(form) {
  const limits = pageData.limits;
  const message = $("[data-request-message]", form);
  const submit = $("[data-request-submit]", form);
  const preview = $("[data-reference-preview]", form);
  const thumb = $("[data-reference-thumb]", form);
  const state = $("[data-reference-state]", form);
  let referenceKey = null;
  let uploading = false;

  for (const counter of $$("[data-count-for]", form)) {
    const input = document.getElementById(counter.dataset.countFor);
    const max = Number(input.getAttribute("maxlength"));
    const count = () => {
      counter.textContent = `${input.value.length}/${max}`;
      counter.classList.toggle("is-near", input.value.length > max * 0.9);
    };
    input.addEventListener("input", count);
    count();
  }

  function clearErrors() {
    message.hidden = true;
    for (const node of $$("[data-field-error]", form)) node.hidden = true;
    for (const node of $$("[aria-invalid]", form)) node.removeAttribute("aria-invalid");
  }

  function fieldError(field, text) {
    const slot = $(`[data-field-error="${field}"]`, form);
    if (!slot) {
      message.textContent = text;
      message.hidden = false;
      return;
    }
    slot.textContent = text;
    slot.hidden = false;
    form.elements[field]?.setAttribute("aria-invalid", "true");
  }

  setUpDropzone($("[data-reference-dropzone]", form), $("[data-reference-input]", form), async ([file]) => {
    clearErrors();
    referenceKey = null;
    uploading = true;
    preview.hidden = false;
    thumb.src = URL.createObjectURL(file);
    state.textContent = "Uploading…";
    try {
      const stored = await uploadFile("/uploads", file, (fraction) => {
        state.textContent = `Uploading… ${Math.round(fraction * 100)}%`;
      });
      referenceKey = stored.key;
      thumb.src = stored.url;
      state.textContent = file.name;
      preview.dataset.referenceKey = stored.key;
    } catch (error) {
      preview.hidden = true;
      fieldError("referenceImageUrl", error.message);
    } finally {
      uploading = false;
    }
  });
  $("[data-reference-remove]", form).addEventListener("click", () => {
    referenceKey = null;
    preview.hidden = true;
    delete preview.dataset.referenceKey;
    thumb.removeAttribute("src");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const poseName = form.elements.poseName.value.trim();
    const description = form.elements.description.value.trim();
    const useCase = form.elements.useCase.value.trim();
    const problems = [];
    if (!poseName) problems.push(["poseName", "Give the pose a name."]);
    if (poseName.length > limits.poseName) {
      problems.push(["poseName", `Keep the name to ${limits.poseName} characters.`]);
    }
    if (description.length > limits.description) {
      problems.push(["description", `Keep the description to ${limits.description} characters.`]);
    }
    if (useCase.length > limits.useCase) {
      problems.push(["useCase", `Keep the use case to ${limits.useCase} characters.`]);
    }
    if (uploading) problems.push(["referenceImageUrl", "Wait for the picture to finish uploading."]);
    if (problems.length) {
      for (const [field, text] of problems) fieldError(field, text);
      form.elements[problems[0][0]]?.focus();
      return;
    }
    const body = { poseName };
    if (description) body.description = description;
    if (useCase) body.useCase = useCase;
    if (form.elements.categoryId.value) body.categoryId = form.elements.categoryId.value;
    if (referenceKey) body.referenceImageUrl = referenceKey;
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      await api("POST", "/requests", body);
      toast("Request submitted! Our team will review it soon.");
      form.reset();
      referenceKey = null;
      preview.hidden = true;
      for (const input of $$("input, textarea", form)) input.dispatchEvent(new Event("input"));
      await swapList("[data-request-list]", "/app/requests?view=mine");
    } catch (error) {
      const details = error.status === 400 ? error.body.details ?? [] : [];
      if (details.length) {
        for (const detail of details) fieldError(detail.field ?? "", sentence(detail.message));
      } else if (error.status === 409) {
        fieldError("poseName", sentence(error.message));
      } else {
        message.textContent = sentence(error.message);
        message.hidden = false;
      }
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });
}

// ---- the admin desk -------------------------------------------------------------------------------

function setUpAdminQueue() {
  const dialog = $("[data-review-dialog]");
  const form = $("[data-review-form]", dialog);
  const notes = form.elements.adminNotes;
  const message = $("[data-review-message]", dialog);
  const completeBox = $("[data-complete-box]", dialog);
  const poseSelect = $("[data-complete-pose]", dialog);
  let current = null;

  function fillLibrary(selected) {
    poseSelect.replaceChildren(new Option("Choose a pose…", ""));
    for (const item of pageData.library) {
      poseSelect.append(new Option(item.name, item.id, false, item.id === selected));
    }
  }

  function say(text, ok = false) {
    message.textContent = text;
    message.className = `notice ${ok ? "notice-ok" : "notice-error"}`;
    message.hidden = false;
  }

  function show(request) {
    current = request;
    $("[data-review-title]", dialog).textContent = request.poseName;
    const badge = $("[data-review-status]", dialog);
    badge.textContent = pageData.statusLabels[request.status] ?? request.status;
    badge.className = `badge status-${request.status}`;
    dialog.dataset.status = request.status;
    fillDetails($("[data-review-body]", dialog), [
      ["Requester", request.requesterEmail ?? request.userId],
      ["Description", request.description],
      ["Category", request.categoryName],
      ["Use case", request.useCase],
      ["Votes", String(request.votesCount)],
      ["Submitted", new Date(request.createdAt).toLocaleString()],
    ]);
    if (request.referenceImageUrl) {
      const dt = document.createElement("dt");
      dt.textContent = "Reference";
      const dd = document.createElement("dd");
      const img = document.createElement("img");
      img.className = "review-ref";
      img.src = request.referenceImageUrl;
      img.alt = `Reference picture for ${request.poseName}`;
      dd.append(img);
      $("[data-review-body]", dialog).append(dt, dd);
    }
    const history = $("[data-review-history]", dialog);
    history.replaceChildren();
    const moves = request.history ?? [];
    if (!moves.length) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = "No changes yet: submitted and waiting.";
      history.append(item);
    }
    for (const change of moves) {
      const item = document.createElement("li");
      item.dataset.historyItem = `${change.fromStatus}>${change.toStatus}`;
      const from = pageData.statusLabels[change.fromStatus] ?? change.fromStatus;
      const to = pageData.statusLabels[change.toStatus] ?? change.toStatus;
      item.textContent = `${new Date(change.createdAt).toLocaleString()}: ${from} → ${to}` +
        (change.notes ? ` (“${change.notes}”)` : "");
      history.append(item);
    }
    notes.value = request.adminNotes ?? "";
    const legal = new Set(pageData.transitions[request.status] ?? []);
    const targets = {
      approve: "approved",
      reject: "rejected",
      "mark-in-progress": "in_progress",
    };
    for (const [action, target] of Object.entries(targets)) {
      $(`[data-action="${action}"]`, dialog).hidden = !legal.has(target);
    }
    completeBox.hidden = !legal.has("completed");
    fillLibrary(request.completedPoseId);
  }

  async function open(requestId) {
    message.hidden = true;
    try {
      show(await api("GET", `/admin/pose-requests/${requestId}`));
      if (!dialog.open) dialog.showModal();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  async function act(action) {
    message.hidden = true;
    const text = notes.value.trim();
    let method = "POST";
    let body = {};
    if (text) body.adminNotes = text;
    if (action === "reject" && !text) {
      say("Say why in the notes: the requester is told, and a rejection needs a reason.");
      notes.setAttribute("aria-invalid", "true");
      notes.focus();
      return;
    }
    notes.removeAttribute("aria-invalid");
    if (action === "mark-completed") {
      if (!poseSelect.value) {
        say("Choose the library pose that completes this request, or add one.");
        poseSelect.focus();
        return;
      }
      body.completedPoseId = poseSelect.value;
    }
    if (action === "notes") {
      method = "PUT";
      body = { adminNotes: text || null };
    }
    const path = `/admin/pose-requests/${current.id}/${action}`;
    try {
      const updated = await api(method, path, body);
      show(updated);
      say(action === "notes" ? "Notes saved." : `Now ${pageData.statusLabels[updated.status].toLowerCase()}.`, true);
      await swapList("[data-queue-list]", window.location.href, { skeleton: false });
    } catch (error) {
      say(sentence(error.message));
    }
  }

  for (const button of $$("[data-action]", dialog)) {
    button.addEventListener("click", () => act(button.dataset.action));
  }

  $("[data-new-pose-add]", dialog).addEventListener("click", async () => {
    const name = $("[data-new-pose-name]", dialog).value.trim();
    const file = $("[data-new-pose-image]", dialog).files?.[0];
    if (!name) {
      say("Name the new library pose.");
      return;
    }
    try {
      const body = { name };
      if (current.categoryId) body.categoryId = current.categoryId;
      if (file) body.imageKey = (await uploadFile("/uploads", file, () => {})).key;
      const item = await api("POST", "/admin/library", body);
      pageData.library.push(item);
      fillLibrary(item.id);
      $("[data-new-pose]", dialog).open = false;
      say(`“${item.name}” added to the library and chosen.`, true);
    } catch (error) {
      say(sentence(error.message));
    }
  });

  document.addEventListener("click", (event) => {
    const review = event.target.closest("[data-review]");
    if (review) open(review.dataset.review);
    const link = event.target.closest("[data-queue-list] .pager a");
    if (link) {
      event.preventDefault();
      swapList("[data-queue-list]", link.href, { skeleton: false });
    }
  });
  document.addEventListener("submit", (event) => {
    const filters = event.target.closest("[data-queue-filters]");
    if (!filters) return;
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(filters)) if (value) query.set(key, value);
    swapList("[data-queue-list]", `${filters.action}?${query}`, { skeleton: false });
  });
  document.addEventListener("change", (event) => {
    const filters = event.target.closest("[data-queue-filters]");
    if (filters && event.target.tagName === "SELECT") filters.requestSubmit();
  });
}

function setUpAdminLibrary() {
  const reload = () => window.location.reload();
  const categoryForm = $("[data-category-form]");
  categoryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = $("[data-category-message]", categoryForm);
    const name = categoryForm.elements.name.value.trim();
    if (!name) {
      note.textContent = "Name the category.";
      note.className = "notice notice-error";
      note.hidden = false;
      return;
    }
    try {
      const body = { name };
      const description = categoryForm.elements.description.value.trim();
      if (description) body.description = description;
      await api("POST", "/admin/categories", body);
      reload();
    } catch (error) {
      note.textContent = sentence(error.message);
      note.className = "notice notice-error";
      note.hidden = false;
    }
  });
  const libraryForm = $("[data-library-form]");
  libraryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = $("[data-library-message]", libraryForm);
    const fail = (text) => {
      note.textContent = text;
      note.className = "notice notice-error";
      note.hidden = false;
    };
    const name = libraryForm.elements.name.value.trim();
    if (!name) {
      fail("Name the pose.");
      return;
    }
    try {
      const body = { name };
      const description = libraryForm.elements.description.value.trim();
      if (description) body.description = description;
      if (libraryForm.elements.categoryId.value) body.categoryId = libraryForm.elements.categoryId.value;
      const file = libraryForm.elements.image.files?.[0];
      if (file) body.imageKey = (await uploadFile("/uploads", file, () => {})).key;
      await api("POST", "/admin/library", body);
      reload();
    } catch (error) {
      fail(sentence(error.message));
    }
  });
}

// ---- start ------------------------------------------------------------------------------------

for (const section of $$("[data-uploader]")) setUpUploader(section);
const changer = $("[data-changer]");
if (changer) setUpChanger(changer);
const selector = $("[data-export-selector]");
if (selector) setUpExports(selector);
const grid = $("[data-pose-grid]");
if (grid) setUpPoseGrid(grid);
const requestForm = $("[data-request-form]");
if (requestForm) setUpRequestForm(requestForm);
if ($("[data-request-list]")) setUpRequestLists();
if ($("[data-queue-list]")) setUpAdminQueue();
if ($("[data-library-form]")) setUpAdminLibrary();
setUpDialogClose();
startLiveEvents();
document.body.dataset.ready = "true";
