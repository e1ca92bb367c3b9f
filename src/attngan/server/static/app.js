/* The generate page: caption -> images of every stage, word chips driving attention overlays. */
"use strict";

(function () {
  const {el, pngSrc, showError, postJson, randomSeed, readSeed, base64ToBlob, download, startPage, handleSubmit,
    revealIfBelow} = window.AttnGAN;
  const form = document.getElementById("generate-form");
  const caption = document.getElementById("caption");
  const seedInput = document.getElementById("seed");
  const count = document.getElementById("count");
  const status = document.getElementById("status");
  const results = document.getElementById("results-panel");
  let result = null; // the last reply of POST /v1/generate
  let pinned = null; // index of the clicked word, or null

  const ready = startPage({caption, form, status}).then((model) => {
    if (model) count.max = String(model.max_images);
    return model;
  });
  handleSubmit({caption, form, results}, ready, generate);

  document.getElementById("random-seed").addEventListener("click", () => {
    seedInput.value = String(randomSeed());
  });
  document.getElementById("export").addEventListener("click", exportJsonl);

  async function generate(text) {
    const n = Number(count.value);
    const limit = Number(count.max) || 16;
    if (!Number.isInteger(n) || n < 1 || n > limit) {
      showError("The number of images must be between 1 and " + limit + ".");
      count.focus();
      return;
    }
    let seed;
    try {
      seed = readSeed(seedInput);
    } catch (err) {
      showError(err.message);
      seedInput.focus();
      return;
    }
    status.textContent = "Generating…";
    try {
      const reply = await postJson("/v1/generate", {caption: text, num_images: n, seed: seed, include_attention: true});
      render(reply);
      status.textContent = "Done in " + Math.round(reply.timing_ms) + " ms";
      revealIfBelow(document.getElementById("words-panel"));
    } catch (err) {
      showError(err.message);
      status.textContent = "";
    }
  }

  function render(reply) {
    result = reply;
    pinned = null;
    renderWords(reply);
    const list = document.getElementById("results");
    list.replaceChildren(...reply.images.map((image, i) => imageCard(image, i)));
    document.getElementById("meta").textContent =
      [reply.model.name, reply.model.hash, "seed " + reply.seed,
       reply.settings && reply.settings.truncation < 1 ? "truncation " + reply.settings.truncation : "",
       reply.settings && reply.settings.candidates > 1 ? "best of " + reply.settings.candidates : ""]
        .filter(Boolean).join(" · ");
    document.getElementById("explain-link").href = "/explain?" +
      new URLSearchParams({caption: reply.caption, seed: String(reply.images[0].seed)}).toString();
    results.hidden = false;
  }

  function renderWords(reply) {
    const chips = reply.tokens.map((word, i) => el("button", {
      type: "button", class: "word-chip", "data-index": i, "aria-pressed": "false",
      title: "Show where the model attended to “" + word + "”", text: word,
      onmouseenter: () => showWord(i), onmouseleave: () => showWord(pinned),
      onfocus: () => showWord(i), onblur: () => showWord(pinned),
      onclick: () => togglePin(i),
    }));
    const dropped = reply.dropped.map((word) => el("span", {
      class: "word-chip dropped", "aria-disabled": "true", title: "Not in the vocabulary: ignored", text: word,
    }));
    document.getElementById("words").replaceChildren(...chips, ...dropped);
    setNote("dropped-note", reply.dropped.length,
      "Greyed words are not in the model's vocabulary and were ignored: " + reply.dropped.join(", ") + ".");
    setNote("truncated-note", reply.truncated.length,
      "The caption is longer than the model reads; these words were cut: " + reply.truncated.join(", ") + ".");
    document.getElementById("words-panel").hidden = false;
  }

  function setNote(id, show, text) {
    const note = document.getElementById(id);
    note.hidden = !show;
    note.textContent = show ? text : "";
  }

  function imageCard(image, index) {
    const stages = image.stages.map((stage) => {
      const frame = el("div", {class: "frame", "data-stage": stage.stage}, [
        el("img", {class: "stage-image", src: pngSrc(stage.png_base64), alt: "Image " + (index + 1) + ", stage " +
          stage.stage + " (" + stage.size + "×" + stage.size + ")", width: stage.size, height: stage.size}),
        el("img", {class: "attention-overlay", alt: "", hidden: true, "aria-hidden": "true"}),
        el("span", {class: "badge", hidden: true, text: "sentence only"}),
      ]);
      const save = el("button", {type: "button", class: "secondary small", text: "PNG",
        title: "Download stage " + stage.stage,
        onclick: () => download(base64ToBlob(stage.png_base64, "image/png"), fileName(image, stage.stage))});
      return el("figure", {class: "stage"}, [
        frame, el("figcaption", {}, [el("span", {text: "Stage " + stage.stage + " · " + stage.size + " px"}), save]),
      ]);
    });
    const last = image.stages[image.stages.length - 1];
    const saveLast = el("button", {type: "button", class: "secondary small download-image", text: "Download PNG",
      onclick: () => download(base64ToBlob(last.png_base64, "image/png"), fileName(image, last.stage))});
    return el("article", {class: "image-card", "data-seed": image.seed}, [
      el("div", {class: "card-head"}, [el("h3", {text: "Image " + (index + 1) + " · seed " + image.seed}), saveLast]),
      el("div", {class: "stages"}, stages),
    ]);
  }

  function fileName(image, stage) {
    return "attngan-seed" + image.seed + "-stage" + stage + ".png";
  }

  /** Lay word ``index``'s attention over every refinement-stage image (null: hide them). */
  function showWord(index) {
    if (!result) return;
    document.querySelectorAll(".word-chip[data-index]").forEach((chip) => {
      chip.classList.toggle("active", index !== null && Number(chip.dataset.index) === index);
    });
    document.querySelectorAll(".image-card").forEach((card, i) => {
      const image = result.images[i];
      card.querySelectorAll(".frame").forEach((frame) => {
        const overlay = frame.querySelector(".attention-overlay");
        const badge = frame.querySelector(".badge");
        const maps = image.attention.find((a) => a.stage === Number(frame.dataset.stage));
        if (index === null || !maps || !maps.words[index]) {
          overlay.hidden = true;
          overlay.removeAttribute("src");
          badge.hidden = index === null || Boolean(maps);
          return;
        }
        overlay.src = pngSrc(maps.words[index].png_base64);
        overlay.alt = "Attention of “" + maps.words[index].word + "” at stage " + maps.stage;
        overlay.hidden = false;
        badge.hidden = true;
      });
    });
  }

  function togglePin(index) {
    pinned = pinned === index ? null : index;
    document.querySelectorAll(".word-chip[data-index]").forEach((chip) => {
      chip.setAttribute("aria-pressed", String(pinned !== null && Number(chip.dataset.index) === pinned));
    });
    showWord(pinned === null ? index : pinned);
  }

  /** One JSON line per image, built from the reply already in the page. */
  function exportJsonl() {
    if (!result) return;
    const lines = result.images.map((image) => {
      const last = image.stages[image.stages.length - 1];
      return JSON.stringify({
        caption: result.caption, tokens: result.tokens, dropped: result.dropped, truncated: result.truncated,
        seed: image.seed, base_seed: result.seed, model: result.model.name, hash: result.model.hash,
        settings: result.settings, stage: last.stage, size: last.size, image_png_base64: last.png_base64,
      });
    });
    download(new Blob([lines.join("\n") + "\n"], {type: "application/x-ndjson"}), "attngan-seed" + result.seed + ".jsonl");
  }
})();
