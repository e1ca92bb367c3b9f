/* The explain page: one image for the user's caption, with every intermediate step. */
"use strict";

(function () {
  const {el, pngSrc, showError, postJson, randomSeed, readSeed, drawBars, startPage, handleSubmit, revealIfBelow} =
    window.AttnGAN;
  const form = document.getElementById("explain-form");
  const caption = document.getElementById("caption");
  const seedInput = document.getElementById("seed");
  const status = document.getElementById("status");
  const steps = document.getElementById("steps");
  let last = null;

  const ready = startPage({caption, form, status}).then((model) => {
    if (model && model.architecture) describeArchitecture(model);
    return model;
  });
  const submit = handleSubmit({caption, form, results: steps}, ready, explain);
  document.getElementById("random-seed").addEventListener("click", () => {
    seedInput.value = String(randomSeed());
  });
  window.addEventListener("resize", () => last && drawCharts(last));
  const asked = new URLSearchParams(window.location.search);
  if (asked.get("caption")) {  // "Explain image 1 step by step" on the generate page
    caption.value = asked.get("caption");
    seedInput.value = asked.get("seed") || "";
    submit();
  }

  async function explain(text) {
    let seed;
    try {
      seed = readSeed(seedInput);
    } catch (err) {
      showError(err.message);
      seedInput.focus();
      return;
    }
    status.textContent = "Running the model…";
    try {
      const reply = await postJson("/v1/explain", {caption: text, seed: seed});
      render(reply);
      status.textContent = "Model " + reply.model.name + " · seed " + reply.seed + " · " +
        Math.round(reply.timing_ms) + " ms";
      revealIfBelow(document.getElementById("step-text"));
    } catch (err) {
      showError(err.message);
      status.textContent = "";
    }
  }

  /** Before any run: the loaded model's own sizes, in the overview and under each step. */
  function describeArchitecture(model) {
    const arch = model.architecture;
    const single = arch.variant === "dcgan";
    const px = (size) => size + "×" + size + " px";
    const rnn = (arch.bidirectional ? "bidirectional " : "") + arch.rnn.toUpperCase();
    const refined = model.attention_sizes.map((a, i) => "stage " + (i + 2) + " attends at " + a + "×" + a +
      (single ? "" : " and draws " + px(model.sizes[i + 1])));
    const encoder = arch.image_encoder === "inception" ? "Inception-v3" : "a small CNN";
    setText("arch-text", model.vocabulary_size + " known words → features of " + arch.text_dim + " numbers");
    setText("arch-ca", "c: " + arch.condition_dim + " numbers, z: " + arch.noise_dim);
    setText("arch-stage1", single ? "[z, c] → features (this model shows only its last image)" : px(model.sizes[0]));
    setText("arch-refine", refined.length ? model.sizes.slice(single ? 0 : 1).map(px).join(" → ")
      : "none: this model has a single stage");
    setText("arch-damsm", arch.damsm ? "scores your image (" + encoder + ")" : "not in this model folder");
    facts("facts-text", "This model: a " + rnn + " over a vocabulary of " + model.vocabulary_size + " words, reading at most " +
      model.max_words + " words of a caption; word embeddings of " + arch.word_embedding_dim +
      " numbers, word and sentence features of " + arch.text_dim + " numbers each.");
    facts("facts-ca", "This model: c has " + arch.condition_dim + " numbers and the noise z " + arch.noise_dim + "." +
      (model.truncation < 1 ? " Both noises are drawn from a normal cut at ±2 and scaled by " + model.truncation +
        " (truncation): more typical, less varied images." : ""));
    facts("facts-stage1", single ? "This model is the single-output variant: only its last stage's image is returned."
      : "This model: stage 1 draws " + px(model.sizes[0]) + ".");
    facts("facts-refine", refined.length ? "This model: " + refined.join("; ") + " (" + arch.channels +
      " feature channels)." : "This model has a single stage: no word attention.");
    facts("facts-damsm", arch.damsm ? "This model folder holds its DAMSM image encoder (" + encoder +
      "): the last step scores your image." + (model.candidates > 1 ? " It also picks the image: each one is drawn " +
        model.candidates + " times from other noise, and the drawing this encoder matches best with your caption " +
        "is kept (best of " + model.candidates + ")." : "")
      : "This model folder has no DAMSM image encoder: nothing is scored here.");
  }

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  function facts(id, text) {
    setText(id, text);
    document.getElementById(id).hidden = false;
  }

  function render(reply) {
    last = reply;
    steps.querySelectorAll(".live").forEach((part) => { part.hidden = false; });
    steps.querySelectorAll(".pending").forEach((part) => { part.hidden = true; });
    document.getElementById("overview-pending").hidden = true;
    document.getElementById("overview-live").hidden = false;
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
