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

  /** GET /v1/model: the model's summary, or null when it cannot be read. */
  async function loadModel() {
    try {
      const reply = await fetch("/v1/model", {headers: {"Accept": "application/json"}});
      return reply.ok ? await reply.json() : null;
    } catch (err) {
      return null;
    }
  }

  /**
   * The model's example captions: the first becomes the caption's placeholder, each a button
   * that puts it in the caption field (``#examples``). Without examples the generic
   * placeholder stays and no button is shown.
   */
  function showExamples(model, caption) {
    const examples = model && Array.isArray(model.example_captions) ? model.example_captions : [];
    const box = document.getElementById("examples");
    if (!examples.length) {
      if (box) box.hidden = true;
      return;
    }
    caption.placeholder = examples[0];
    if (!box) return;
    box.querySelector(".example-list").replaceChildren(...examples.map((text) => el("button", {
      type: "button", class: "secondary small example", text: text, title: "Use this caption",
      onclick: () => {
        caption.value = text;
        caption.focus();
      },
    })));
    box.hidden = false;
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

  return {el, pngSrc, showError, postJson, randomSeed, readSeed, base64ToBlob, download, drawBars, restoreApiKey,
    loadModel, showExamples};
})();
