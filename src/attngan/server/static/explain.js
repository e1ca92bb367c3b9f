/* The explain page: one image for the user's caption, with every intermediate step. */
"use strict";

(function () {
  const {el, pngSrc, showError, postJson, randomSeed, readSeed, drawBars, restoreApiKey, loadModel, showExamples} =
    window.AttnGAN;
  const caption = document.getElementById("caption");
  const seedInput = document.getElementById("seed");
  const button = document.getElementById("explain");
  const status = document.getElementById("status");
  let last = null;

  restoreApiKey();
  loadModel().then((model) => showExamples(model, caption));
  document.getElementById("random-seed").addEventListener("click", () => {
    seedInput.value = String(randomSeed());
  });
  document.getElementById("explain-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  window.addEventListener("resize", () => last && drawCharts(last));

  async function run() {
    showError("");
    const text = caption.value.trim();
    if (!text) {
      showError("Type a caption first.");
      caption.focus();
      return;
    }
    let seed;
    try {
      seed = readSeed(seedInput);
    } catch (err) {
      showError(err.message);
      return;
    }
    button.disabled = true;
    status.textContent = "Running the model…";
    try {
      const reply = await postJson("/v1/explain", {caption: text, seed: seed});
      seedInput.value = String(reply.seed);
      render(reply);
      status.textContent = "Model " + reply.model.name + " · " + Math.round(reply.timing_ms) + " ms";
    } catch (err) {
      showError(err.message);
      status.textContent = "";
    } finally {
      button.disabled = false;
    }
  }

  function render(reply) {
    last = reply;
    document.getElementById("steps").hidden = false;
    const text = reply.text_encoder;
    document.getElementById("text-tokens").replaceChildren(
      ...text.tokens.map((w) => el("span", {class: "word-chip", text: w})),
      ...reply.dropped.map((w) => el("span", {class: "word-chip dropped", text: w, title: "not in the vocabulary"})),
    );
    const dropped = document.getElementById("text-dropped");
    dropped.hidden = reply.dropped.length === 0;
    dropped.textContent = "Dropped (not in the vocabulary): " + reply.dropped.join(", ");
    document.getElementById("text-shape").textContent =
      "(" + text.word_features_shape[0] + " words × " + text.word_features_shape[1] + " features)";
    document.getElementById("text-heatmap").src = pngSrc(text.word_features_png);
    const labels = document.getElementById("text-labels");
    labels.replaceChildren(...text.tokens.map((w) => el("span", {text: w})));
    const rows = Math.max(48, 26 * text.tokens.length) + "px";
    labels.style.height = rows;
    document.getElementById("text-heatmap").style.height = rows;
    document.getElementById("sentence-norm").textContent = "(length " + text.sentence.norm.toFixed(2) + ")";
    document.getElementById("noise-dim").textContent = String(reply.conditioning.noise_dim);
    drawCharts(reply);

    document.getElementById("stage1").replaceChildren(tile(reply.stages[0], "Stage 1 · " + reply.stages[0].size + " px"));
    const refine = reply.attention.map((a) => {
      const image = reply.stages.find((s) => s.stage === a.stage) || reply.stages[reply.stages.length - 1];
      return el("div", {class: "refine-stage"}, [
        el("h3", {text: "Stage " + a.stage + " · " + image.size + " px image, attention at " + a.size + "×" + a.size}),
        el("div", {class: "tiles"}, [
          tile(image, "Stage " + a.stage),
          ...a.words.map((w) => tile(image, "“" + w.word + "”", w.png_base64)),
        ]),
      ]);
    });
    document.getElementById("refine").replaceChildren(...(refine.length ? refine :
      [el("p", {class: "note", text: "This model has a single stage: no word attention."})]));
    renderDamsm(reply);
  }

  function tile(stage, label, overlay) {
    const frame = el("div", {class: "frame"}, [
      el("img", {class: "stage-image", src: pngSrc(stage.png_base64), alt: label}),
    ]);
    if (overlay) {
      frame.append(el("img", {class: "attention-overlay", src: pngSrc(overlay), alt: "attention of " + label}));
    }
    return el("figure", {}, [frame, el("figcaption", {}, [el("span", {text: label})])]);
  }

  function renderDamsm(reply) {
    const box = document.getElementById("damsm");
    const damsm = reply.damsm;
    if (!damsm.available) {
      box.replaceChildren(el("p", {class: "note", text: "This model folder has no DAMSM image encoder to score with."}));
      return;
    }
    const final = reply.stages[reply.stages.length - 1];
    box.replaceChildren(
      el("div", {class: "explain-grid"}, [
        el("div", {}, [el("h3", {text: "Sentence–image cosine"}),
          el("div", {class: "stat", text: damsm.sentence_image_cosine.toFixed(3)}),
          el("p", {class: "help", text: "Cosine of the sentence feature and the image's global feature (−1 … 1)."})]),
        el("div", {}, [el("h3", {text: "Word–region score"}),
          el("div", {class: "stat", text: damsm.word_region_score.toFixed(3)}),
          el("p", {class: "help", text: "log Σ exp(γ₂·cos(word, its region context)) over the words."})]),
      ]),
      el("h3", {text: "Where each word found its regions (" + damsm.region_size + "×" + damsm.region_size + " grid)"}),
      el("div", {class: "tiles"}, damsm.words.map((w) => tile(final, "“" + w.word + "”", w.png_base64))),
    );
  }

  function drawCharts(reply) {
    drawBars(document.getElementById("text-norms"), reply.text_encoder.word_norms, "#8b5cf6");
    drawBars(document.getElementById("text-sentence"), reply.text_encoder.sentence.values, "#2563eb");
    drawBars(document.getElementById("ca-mu"), reply.conditioning.mu.values, "#0d9488");
    drawBars(document.getElementById("ca-sigma"), reply.conditioning.sigma.values, "#ca8a04");
    drawBars(document.getElementById("ca-c"), reply.conditioning.condition.values, "#c2410c");
  }
})();
