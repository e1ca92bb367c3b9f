/* Helpers shared by the AttnGAN pages (no libraries, no build step). */
"use strict";

window.AttnGAN = (function () {
  const KEY_STORAGE = "attngan-api-key";
  const MAX_SEED = 2147483646;

  /** Create an element: el("div", {class: "x", text: "hi"}, [children]). */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function pngSrc(base64) {
    return "data:image/png;base64," + base64;
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function apiKeyInput() {
    return document.getElementById("api-key");
  }

  function restoreApiKey() {
    const input = apiKeyInput();
    if (!input) return;
    input.value = sessionStorage.getItem(KEY_STORAGE) || "";
    input.addEventListener("change", () => sessionStorage.setItem(KEY_STORAGE, input.value));
  }

  /** GET /v1/model: the model's summary; throws an Error saying why it cannot be read. */
  async function loadModel() {
    let reply;
    try {
      reply = await fetch("/v1/model", {headers: {"Accept": "application/json"}});
    } catch (err) {
      throw new Error("Cannot reach the server (" + err.message + "). Is it still running? Reload the page to retry.");
    }
    if (!reply.ok) throw new Error("The server could not describe its model (HTTP " + reply.status + ").");
    return reply.json();
  }

  function exampleCaptions(model) {
    return model && Array.isArray(model.example_captions) ? model.example_captions : [];
  }

  /**
   * Start a page: restore the API key, read the model while the status line says so, and offer
   * its example captions (``showExamples``). Resolves to the model, or to null after showing
   * why it could not be read: the page still works with a typed caption then.
   */
  async function startPage(parts) {
    restoreApiKey();
    submitOnEnter(parts.caption, parts.form);
    parts.status.textContent = "Loading the model…";
    let model;
    try {
      model = await loadModel();
    } catch (err) {
      parts.status.textContent = "";
      showError(err.message);
      return null;
    }
    parts.status.textContent = "Model " + model.name + " · stages " + model.sizes.join(" → ") + " px";
    showExamples(model, parts.caption, parts.form);
    return model;
  }

  /** Enter in the caption box submits its form; Shift+Enter (or an input method composing) does not. */
  function submitOnEnter(caption, form) {
    caption.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  /**
   * The model's example captions: the first becomes the caption's placeholder (an empty box
   * draws it, see ``captionOrExample``), each a button that puts it in the box and submits
   * ``form``. Without examples the generic placeholder stays and no button is shown.
   */
  function showExamples(model, caption, form) {
    const examples = exampleCaptions(model);
    const box = document.getElementById("examples");
    if (!examples.length) {
      if (box) box.hidden = true;
      return;
    }
    caption.placeholder = examples[0];
    const help = document.getElementById("example-help");
    if (help) help.hidden = false;
    if (!box) return;
    box.querySelector(".example-list").replaceChildren(...examples.map((text) => el("button", {
      type: "button", class: "secondary small example", text: text, title: "Draw this caption",
      onclick: () => {
        caption.value = text;
        form.requestSubmit();
      },
    })));
    box.hidden = false;
  }

  /**
   * The caption to draw: the box's text, else the model's first example (the placeholder the
   * box shows), which is then written into the box so the page shows what was drawn; "" when
   * the box is empty and the model has no example.
   */
  function captionOrExample(caption, model) {
    const text = caption.value.trim();
    if (text) return text;
    const examples = exampleCaptions(model);
    if (!examples.length) return "";
    caption.value = examples[0];
    return examples[0];
  }

  /** While a request runs: the form's buttons are disabled and ``results`` is marked busy (dimmed). */
  function setBusy(form, results, busy) {
    form.querySelectorAll("button[type=submit], button.example").forEach((b) => { b.disabled = busy; });
    form.setAttribute("aria-busy", String(busy));
    if (results) results.setAttribute("aria-busy", String(busy));
  }

  /**
   * Handle ``parts.form``'s submissions (its button, Enter in the caption, an example button):
   * wait for the model (``ready``), take the caption or the example shown, and ``await draw(text)``,
   * one at a time, with the form disabled and ``parts.results`` marked busy meanwhile. Returns the
   * function that submits.
   */
  function handleSubmit(parts, ready, draw) {
    let busy = false;
    async function submit() {
      if (busy) return;
      busy = true;
      setBusy(parts.form, parts.results, true);
      showError("");
      try {
        const text = captionOrExample(parts.caption, await ready);
        if (text) {
          await draw(text);
        } else {
          showError("Type a caption first.");
          parts.caption.focus();
        }
      } finally {
        busy = false;
        setBusy(parts.form, parts.results, false);
      }
    }
    parts.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    return submit;
  }

  /** Scroll ``node`` into view when it starts below the visible part of the page (a narrow screen). */
  function revealIfBelow(node) {
    if (node.getBoundingClientRect().top < window.innerHeight - 80) return;
    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    node.scrollIntoView({block: "start", behavior: still ? "auto" : "smooth"});
  }

  /** POST JSON; resolves to the parsed reply or throws an Error with the API's message. */
  async function postJson(path, body) {
    const headers = {"Content-Type": "application/json", "Accept": "application/json"};
    const key = apiKeyInput() ? apiKeyInput().value.trim() : "";
    if (key) headers["X-API-Key"] = key;
    let reply;
    try {
      reply = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
    } catch (err) {
      throw new Error("Cannot reach the server (" + err.message + ").");
    }
    let data = null;
    try {
      data = await reply.json();
    } catch (err) {
      data = null;
    }
    if (!reply.ok) {
      const detail = data && data.error ? data.error : {message: "HTTP " + reply.status};
      let message = detail.message || "HTTP " + reply.status;
      if (detail.code === "unknown_words") {
        message = "None of these words is in the model's vocabulary" +
          (detail.words && detail.words.length ? ": " + detail.words.join(", ") : "") + ".";
      } else if (reply.status === 401) {
        message = "This server needs an API key: open “API key” and enter it.";
      } else if (reply.status === 503) {
        const wait = reply.headers.get("Retry-After");
        message = "The server is busy" + (wait ? "; try again in " + wait + " s." : ".");
      }
      const error = new Error(message);
      error.field = detail.field;
      throw error;
    }
    return data;
  }

  function randomSeed() {
    const buf = new Uint32Array(1);
    crypto.getRandomValues(buf);
    return buf[0] % MAX_SEED;
  }

  /** The seed field as a number, null when empty; throws on an invalid value. */
  function readSeed(input) {
    const text = input.value.trim();
    if (!text) return null;
    if (!/^\d+$/.test(text)) throw new Error("The seed must be a whole number ≥ 0.");
    const value = Number(text);
    if (!Number.isSafeInteger(value)) throw new Error("The seed is too large.");
    return value;
  }

  function base64ToBlob(base64, type) {
    const bytes = atob(base64);
    const array = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
    return new Blob([array], {type});
  }

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = el("a", {href: url, download: filename});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  }

  /** Draw values as bars around a zero line on a canvas. */
  function drawBars(canvas, values, color) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 400;
    const height = canvas.clientHeight || 90;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    const peak = Math.max(1e-9, ...values.map(Math.abs));
    const hasNegative = values.some((v) => v < 0);
    const zero = hasNegative ? height / 2 : height - 4;
    const scale = (hasNegative ? height / 2 - 4 : height - 8) / peak;
    const step = width / Math.max(1, values.length);
    ctx.fillStyle = color || "#c2410c";
    values.forEach((v, i) => {
      const h = v * scale;
      ctx.fillRect(i * step + step * 0.1, h >= 0 ? zero - h : zero, Math.max(1, step * 0.8), Math.abs(h));
    });
    ctx.fillStyle = "rgba(128,128,128,0.6)";
    ctx.fillRect(0, zero, width, 1);
  }

  return {el, pngSrc, showError, postJson, randomSeed, readSeed, base64ToBlob, download, drawBars, startPage,
    handleSubmit, revealIfBelow};
})();
