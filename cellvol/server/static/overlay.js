// Channels and scenes on the /view page.
// - An image with channels: a toggle per channel in its colour; the planes show the checked
//   channels blended additively (the server blends: /slice?channel=...).
// - A scene (/view/SCENE): the reference image's planes with each placed image over them. For
//   every plane the page asks /overlay for the placed image sampled on exactly the region and
//   level of the reference it shows, and adds it on top ("lighter": additive). Each channel of
//   a placed image has a toggle, an opacity and a window. Nothing here runs per frame: an
//   overlay is requested with its plane and drawn when it arrives.
"use strict";

const overlay = (() => {
  const scene = document.body.dataset.scene || "";
  const own = { channels: [], on: [] }; // the shown image's own channels
  const placed = []; // [{ image, channels: [{name, color, window, on, opacity, low, high}] }]
  let shown = true;

  function channelParams() {
    if (!own.channels.length) return {};
    const picked = own.channels.map((c, i) => (own.on[i] ? `#${i}` : null)).filter((v) => v !== null);
    // None checked: "none" draws nothing. No single window: each channel keeps its own.
    return { channel: picked.length ? picked.join(",") : "none", window: "" };
  }

  function controls(catalog, volume) {
    const box = document.getElementById("channels");
    if (volume.channels && volume.channels.length) {
      own.channels = volume.channels;
      own.on = volume.channels.map(() => true);
      volume.channels.forEach((channel, i) => {
        const label = document.createElement("label");
        label.style.color = `#${channel.color}`;
        // Names are file data: text nodes, never markup.
        const input = document.createElement("input");
        input.type = "checkbox";
        input.checked = true;
        input.dataset.channel = String(i);
        label.append(input, ` ${channel.name}`);
        input.addEventListener("change", (event) => {
          own.on[i] = event.target.checked;
          refresh();
        });
        box.append(label);
      });
      box.hidden = false;
    }
    if (!scene) return;
    const entry = catalog.scenes.find((s) => s.name === scene);
    document.getElementById("title").textContent = `${scene} (${entry.reference} + ${entry.placed.join(", ")})`;
    document.getElementById("neuroglancer").href = entry.neuroglancer;
    const fieldset = document.getElementById("placed");
    fieldset.hidden = false;
    const all = document.createElement("label");
    all.innerHTML = `<input id="overlay-placed" type="checkbox" checked> overlay`;
    all.querySelector("input").addEventListener("change", (event) => {
      shown = event.target.checked;
      refresh();
    });
    fieldset.append(all);
    for (const image of entry.placed) {
      const volume = catalog.volumes.find((v) => v.name === entry.served[image]);
      const channels = (volume.channels.length ? volume.channels : [{ name: image, color: "00FF00", window: volume.window }]).map((c) => ({
        ...c,
        on: true,
        opacity: 1,
        low: c.window.start,
        high: c.window.end,
      }));
      placed.push({ image, channels });
      channels.forEach((channel, i) => {
        const row = document.createElement("span");
        row.className = "placed-channel";
        row.style.color = `#${channel.color}`;
        row.dataset.image = image;
        row.dataset.channel = String(i);
        const step = (channel.window.max - channel.window.min) / 200 || "any";
        const toggle = document.createElement("label");
        const on = document.createElement("input");
        on.type = "checkbox";
        on.className = "on";
        on.checked = true;
        toggle.append(on, ` ${image}: ${channel.name}`);
        // The sliders' markup holds numbers only (the stored window); names go in as text.
        row.innerHTML =
          ` <label>opacity <input class="opacity" type="range" min="0" max="1" step="0.05" value="1"></label> ` +
          `<label>low <input class="low" type="range" min="${channel.window.min}" max="${channel.window.max}" step="${step}" value="${channel.low}"></label> ` +
          `<label>high <input class="high" type="range" min="${channel.window.min}" max="${channel.window.max}" step="${step}" value="${channel.high}"></label>`;
        row.prepend(toggle);
        on.addEventListener("change", (event) => {
          channel.on = event.target.checked;
          refresh();
        });
        for (const key of ["opacity", "low", "high"]) {
          row.querySelector(`.${key}`).addEventListener("change", (event) => {
            channel[key] = Number(event.target.value);
            if (channel.high <= channel.low) channel.high = channel.low + Math.abs(channel.low) * 1e-6 + 1e-9;
            refresh();
          });
        }
        fieldset.append(row);
      });
    }
  }

  // Called by viewer.js with each plane it requests: fetch the placed images on that region.
  function request(panel, params, region) {
    panel.overlays = panel.overlays || {};
    const sequence = panel.sequence;
    for (const { image, channels } of placed) {
      const active = channels.map((c, i) => [c, i]).filter(([c]) => c.on && c.opacity > 0);
      if (!shown || !active.length || !region) {
        delete panel.overlays[image];
        panel.element.dataset.overlay = "off";
        continue;
      }
      const query = new URLSearchParams({
        axis: params.axis,
        index: params.index,
        level: params.level,
        rows: params.rows,
        cols: params.cols,
        channel: active.map(([, i]) => `#${i}`).join(","), // positions: labels may be numbers
        windows: active.map(([c]) => `${c.low},${c.high}`).join(";"),
        opacities: active.map(([c]) => c.opacity).join(","),
      });
      const picture = new Image();
      picture.onload = () => {
        if (sequence !== panel.sequence) return;
        panel.overlays[image] = { picture, ...region };
        panel.element.dataset.overlay = String(sequence);
        draw(panel);
      };
      picture.src = `/overlay/${encodeURIComponent(scene)}/${encodeURIComponent(image)}.png?${query}`;
    }
  }

  // Called by viewer.js after it drew a plane's image: add the overlays, in the same place.
  function paint(panel, context, view, scale) {
    if (!shown || !panel.overlays) return;
    for (const { image } of placed) {
      const found = panel.overlays[image];
      if (!found) continue;
      const { picture, info, r0, r1, c0, c1 } = found;
      context.save();
      context.globalCompositeOperation = "lighter";
      context.imageSmoothingEnabled = false;
      const left = (position(info, panel.cols, c0 - 0.5) - view.colMin) / scale;
      const top = (position(info, panel.rows, r0 - 0.5) - view.rowMin) / scale;
      const width = ((c1 - c0) * info.scale[panel.cols]) / scale;
      const height = ((r1 - r0) * info.scale[panel.rows]) / scale;
      context.drawImage(picture, left, top, width, height);
      context.restore();
    }
  }

  return { scene, placed, channelParams, controls, request, paint, get shown() { return shown; } };
})();
